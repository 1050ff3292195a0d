import type { Context } from "hono"
import { createMiddleware } from "hono/factory"
import { AuthError } from "../../../shared/errors.ts"
import { allowed, parseCidr, parseIp, type Cidr } from "../../../shared/net/cidr.ts"
import type { AuthEnv } from "./hmac.ts"

const ranges = (list: string[]): Cidr[] => list.map((t) => parseCidr(t)).filter((r): r is Cidr => !!r)

/**
 * The peer's address: the socket's, or, when the socket belongs to a trusted reverse proxy, the
 * right-most address in X-Forwarded-For that is not itself a trusted proxy (entries further left are
 * whatever the client chose to send). Undefined when unknown (no socket, e.g. an in-process request).
 */
export function peerAddress(c: Context<AuthEnv>, trusted: Cidr[]): string | undefined {
  const socket = c.env?.server?.requestIP(c.req.raw)?.address
  if (!socket || !allowed(socket, trusted)) return socket
  const hops = (c.req.header("x-forwarded-for") ?? "")
    .split(",")
    .map((h) => h.trim())
    .filter(Boolean)
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!parseIp(hops[i])) return socket
    if (!allowed(hops[i], trusted)) return hops[i]
  }
  return hops[0] ?? socket
}

/** 403 unless the peer (see `peerAddress`) is inside one of `list`; `key` names the config key to change. */
export function ipAllowList(list: string[], trustedProxies: string[], what: string, key: string) {
  const allow = ranges(list)
  const trusted = ranges(trustedProxies)
  return createMiddleware<AuthEnv>(async (c, next) => {
    const ip = peerAddress(c, trusted)
    if (!allowed(ip, allow)) throw new AuthError(`${what} is not open to ${ip ?? "this peer"} (see ${key})`, 403)
    await next()
  })
}
