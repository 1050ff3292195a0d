import { sha256Hex } from "../../shared/auth/hmac.ts"
import { bytesEqual } from "../../shared/auth/response.ts"
import { checkPeer, MAX_MESSAGE_BYTES, type PeerAddress } from "./types.ts"

/**
 * Signed envelopes: every message on a broker (docs/protocol.md, "Broker transports"). On the wire:
 *
 *   "DFB1" | u32 big-endian header length | header (JSON) | 32-byte signature | body
 *
 * The signature is HMAC-SHA256(key, "DFFMPEG-BROKER-HMAC-SHA256\n" ‖ header bytes) with the key of the
 * identity the stream belongs to (`who`: the requester, in both directions, as for HTTP requests and their
 * replies). The header names the message type, the sender and the addressee (identity and process
 * instance), the stream id, the message's sequence number in its stream, its time, a random nonce and the
 * hex SHA-256 of the body, so a receiver that checked the signature has checked everything: a changed
 * body, a message for another process, a replay (nonce and sequence) or a message from another time.
 */
export const ENVELOPE_SCHEME = "DFFMPEG-BROKER-HMAC-SHA256\n"
const MAGIC = new Uint8Array([0x44, 0x46, 0x42, 0x31]) // "DFB1"
const SIG_BYTES = 32
/** Longest header: a request's line and headers (signature headers, content type) are far under it. */
export const MAX_HEADER_BYTES = 32 * 1024
/** How far a message's time may be from the receiver's clock, as for signed HTTP requests. */
export const MESSAGE_WINDOW_MS = 30_000

/**
 * What a message is: `req` a request (peer → the request channel); `head` the status and headers of its
 * answer, `data` a chunk of the answer's body, `end` its end, `fail` a failure, `keep` "still on it"
 * (coordinator → peer); `ack` the chunks consumed and "still listening", `cancel` "no longer wanted"
 * (peer → the serving coordinator's channel); `notify` the topics of a wake-up (coordinator → every
 * coordinator, coordinator/notify/broker.ts).
 */
export type MessageType = "req" | "head" | "data" | "end" | "fail" | "keep" | "ack" | "cancel" | "notify"
const TYPES = new Set<MessageType>(["req", "head", "data", "end", "fail", "keep", "ack", "cancel", "notify"])

export interface Header {
  v: 1
  t: MessageType
  /** The identity whose key signs: the requester's. */
  who: string
  from: PeerAddress
  /** Absent on `req`: the request channel is anybody's (any coordinator of the broker). */
  to?: PeerAddress
  /** The stream (one request and its answer): a ULID the requester chose. */
  id: string
  /** 0-based, per stream and direction; duplicates are dropped. */
  seq: number
  /** Milliseconds since the epoch, sender's clock. */
  ts: number
  nonce: string
  /** Hex SHA-256 of the body. */
  bh: string
  /** `req`: method, path with query. */
  m?: string
  p?: string
  /** `req` and `head`: HTTP headers. */
  h?: [string, string][]
  /** `head`: the HTTP status. */
  s?: number
  /** `head`: the answer ends here (its body, if any, is this message's). */
  fin?: true
  /** `ack`: the highest `data` sequence number consumed (-1 before the first). */
  upto?: number
  /** `fail`: why. */
  why?: string
}

/** Why a message was dropped (the `reason` label of dffmpeg_transport_rejected_total). */
export type RejectReason = "malformed" | "oversized" | "unsigned" | "signature" | "stale" | "replayed" | "misaddressed"

export class Rejected extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message)
  }
}

const enc = new TextEncoder()
const dec = new TextDecoder("utf-8", { fatal: true })

function mac(key: Uint8Array, header: Uint8Array): Uint8Array {
  return new Bun.CryptoHasher("sha256", key).update(ENVELOPE_SCHEME).update(header).digest() as Uint8Array
}

const randomNonce = () => Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex")

/** Builds and signs a message. `fields` is everything but the version, time, nonce and body hash. */
export function seal(
  key: Uint8Array,
  fields: Omit<Header, "v" | "ts" | "nonce" | "bh">,
  body: Uint8Array = new Uint8Array(),
  now = Date.now(),
): Uint8Array {
  const header: Header = { v: 1, ...fields, ts: now, nonce: randomNonce(), bh: sha256Hex(body) }
  const h = enc.encode(JSON.stringify(header))
  if (h.length > MAX_HEADER_BYTES) throw new Error(`a broker message header of ${h.length} bytes is over the limit`)
  const size = MAGIC.length + 4 + h.length + SIG_BYTES + body.length
  if (size > MAX_MESSAGE_BYTES)
    throw new Error(`a broker message of ${size} bytes is over the limit of ${MAX_MESSAGE_BYTES} bytes`)
  const out = new Uint8Array(size)
  out.set(MAGIC, 0)
  new DataView(out.buffer).setUint32(4, h.length)
  out.set(h, 8)
  out.set(mac(key, h), 8 + h.length)
  out.set(body, 8 + h.length + SIG_BYTES)
  return out
}

export interface Opened {
  header: Header
  body: Uint8Array
}

const isPeer = (p: unknown): p is PeerAddress => {
  if (!p || typeof p !== "object") return false
  const { identity, instance } = p as PeerAddress
  if (typeof identity !== "string" || typeof instance !== "string") return false
  try {
    checkPeer({ identity, instance })
    return true
  } catch {
    return false
  }
}

/** The header of a message, unverified (to pick the key): `Rejected("malformed")` when it is not one. */
export function peek(bytes: Uint8Array): { header: Header; raw: Uint8Array; sig: Uint8Array; body: Uint8Array } {
  if (bytes.length > MAX_MESSAGE_BYTES) throw new Rejected("oversized", `${bytes.length} bytes`)
  if (bytes.length < 8 + SIG_BYTES || !bytesEqual(bytes.subarray(0, 4), MAGIC))
    throw new Rejected("malformed", "not a dffmpeg broker message")
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4)
  if (len > MAX_HEADER_BYTES || 8 + len + SIG_BYTES > bytes.length) throw new Rejected("malformed", "bad header length")
  const raw = bytes.subarray(8, 8 + len)
  let header: Header
  try {
    header = JSON.parse(dec.decode(raw)) as Header
  } catch {
    throw new Rejected("malformed", "the header is not JSON")
  }
  if (
    !header ||
    typeof header !== "object" ||
    header.v !== 1 ||
    !TYPES.has(header.t) ||
    typeof header.who !== "string" ||
    !isPeer(header.from) ||
    (header.to !== undefined && !isPeer(header.to)) ||
    typeof header.id !== "string" ||
    !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(header.id) ||
    !Number.isSafeInteger(header.seq) ||
    header.seq < 0 ||
    !Number.isSafeInteger(header.ts) ||
    typeof header.nonce !== "string" ||
    !/^[0-9a-f]{32}$/.test(header.nonce) ||
    typeof header.bh !== "string"
  )
    throw new Rejected("malformed", "the header lacks a field or has one of the wrong type")
  return { header, raw, sig: bytes.subarray(8 + len, 8 + len + SIG_BYTES), body: bytes.subarray(8 + len + SIG_BYTES) }
}

/**
 * Verifies a message with `key` (undefined: the signer is unknown, `unsigned`): its signature, its body's
 * hash and its time (within MESSAGE_WINDOW_MS of `now`). Replays and addressing are the receiver's to check.
 */
export function open(peeked: ReturnType<typeof peek>, key: Uint8Array | undefined, now = Date.now()): Opened {
  if (!key) throw new Rejected("unsigned", `no key for ${JSON.stringify(peeked.header.who.slice(0, 64))}`)
  if (!bytesEqual(mac(key, peeked.raw), peeked.sig)) throw new Rejected("signature", "the signature does not verify")
  if (sha256Hex(peeked.body) !== peeked.header.bh) throw new Rejected("signature", "the body does not match its hash")
  if (Math.abs(now - peeked.header.ts) > MESSAGE_WINDOW_MS)
    throw new Rejected("stale", `sent ${Math.round((now - peeked.header.ts) / 1000)} s away from this clock`)
  return { header: peeked.header, body: peeked.body }
}

/**
 * Nonces seen within the message window, so a replayed message is refused even on another stream. Bounded:
 * at most `max` are kept (the oldest go first); a message older than the window is refused as stale anyway.
 */
export class SeenNonces {
  private readonly seen = new Map<string, number>()
  constructor(private readonly max = 200_000) {}
  /** False when the nonce was seen already. */
  remember(nonce: string, now: number): boolean {
    if (this.seen.has(nonce)) return false
    this.seen.set(nonce, now)
    if (this.seen.size > this.max || this.seen.size % 1024 === 0) this.prune(now)
    return true
  }
  private prune(now: number) {
    for (const [n, t] of this.seen) {
      if (t >= now - 2 * MESSAGE_WINDOW_MS && this.seen.size <= this.max) break
      this.seen.delete(n)
    }
  }
}

export const samePeer = (a: PeerAddress | undefined, b: PeerAddress) =>
  !!a && a.identity === b.identity && a.instance === b.instance
