import { TrustError, UnavailableError } from "../errors.ts"
import { FRAME_HEADER, Kind, MAX_FRAME, encodeFrame } from "../protocol/frames.ts"
import { payloadDigest, sha256Hex } from "./hmac.ts"

/**
 * Response signing (docs/protocol.md, "Response signatures"). Every reply to an authenticated request
 * carries `X-DFFmpeg-Response-Signature` = base64(HMAC-SHA256(key, canonical)) with the key of the
 * identity that signed the request, and `canonical` joins, one per line:
 *
 *   DFFMPEG-RESPONSE-HMAC-SHA256
 *   <the request's X-DFFmpeg-Nonce>
 *   <HTTP status>
 *   <Content-Type header, exactly as sent; empty when absent>
 *   <JSON array of the values of SIGNED_HEADERS, in that order; "" for one that is absent>
 *   <hex SHA-256 of the body bytes, or STREAM for a signed frame stream>
 *
 * The headers that carry data (a listing's next cursor, a log tail's truncation) are signed like the
 * body: a man in the middle who drops or rewrites one would otherwise cut a listing short unnoticed.
 * The nonce binds a reply to the one request it answers (a reply captured for another request does not
 * verify). A frame stream cannot be hashed before it is sent: its header signature (body slot `STREAM`)
 * seeds a chain of MAC frames. After every chunk of frames the sender appends a `mac` frame whose payload
 * is HMAC-SHA256(key, previous MAC ‖ the exact bytes of the chunk's frames), the first "previous MAC"
 * being the raw header signature; a deliberate end of stream is an `end` frame sealed the same way. A
 * receiver releases frames only once the `mac` after them verified, so a changed byte, a dropped,
 * reordered or repeated frame, a frame spliced from another stream and a cut-off stream are all detected.
 */
export const RESPONSE_SCHEME = "DFFMPEG-RESPONSE-HMAC-SHA256"
export const RESPONSE_HEADER = "x-dffmpeg-response-signature"
/** Body slot of a streamed reply's canonical form (a hex SHA-256 never equals it). */
export const STREAMED = "STREAM"
/**
 * Body slot of a stream sealed by frame digests (asked for with `?digests=1`): each `mac` frame's payload
 * is HMAC-SHA256(key, previous MAC ‖ for each frame of the chunk: its 13-byte header ‖ SHA-256 of its
 * payload), so a sender that already has a payload's digest (the coordinator, from the upload that
 * brought it) need not hash it again. Its own seed keeps the two forms' chains apart.
 */
export const STREAMED_DIGESTS = "STREAM-DIGESTS"
const MAC_BYTES = 32
/** Most unsealed bytes a receiver buffers before the next `mac` frame: one largest frame and some. */
const MAX_UNSEALED = MAX_FRAME + 1024 * 1024
/** Payloads from this size on are written as they are rather than copied behind their frame header. */
const SEPARATE_PAYLOAD = 64 * 1024

/** Response headers that carry data, covered by the signature (lower-case, in canonical order). */
export const SIGNED_HEADERS = ["x-next-before", "x-dffmpeg-tail-truncated"] as const

export interface ResponseInput {
  nonce: string
  status: number
  contentType: string
  /** The reply's headers, for the values of SIGNED_HEADERS; absent means none of them is set (frame streams). */
  headers?: { get(name: string): string | null }
  /** Hex SHA-256 of the body, or `STREAMED`. */
  bodyHash: string
}

export function responseCanonical(i: ResponseInput): string {
  const signed = JSON.stringify(SIGNED_HEADERS.map((h) => i.headers?.get(h) ?? ""))
  return [RESPONSE_SCHEME, i.nonce, String(i.status), i.contentType, signed, i.bodyHash].join("\n")
}

function hmac(key: Uint8Array, ...parts: (string | Uint8Array)[]): Buffer {
  const h = new Bun.CryptoHasher("sha256", key)
  for (const p of parts) h.update(p)
  return h.digest()
}

/** The raw (32-byte) response signature. */
export function responseMac(key: Uint8Array, i: ResponseInput): Buffer {
  return hmac(key, responseCanonical(i))
}

/** The header value for a reply with a complete body. */
export function signResponse(key: Uint8Array, i: Omit<ResponseInput, "bodyHash">, body: Uint8Array | string): string {
  return responseMac(key, { ...i, bodyHash: sha256Hex(body) }).toString("base64")
}

/** Constant-time comparison of two byte strings. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}

/**
 * What a `mac` frame covers of whole frames in the digest form: each frame's header and its payload's
 * SHA-256 (the frames were parsed before: a chunk a sender seals, or one a receiver checked the lengths of).
 */
function digestParts(frames: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = []
  const view = new DataView(frames.buffer, frames.byteOffset, frames.byteLength)
  for (let at = 0; at + FRAME_HEADER <= frames.length; ) {
    const end = at + FRAME_HEADER + view.getUint32(at + 9)
    parts.push(frames.subarray(at, at + FRAME_HEADER), payloadDigest(frames.subarray(at + FRAME_HEADER, end)))
    at = end
  }
  return parts
}

/** The sender's side of a signed frame stream. */
export class StreamSealer {
  /** The `X-DFFmpeg-Response-Signature` header of the stream. */
  readonly header: string
  private prev: Buffer

  /** `digests`: seal by frame digests (STREAMED_DIGESTS) rather than by the frames' bytes. */
  constructor(
    private key: Uint8Array,
    i: Omit<ResponseInput, "bodyHash">,
    private digests = false,
  ) {
    this.prev = responseMac(key, { ...i, bodyHash: digests ? STREAMED_DIGESTS : STREAMED })
    this.header = this.prev.toString("base64")
  }

  /** `chunk` (whole frames) followed by its `mac` frame, as one buffer. */
  seal(chunk: Uint8Array): Uint8Array {
    this.prev = this.digests ? hmac(this.key, this.prev, ...digestParts(chunk)) : hmac(this.key, this.prev, chunk)
    const out = new Uint8Array(chunk.length + FRAME_HEADER + MAC_BYTES)
    out.set(chunk)
    out.set(encodeFrame(Kind.mac, 0, this.prev), chunk.length)
    return out
  }

  /**
   * One frame followed by its `mac` frame, as the pieces to write in order. A small payload is encoded
   * straight into one buffer with them (one write); a large one is not copied at all: its header, the
   * payload itself and the `mac` frame go as three pieces (copying a 1 MiB row cost as much as hashing it).
   * In the digest form, `digest` is the payload's SHA-256 when the caller has it (it is not hashed again).
   */
  sealFrame(kind: number, seq: number, data: Uint8Array, digest?: Uint8Array): Uint8Array[] {
    const inline = data.length < SEPARATE_PAYLOAD
    const head = new Uint8Array(FRAME_HEADER + (inline ? data.length : 0))
    const view = new DataView(head.buffer)
    view.setUint8(0, kind)
    view.setBigUint64(1, BigInt(seq))
    view.setUint32(9, data.length)
    if (inline) head.set(data, FRAME_HEADER)
    this.prev = this.digests
      ? hmac(this.key, this.prev, head.subarray(0, FRAME_HEADER), digest ?? payloadDigest(data))
      : inline
        ? hmac(this.key, this.prev, head)
        : hmac(this.key, this.prev, head, data)
    const mac = encodeFrame(Kind.mac, 0, this.prev)
    return inline ? [head, mac] : [head, data, mac]
  }

  /** The sealed `end` frame: the stream ended on purpose, nothing was cut off. */
  end(): Uint8Array {
    return this.seal(encodeFrame(Kind.end, 0))
  }
}

/**
 * The receiver's side: fed the raw body as it arrives, returns the verified bytes (whole frames, `mac`
 * and `end` frames removed) ready for an ordinary frame decoder. Throws TrustError on any mismatch;
 * `finish()` throws when the body ended before its sealed `end` frame.
 */
export class StreamVerifier {
  private parts: Uint8Array[] = []
  private size = 0
  private prev: Uint8Array
  private ended = false
  /** Bytes needed before parsing can make progress again. */
  private need = FRAME_HEADER

  /** `digests`: the stream is sealed by frame digests (its seed is the STREAMED_DIGESTS signature). */
  constructor(
    private key: Uint8Array,
    seed: Uint8Array,
    private what: string,
    private digests = false,
  ) {
    this.prev = seed
  }

  push(chunk: Uint8Array): Uint8Array[] {
    if (!chunk.length) return []
    if (this.ended) throw this.fail("bytes after the end of the stream")
    this.parts.push(chunk)
    this.size += chunk.length
    const out: Uint8Array[] = []
    if (this.size < this.need) return out
    // Frames are only parsed once enough bytes are in, so a large frame arriving in pieces is joined once.
    for (;;) {
      const buf = this.joined()
      let at = 0
      let sealed = -1
      let sawEnd = false
      let endAt = 0
      while (buf.length - at >= FRAME_HEADER) {
        const view = new DataView(buf.buffer, buf.byteOffset + at, FRAME_HEADER)
        const kind = view.getUint8(0)
        const len = view.getUint32(9)
        if (len > MAX_FRAME) throw this.fail(`a frame of ${len} bytes`)
        if (buf.length - at < FRAME_HEADER + len) {
          this.need = at + FRAME_HEADER + len
          break
        }
        if (kind === Kind.mac) {
          if (len !== MAC_BYTES) throw this.fail("a malformed MAC frame")
          const sealedFrames = buf.subarray(0, at)
          const expected = this.digests
            ? hmac(this.key, this.prev, ...digestParts(sealedFrames))
            : hmac(this.key, this.prev, sealedFrames)
          const got = buf.subarray(at + FRAME_HEADER, at + FRAME_HEADER + len)
          if (!bytesEqual(expected, got))
            throw this.fail("a frame whose MAC does not verify (changed, dropped, reordered or from another stream)")
          this.prev = expected
          sealed = at + FRAME_HEADER + len
          break
        }
        if (sawEnd) throw this.fail("a frame after the end frame")
        if (kind === Kind.end) {
          sawEnd = true
          endAt = at
        }
        at += FRAME_HEADER + len
      }
      if (sealed < 0) {
        if (buf.length - at < FRAME_HEADER) this.need = at + FRAME_HEADER
        if (this.size > MAX_UNSEALED) throw this.fail(`over ${MAX_UNSEALED} bytes without a MAC frame`)
        return out
      }
      const verified = buf.subarray(0, sawEnd ? endAt : sealed - FRAME_HEADER - MAC_BYTES)
      if (verified.length) out.push(verified)
      const rest = buf.subarray(sealed)
      this.parts = rest.length ? [rest] : []
      this.size = rest.length
      this.need = FRAME_HEADER
      if (sawEnd) {
        this.ended = true
        if (rest.length) throw this.fail("bytes after the end of the stream")
        return out
      }
      if (this.size < FRAME_HEADER) return out
    }
  }

  /** The body ended: it must have ended with the sealed `end` frame. */
  finish(): void {
    // Looks like (and is treated as) a dropped connection: followers re-attach after the last verified frame.
    if (!this.ended) throw new UnavailableError(`the stream from ${this.what} was cut off before its signed end`)
  }

  private joined(): Uint8Array {
    if (this.parts.length === 1) return this.parts[0]!
    const all = new Uint8Array(this.size)
    let o = 0
    for (const p of this.parts) {
      all.set(p, o)
      o += p.length
    }
    this.parts = [all]
    return all
  }

  private fail(what: string): TrustError {
    return new TrustError(
      `${this.what} sent ${what}; refusing it (something between us and the coordinator changed the reply)`,
    )
  }
}

/** Wraps a signed frame-stream body into one that yields only verified frame bytes. */
export function verifiedStream(body: ReadableStream<Uint8Array>, v: StreamVerifier): ReadableStream<Uint8Array> {
  const reader = body.getReader()
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) {
          v.finish()
          ctl.close()
          return
        }
        const out = v.push(value)
        if (!out.length) continue
        for (const o of out) ctl.enqueue(o)
        return
      }
    },
    cancel(reason) {
      return reader.cancel(reason)
    },
  })
}
