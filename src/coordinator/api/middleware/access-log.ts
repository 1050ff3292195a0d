import type { Context } from "hono"
import type { Logger } from "../../../shared/log.ts"
import type { AuthEnv } from "./hmac.ts"
import { ranges, resolvePeer } from "./ip.ts"

/**
 * The coordinator's access log (`access_log: true`, docs/operations.md, "Logs"): one info line per
 * request, tagged `access`, written when its answer has been sent whole (a long poll's wait and a
 * stream's whole life included), or given up by the client. The line holds the method, the path (never
 * its query: signatures, nonces and tokens travel in headers and queries, and neither is logged), the
 * status; as fields the time in ms, the signed identity (`-` before or without one), the peer's address
 * (through trusted proxies; the broker's name for a tunneled request), the body bytes sent and, for an
 * answer the client left before its end, `aborted: true`.
 */
export function createAccessLog(log: Logger, trustedProxies: string[]) {
  const trusted = ranges(trustedProxies)
  const access = log.withTag("access")
  return (c: Context<AuthEnv>, startedMs: number): void => {
    const via = c.env?.transport
    const peer = via ? { ip: via } : resolvePeer(c, trusted)
    const line = `${c.req.method} ${c.req.path.slice(0, 512)} ${c.res.status}`
    const identity = c.get("principal")?.name ?? "-"
    const write = (bytes: number, aborted: boolean) =>
      access.info(line, {
        ms: Math.round((performance.now() - startedMs) * 10) / 10,
        identity,
        remote: peer.ip ?? "-",
        bytes,
        aborted: aborted || undefined,
      })
    const res = c.res
    if (!res.body) return write(0, false)
    c.res = new Response(counted(res.body, write), res)
  }
}

/** `body` as it is read, with `done` told once how many bytes went out and whether the reader gave up. */
function counted(
  body: ReadableStream<Uint8Array>,
  done: (bytes: number, aborted: boolean) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader()
  let bytes = 0
  let ended = false
  const end = (aborted: boolean) => {
    if (ended) return
    ended = true
    done(bytes, aborted)
  }
  return new ReadableStream<Uint8Array>(
    {
      async pull(ctrl) {
        try {
          const r = await reader.read()
          if (r.done) {
            ctrl.close()
            end(false)
          } else {
            bytes += r.value.byteLength
            ctrl.enqueue(r.value)
          }
        } catch (err) {
          ctrl.error(err)
          end(true)
        }
      },
      cancel(reason) {
        end(true)
        return reader.cancel(reason)
      },
    },
    { highWaterMark: 0 },
  )
}
