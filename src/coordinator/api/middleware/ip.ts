import type { Context } from "hono"
import { createMiddleware } from "hono/factory"
import { AuthError } from "../../../shared/errors.ts"
import { allowed, parseBareIp, parseCidr, type Cidr } from "../../../shared/net/cidr.ts"
import type { AuthEnv } from "./hmac.ts"

export const ranges = (list: string[]): Cidr[] => list.map((t) => parseCidr(t)).filter((r): r is Cidr => !!r)

/** Longest X-Forwarded-For value read (about 40 IPv6 hops); a longer one is malformed. */
export const MAX_FORWARDED_FOR = 2048

/** Who sent a request: an address, or why none can be believed. */
export type Peer = { ip: string } | { ip?: undefined; reason: string }

/**
 * The client behind `forwarded` (an X-Forwarded-For value) sent by a trusted proxy: hops are read
 * from the right, skipping the trusted proxies, and the first other hop is the client (entries further
 * left are whatever the client chose to send, so they are never read). Fails closed: a hop that must
 * be read and is not a bare address (a port, brackets, a zone, a word, an empty element, an obfuscated
 * IPv4 form) makes the peer unknown, as does an empty or overlong header. A chain of only trusted
 * proxies is the left-most one (a request the proxy host made itself).
 */
export function forwardedPeer(forwarded: string, trusted: Cidr[]): Peer {
  if (forwarded.length > MAX_FORWARDED_FOR) return { reason: `X-Forwarded-For over ${MAX_FORWARDED_FOR} characters` }
  const hops = forwarded.split(",").map((h) => h.trim())
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!parseBareIp(hops[i]))
      return { reason: `X-Forwarded-For hop ${JSON.stringify(hops[i].slice(0, 64))} is not a bare IP address` }
    if (!allowed(hops[i], trusted)) return { ip: hops[i] }
  }
  return { ip: hops[0] }
}

/**
 * The peer: the socket's address, or, when the socket belongs to a trusted reverse proxy that sent
 * X-Forwarded-For, the client it names (see `forwardedPeer`). No address without a socket (an
 * in-process request).
 */
export function resolvePeer(c: Context<AuthEnv>, trusted: Cidr[]): Peer {
  const socket = c.env?.server?.requestIP(c.req.raw)?.address
  if (!socket) return { reason: "no socket address" }
  const forwarded = c.req.header("x-forwarded-for")
  if (forwarded === undefined || !allowed(socket, trusted)) return { ip: socket }
  return forwardedPeer(forwarded, trusted)
}

/** The peer's address (see `resolvePeer`); undefined when unknown or not believable. */
export const peerAddress = (c: Context<AuthEnv>, trusted: Cidr[]): string | undefined => resolvePeer(c, trusted).ip

/** 403 unless the peer (see `resolvePeer`) is inside one of `list`; `key` names the config key to change. */
export function ipAllowList(list: string[], trustedProxies: string[], what: string, key: string) {
  const allow = ranges(list)
  const trusted = ranges(trustedProxies)
  return createMiddleware<AuthEnv>(async (c, next) => {
    const peer = resolvePeer(c, trusted)
    if (peer.ip === undefined) throw new AuthError(`${what} is not open to this peer (${peer.reason})`, 403)
    if (!allowed(peer.ip, allow)) throw new AuthError(`${what} is not open to ${peer.ip} (see ${key})`, 403)
    await next()
  })
}
