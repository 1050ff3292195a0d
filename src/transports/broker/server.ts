import type { Logger } from "../../shared/log.ts"
import { type Header, open, peek, Rejected, type RejectReason, samePeer, seal, SeenNonces } from "./envelope.ts"
import {
  CHUNK,
  MAX_REQUEST_BODY,
  MAX_STREAMS,
  MAX_STREAMS_PER_IDENTITY,
  MAX_BODY_BYTES_IN_FLIGHT,
  TIMING,
  TUNNEL_ORIGIN,
  type TunnelTiming,
  WINDOW,
} from "./tunnel.ts"
import type { BrokerLink, PeerAddress } from "./types.ts"

export interface TunnelServerOptions {
  link: BrokerLink
  /** This coordinator's own channel (identity COORDINATORS): acks and cancels of its answers come there. */
  self: PeerAddress
  /** The key of an identity, undefined when there is none (or it is unusable). */
  keyOf(identity: string): Promise<Uint8Array | undefined>
  /** Serves one request as HTTP would (the coordinator's app, told which transport it came by). */
  fetch(req: Request): Promise<Response>
  /** A message dropped, and why (dffmpeg_transport_rejected_total). */
  onReject?(reason: RejectReason): void
  log?: Logger
  timing?: TunnelTiming
}

interface Answer {
  id: string
  who: string
  key: Uint8Array
  requester: PeerAddress
  ac: AbortController
  /** Next sequence number to send. */
  seq: number
  /** Data chunks sent, and read (the requester's last `ack`). */
  chunks: number
  upto: number
  heard: number
  spoke: number
  wake?: () => void
}

/**
 * The coordinator half of the tunnel: takes `req` messages off the request channel, checks them, serves
 * them through the app exactly as over HTTP (the request inside carries its own HMAC signature, checked
 * there like any other) and streams the answer back to the requester's channel, WINDOW chunks in flight at
 * most. The broker message is acknowledged once the request changed what it changes: at once for a GET
 * (it changes nothing; a long poll must not hold the broker's delivery), after the answer's head otherwise.
 */
export function createTunnelServer(o: TunnelServerOptions) {
  const answers = new Map<string, Answer>()
  const perIdentity = new Map<string, number>()
  /** Bytes of the bodies of the requests being served (MAX_BODY_BYTES_IN_FLIGHT). */
  let bodies = 0
  const nonces = new SeenNonces()
  const reject = (reason: RejectReason, detail: string) => {
    o.onReject?.(reason)
    o.log?.debug("broker message dropped", { transport: o.link.kind, reason, detail })
  }

  const send = (a: Answer, t: Header["t"], extra: Partial<Header> = {}, body?: Uint8Array) => {
    const bytes = seal(a.key, { t, who: a.who, from: o.self, to: a.requester, id: a.id, seq: a.seq, ...extra }, body)
    if (t !== "keep") a.seq++
    a.spoke = Date.now()
    return o.link.publish(a.requester, bytes)
  }

  const timing = o.timing ?? TIMING
  const timer = setInterval(() => {
    const now = Date.now()
    for (const a of answers.values()) {
      if (now - a.heard > timing.leaseMs) {
        a.ac.abort(new Error("the requester stopped acknowledging"))
        a.wake?.()
      } else if (now - a.spoke >= timing.keepMs) send(a, "keep").catch(() => {})
    }
  }, timing.keepMs / 2)

  /** Checks a message's envelope with its signer's key; undefined (and counted) when it is refused. */
  const verify = async (bytes: Uint8Array) => {
    try {
      const p = peek(bytes)
      const key = await o.keyOf(p.header.who)
      const msg = open(p, key)
      if (!nonces.remember(msg.header.nonce, Date.now())) throw new Rejected("replayed", "nonce seen")
      return { ...msg, key: key! }
    } catch (err) {
      if (err instanceof Rejected) reject(err.reason, err.message)
      else reject("malformed", (err as Error).message)
      return undefined
    }
  }

  const serve = async (a: Answer, req: Request, headSent: () => void, redelivered: boolean) => {
    let res: Response
    try {
      res = await o.fetch(req)
    } catch (err) {
      headSent()
      await send(a, "fail", { why: (err as Error).message }).catch(() => {})
      return
    }
    // Handed out before to a coordinator that was lost before it acknowledged: if that one took the
    // request's nonce, the request is refused here as a replay, though it was never answered. Its outcome
    // is unknown, as after a connection reset over HTTP: the requester retries (re-signed) what it may.
    if (redelivered && res.status === 401) {
      headSent()
      await res.body?.cancel().catch(() => {})
      await send(a, "fail", { why: "delivered again after a coordinator was lost; its outcome is unknown" }).catch(
        () => {},
      )
      return
    }
    const head = { s: res.status, h: [...res.headers.entries()] }
    if (!res.body) {
      await send(a, "head", { ...head, fin: true })
      return headSent()
    }
    const reader = res.body.getReader()
    const onAbort = () => void reader.cancel().catch(() => {})
    a.ac.signal.addEventListener("abort", onAbort, { once: true })
    /** Sends `value` as data chunks within the window; false once the answer was aborted. */
    const data = async (value: Uint8Array) => {
      for (let at = 0; at < value.length; at += CHUNK) {
        while (a.chunks - a.upto >= WINDOW && !a.ac.signal.aborted) await new Promise<void>((r) => (a.wake = r))
        if (a.ac.signal.aborted) return false
        await send(a, "data", {}, value.subarray(at, at + CHUNK))
        a.chunks++
      }
      return true
    }
    /** The read, if it settles at once (a body already there); undefined when it has to wait. */
    const soon = <T>(p: Promise<T>) => Promise.race([p, Bun.sleep(0).then(() => undefined)])
    try {
      // An answer whose body is all there at once (a JSON reply) goes as one message: the head with the
      // body and `fin`. One message per request, none waiting behind another's TCP acknowledgement.
      let next = reader.read()
      const first = await soon(next)
      if (first?.done) {
        await send(a, "head", { ...head, fin: true })
        return headSent()
      }
      if (first && first.value.length <= CHUNK) {
        next = reader.read()
        const second = await soon(next)
        if (second?.done) {
          await send(a, "head", { ...head, fin: true }, first.value)
          return headSent()
        }
        // The head carries the first chunk (counted as one); what came after it follows as data.
        await send(a, "head", head, first.value)
        a.chunks++
        headSent()
        if (second && !(await data(second.value))) return
        if (second) next = reader.read()
      } else {
        await send(a, "head", head)
        headSent()
        if (first && !(await data(first.value))) return
        if (first) next = reader.read()
      }
      for (;;) {
        const { done, value } = await next
        if (done) break
        if (!(await data(value))) return
        next = reader.read()
      }
      if (!a.ac.signal.aborted) await send(a, "end")
    } catch (err) {
      headSent()
      if (!a.ac.signal.aborted) await send(a, "fail", { why: (err as Error).message }).catch(() => {})
    } finally {
      a.ac.signal.removeEventListener("abort", onAbort)
    }
  }

  const request = async (bytes: Uint8Array, redelivered: boolean) => {
    const msg = await verify(bytes)
    if (!msg) return
    const h = msg.header
    if (h.t !== "req" || h.to !== undefined || h.seq !== 0)
      return reject("misaddressed", `a ${h.t} on the request channel`)
    if (h.from.identity !== h.who) return reject("misaddressed", "sent for another identity")
    if (typeof h.m !== "string" || !/^[A-Z]{3,7}$/.test(h.m) || typeof h.p !== "string" || !h.p.startsWith("/"))
      return reject("malformed", "no method or path")
    if (
      !Array.isArray(h.h) ||
      !h.h.every((e) => Array.isArray(e) && e.length === 2 && e.every((x) => typeof x === "string"))
    )
      return reject("malformed", "bad headers")
    const client = h.h.find(([k]) => k.toLowerCase() === "x-dffmpeg-client-id")?.[1]
    if (client !== undefined && client !== h.who)
      return reject("misaddressed", "the request inside is another identity's")
    if (msg.body.length > MAX_REQUEST_BODY) return reject("oversized", `${msg.body.length} bytes`)
    if (answers.has(h.id)) return reject("replayed", "stream id in use")
    const a: Answer = {
      id: h.id,
      who: h.who,
      key: msg.key,
      requester: h.from,
      ac: new AbortController(),
      seq: 0,
      chunks: 0,
      upto: 0,
      heard: Date.now(),
      spoke: 0,
    }
    const mine = perIdentity.get(h.who) ?? 0
    if (
      answers.size >= MAX_STREAMS ||
      mine >= MAX_STREAMS_PER_IDENTITY ||
      bodies + msg.body.length > MAX_BODY_BYTES_IN_FLIGHT
    ) {
      const why = `too many requests at once over the ${o.link.kind} broker (at most ${MAX_STREAMS_PER_IDENTITY} per identity, ${MAX_STREAMS} and ${MAX_BODY_BYTES_IN_FLIGHT} bytes of bodies in all); try again`
      await send(a, "fail", { why }).catch(() => {})
      return
    }
    let url: URL
    try {
      url = new URL(h.p, TUNNEL_ORIGIN)
    } catch {
      return reject("malformed", "bad path")
    }
    if (url.origin !== TUNNEL_ORIGIN) return reject("malformed", "bad path")
    const method = h.m
    const req = new Request(url.href, {
      method,
      headers: h.h.filter(([k]) => !/^(host|content-length|transfer-encoding|connection)$/i.test(k)),
      body: method === "GET" || method === "HEAD" ? undefined : msg.body,
      signal: a.ac.signal,
    })
    answers.set(a.id, a)
    perIdentity.set(h.who, mine + 1)
    bodies += msg.body.length
    let headSent!: () => void
    const head = new Promise<void>((r) => (headSent = r))
    const served = serve(a, req, headSent, redelivered)
      .catch((err) => o.log?.warn("a broker answer failed", { transport: o.link.kind, err: (err as Error).message }))
      .finally(() => {
        answers.delete(a.id)
        bodies -= msg.body.length
        const n = (perIdentity.get(a.who) ?? 1) - 1
        if (n) perIdentity.set(a.who, n)
        else perIdentity.delete(a.who)
        a.ac.abort()
      })
    // A GET changes nothing: its broker message is done with at once (a long poll must not hold it).
    if (method !== "GET" && method !== "HEAD") await Promise.race([head, served])
  }

  const control = async (bytes: Uint8Array) => {
    const msg = await verify(bytes)
    if (!msg) return
    const h = msg.header
    if (!samePeer(h.to, o.self)) return reject("misaddressed", "for another coordinator")
    const a = answers.get(h.id)
    if (!a) return
    if (a.who !== h.who || !samePeer(a.requester, h.from)) return reject("misaddressed", "another requester's stream")
    a.heard = Date.now()
    if (h.t === "ack") {
      if (typeof h.upto === "number" && h.upto > a.upto && h.upto <= a.chunks) a.upto = h.upto
      a.wake?.()
    } else if (h.t === "cancel") {
      a.ac.abort(new Error("canceled by the requester"))
      a.wake?.()
    } else reject("misaddressed", `a ${h.t} on a coordinator's channel`)
  }

  return {
    /** Hands a message from the link (`LinkOptions.onMessage`). */
    receive: (channel: "requests" | "peer", bytes: Uint8Array, redelivered = false) =>
      (channel === "requests" ? request(bytes, redelivered) : control(bytes)).catch((err) =>
        o.log?.warn("a broker message could not be handled", { transport: o.link.kind, err: (err as Error).message }),
      ),
    get open() {
      return answers.size
    },
    /** Ends every answer (the coordinator stops); requesters see a lost connection and go elsewhere. */
    close() {
      clearInterval(timer)
      for (const a of answers.values()) {
        a.ac.abort(new Error("the coordinator is stopping"))
        a.wake?.()
        send(a, "fail", { why: "the coordinator is stopping" }).catch(() => {})
      }
    },
  }
}
