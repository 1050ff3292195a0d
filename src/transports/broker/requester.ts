import { newId } from "../../shared/ids.ts"
import { type Header, open, peek, Rejected, type RejectReason, samePeer, seal, SeenNonces } from "./envelope.ts"
import { MAX_REQUEST_BODY, TIMING, type TunnelTiming, WINDOW } from "./tunnel.ts"
import type { BrokerLink, PeerAddress } from "./types.ts"

/** A `fetch` that sends each request through a broker (what createApiClient's `fetch` option takes). */
export type BrokerFetch = (url: string, init: RequestInit & { tls?: unknown }) => Promise<Response>

/** An error as fetch gives one for a lost connection: the HTTP client maps its `code` (failover, retry). */
function connectionError(code: "ECONNREFUSED" | "ECONNRESET" | "ETIMEDOUT", message: string): Error {
  return Object.assign(new Error(message), { code })
}

interface Stream {
  id: string
  /** The coordinator serving it, once it spoke. */
  server?: PeerAddress
  /** Next `data` sequence number expected (`head` is 0, the first chunk 1). */
  next: number
  heard: number
  head?: (res: Response) => void
  fail: (err: Error) => void
  /** Chunks received and not yet read, at most WINDOW. */
  chunks: Uint8Array[]
  /** The reader waiting for the next chunk. */
  wake?: () => void
  ended: boolean
  error?: Error
  /** Highest sequence number read, and the last one acknowledged. */
  read: number
  acked: number
  done: boolean
  timer?: ReturnType<typeof setInterval>
  /** Run once when the stream ends (the abort listener's removal). */
  onEnd?: () => void
}

export interface Requester {
  fetch: BrokerFetch
  /** Hands a message of this process's peer channel to its stream; returns why it was dropped, if it was. */
  receive(bytes: Uint8Array): RejectReason | undefined
  /** Streams open now (tests, /health). */
  readonly open: number
  /** Ends every stream as a lost connection (the link went down). */
  abortAll(why: string): void
}

/**
 * The requester half of the tunnel, for a process that talks to coordinators through `link` as `self`
 * (identity and instance) with `key`. It consumes nothing itself: the owner of the link hands it the
 * messages of `self`'s channel (`receive`).
 */
export function createRequester(
  link: BrokerLink,
  self: PeerAddress,
  key: Uint8Array,
  timing: TunnelTiming = TIMING,
): Requester {
  const streams = new Map<string, Stream>()
  const nonces = new SeenNonces(50_000)

  const send = (s: Stream, t: "ack" | "cancel", extra: Partial<Header> = {}) => {
    if (!s.server) return
    const bytes = seal(key, { t, who: self.identity, from: self, to: s.server, id: s.id, seq: 0, ...extra })
    link.publish(s.server, bytes).catch(() => {})
  }
  const finish = (s: Stream, err?: Error) => {
    if (s.done) return
    s.done = true
    clearInterval(s.timer)
    s.onEnd?.()
    streams.delete(s.id)
    if (err) {
      s.error = err
      s.fail(err)
    }
    s.ended = true
    s.wake?.()
  }

  const fetch: BrokerFetch = async (url, init) => {
    const u = new URL(url)
    const method = (init.method ?? "GET").toUpperCase()
    const body = init.body === undefined || init.body === null ? new Uint8Array() : await bytesOf(init.body)
    if (body.length > MAX_REQUEST_BODY)
      throw Object.assign(
        new Error(`a request body of ${body.length} bytes is over the broker tunnel's ${MAX_REQUEST_BODY}`),
        { code: "E2BIG" },
      )
    const headers = [...new Headers(init.headers as ConstructorParameters<typeof Headers>[0]).entries()]
    if (!link.connected)
      throw connectionError("ECONNREFUSED", `the ${link.kind} broker at ${link.where} is not connected`)
    const signal = init.signal ?? undefined
    signal?.throwIfAborted()
    const id = newId()
    let s!: Stream
    const answered = new Promise<Response>((resolve, reject) => {
      s = {
        id,
        next: 0,
        heard: Date.now(),
        head: resolve,
        fail: reject,
        chunks: [],
        ended: false,
        read: 0,
        acked: 0,
        done: false,
        timer: setInterval(() => {
          if (Date.now() - s.heard > timing.stallMs)
            return finish(
              s,
              Object.assign(
                connectionError(
                  "ETIMEDOUT",
                  `no answer over the ${link.kind} broker for ${timing.stallMs / 1000} s (is a coordinator serving it?)`,
                ),
                // No coordinator ever spoke: the request can go another way (peer.ts).
                { unanswered: !s.server },
              ),
            )
          // The lease: "still listening", and what was read.
          send(s, "ack", { upto: s.read })
          s.acked = s.read
        }, timing.keepMs),
      }
    })
    // A rejection nobody awaits yet (the body's reader sees it through `error`).
    answered.catch(() => {})
    streams.set(id, s)
    const onAbort = () => {
      send(s, "cancel")
      finish(s, (signal?.reason as Error) ?? new DOMException("aborted", "AbortError"))
    }
    signal?.addEventListener("abort", onAbort, { once: true })
    s.onEnd = () => signal?.removeEventListener("abort", onAbort)
    const req = seal(
      key,
      { t: "req", who: self.identity, from: self, id, seq: 0, m: method, p: u.pathname + u.search, h: headers },
      body,
    )
    try {
      await link.publish("requests", req)
    } catch (err) {
      finish(s)
      throw connectionError(
        "ECONNREFUSED",
        `cannot send over the ${link.kind} broker at ${link.where}: ${(err as Error).message}`,
      )
    }
    return answered
  }

  /** The answer's body: chunks as they come, acknowledged as they are read. */
  const bodyOf = (s: Stream) =>
    new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          while (!s.chunks.length && !s.ended) await new Promise<void>((r) => (s.wake = r))
          s.wake = undefined
          const chunk = s.chunks.shift()
          if (chunk) {
            s.read++
            // Half the window read: say so at once rather than at the next keep-alive.
            if (s.read - s.acked >= WINDOW / 2) {
              send(s, "ack", { upto: s.read })
              s.acked = s.read
            }
            controller.enqueue(chunk)
            return
          }
          if (s.error) controller.error(s.error)
          else controller.close()
        },
        cancel() {
          send(s, "cancel")
          finish(s)
        },
      },
      { highWaterMark: 0 },
    )

  const receive = (bytes: Uint8Array): RejectReason | undefined => {
    let msg: ReturnType<typeof open>
    try {
      const p = peek(bytes)
      msg = open(p, p.header.who === self.identity ? key : undefined)
    } catch (err) {
      return err instanceof Rejected ? err.reason : "malformed"
    }
    const h = msg.header
    if (!samePeer(h.to, self)) return "misaddressed"
    if (!nonces.remember(h.nonce, Date.now())) return "replayed"
    const s = streams.get(h.id)
    // A stream already ended (canceled, timed out): late chunks are harmless.
    if (!s) return undefined
    if (s.server && !samePeer(s.server, h.from)) return "misaddressed"
    s.server ??= h.from
    s.heard = Date.now()
    if (h.t === "keep") return undefined
    if (h.seq !== s.next) {
      // A repeat is harmless; a gap is a lost message: the stream is broken.
      if (h.seq < s.next) return "replayed"
      finish(s, connectionError("ECONNRESET", `a message of the answer was lost on the ${link.kind} broker`))
      return undefined
    }
    s.next++
    switch (h.t) {
      case "head": {
        if (!s.head || typeof h.s !== "number" || h.s < 100 || h.s > 599) return "malformed"
        const head = s.head
        s.head = undefined
        const nobody = h.s === 204 || h.s === 304
        // The first chunk may ride with the head (counted as one), and the whole answer when `fin`.
        if (h.fin) {
          finish(s)
          head(new Response(nobody ? null : msg.body, { status: h.s, headers: h.h ?? [] }))
        } else {
          if (msg.body.length && !nobody) s.chunks.push(msg.body)
          head(new Response(nobody ? null : bodyOf(s), { status: h.s, headers: h.h ?? [] }))
        }
        if (nobody) finish(s)
        return undefined
      }
      case "data":
        if (s.head) return "malformed"
        if (s.chunks.length >= WINDOW) {
          finish(
            s,
            connectionError("ECONNRESET", `the coordinator overran the stream's window over the ${link.kind} broker`),
          )
          return "malformed"
        }
        s.chunks.push(msg.body)
        s.wake?.()
        return undefined
      case "end":
        finish(s)
        return undefined
      case "fail":
        finish(
          s,
          connectionError("ECONNRESET", `the coordinator ended the answer: ${String(h.why ?? "").slice(0, 300)}`),
        )
        return undefined
      default:
        return "malformed"
    }
  }

  return {
    fetch,
    receive,
    get open() {
      return streams.size
    },
    abortAll(why) {
      for (const s of [...streams.values()])
        finish(s, connectionError("ECONNRESET", `the ${link.kind} broker link was lost: ${why}`))
    },
  }
}

async function bytesOf(body: NonNullable<ConstructorParameters<typeof Response>[0]>): Promise<Uint8Array> {
  if (body instanceof Uint8Array) return body
  if (typeof body === "string") return new TextEncoder().encode(body)
  return new Uint8Array(await new Response(body).arrayBuffer())
}
