/**
 * Request signing. Every request except `/health` carries four headers:
 *   X-DFFmpeg-Client-Id, X-DFFmpeg-Timestamp (unix seconds), X-DFFmpeg-Nonce, X-DFFmpeg-Signature
 * The signature is base64(HMAC-SHA256(key, canonical)) where the key is the base64-decoded identity key and
 * `canonical` joins, one per line: a scheme tag, method, route path (without the coordinator's path_base),
 * canonical query string, client id, timestamp, nonce and hex SHA-256 of the exact body bytes.
 * Unlike the reference, the query string, the client id and a nonce are covered (no replay, no tampering
 * with `wait`/`after`/`limit`).
 */
export const SCHEME = "DFFMPEG-HMAC-SHA256"
export const HEADER = {
  client: "x-dffmpeg-client-id",
  timestamp: "x-dffmpeg-timestamp",
  nonce: "x-dffmpeg-nonce",
  signature: "x-dffmpeg-signature",
} as const

/** Seconds a timestamp may differ from the coordinator's clock. */
export const WINDOW_SECONDS = 30

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Bun's native hasher rather than node:crypto: loading node:crypto costs ~5 ms of proxy start-up.
export function sha256Hex(body: Uint8Array | string | undefined): string {
  if (body === undefined || body.length === 0) return EMPTY_SHA256
  return new Bun.CryptoHasher("sha256").update(body).digest("hex")
}

/**
 * A framed body signed by its frames' digests (docs/protocol.md, "Frame digests"): the request says so in
 * this header, and its signature's body hash is `framesBodyHash` instead of the body's SHA-256, so the
 * receiver gets each frame's SHA-256 from the one pass that checks the request and can reuse it (the
 * coordinator seals a relayed stdout frame with it instead of hashing it again). The header is not
 * signed: a receiver that took a body the other way would compute a different hash and refuse it.
 */
export const BODY_DIGEST_HEADER = "x-dffmpeg-body-digest"
export const FRAMES_DIGEST = "frames"
const FRAMES_SCHEME = "DFFMPEG-FRAMES-SHA256\n"

/** Frame header bytes, as in shared/protocol/frames.ts (which imports nothing from here). */
const HEAD = 13

/**
 * Most frames a body signed by its frames' digests may have. The coordinator computes the hash before it
 * knows whether the request is signed at all, and a hash per frame costs far more than its bytes: 16 MiB of
 * empty frames (1.3 million) took a second of CPU and 400 MB, where the body's own SHA-256 takes 23 ms.
 * A worker's batch of more frames (many small interleaved reads) is signed by its SHA-256 instead.
 */
export const FRAMES_DIGEST_MAX = 4096

/**
 * Hex SHA-256 of `DFFMPEG-FRAMES-SHA256\n` and, for each frame of the body in order, its 13-byte header
 * and the SHA-256 of its payload; with the payloads' digests. Undefined for a body that is not whole
 * frames, or has more than FRAMES_DIGEST_MAX (it cannot be signed, nor verify, this way).
 */
export function framesBodyHash(body: Uint8Array): { hash: string; digests: Uint8Array[] } | undefined {
  const outer = new Bun.CryptoHasher("sha256").update(FRAMES_SCHEME)
  const digests: Uint8Array[] = []
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let at = 0
  while (at < body.length) {
    if (body.length - at < HEAD || digests.length === FRAMES_DIGEST_MAX) return undefined
    const len = view.getUint32(at + 9)
    if (body.length - at - HEAD < len) return undefined
    const digest = payloadDigest(body.subarray(at + HEAD, at + HEAD + len))
    outer.update(body.subarray(at, at + HEAD)).update(digest)
    digests.push(digest)
    at += HEAD + len
  }
  return { hash: outer.digest("hex"), digests }
}

/** SHA-256 of a frame's payload (raw, 32 bytes). */
export function payloadDigest(payload: Uint8Array): Uint8Array {
  return new Bun.CryptoHasher("sha256").update(payload).digest() as Uint8Array
}

/** Sorted `k=v` pairs, RFC 3986 encoded, so that parameter order and encoding style never matter. */
export function canonicalQuery(search: string | URLSearchParams): string {
  const params = typeof search === "string" ? new URLSearchParams(search) : search
  const pairs: [string, string][] = []
  for (const [k, v] of params) pairs.push([enc(k), enc(v)])
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
  return pairs.map(([k, v]) => `${k}=${v}`).join("&")
}

function enc(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase())
}

export interface SignInput {
  method: string
  path: string
  query: string | URLSearchParams
  client: string
  timestamp: string
  nonce: string
  bodyHash: string
}

export function canonical(i: SignInput): string {
  return [
    SCHEME,
    i.method.toUpperCase(),
    i.path,
    canonicalQuery(i.query),
    i.client,
    i.timestamp,
    i.nonce,
    i.bodyHash,
  ].join("\n")
}

/** Decodes a stored key (standard base64 of ≥ 32 random bytes). Throws on anything else. */
export function decodeKey(key: string): Buffer {
  const trimmed = key.trim()
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || trimmed.length % 4 !== 0) throw new Error("key is not standard base64")
  const raw = Buffer.from(trimmed, "base64")
  if (raw.length < 32) throw new Error("key is shorter than 32 bytes")
  return raw
}

export function sign(key: Uint8Array, i: SignInput): string {
  return new Bun.CryptoHasher("sha256", key).update(canonical(i)).digest("base64")
}

/** Constant-time comparison of two base64 signatures. */
export function signaturesEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false
  // Every character is compared whatever the earlier ones were: no early exit leaks the prefix length.
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}

/** A new identity key: 32 bytes from the CSPRNG, standard base64 (44 characters). */
export function generateKey(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64")
}

export function newNonce(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url")
}

/** The four headers for a request. */
export function signRequest(opts: {
  key: Uint8Array
  client: string
  method: string
  path: string
  query?: string | URLSearchParams
  body?: Uint8Array | string
  /** The body's hash when it is not its SHA-256 (`framesBodyHash`). */
  bodyHash?: string
  now?: number
}): Record<string, string> {
  const timestamp = String(Math.floor((opts.now ?? Date.now()) / 1000))
  const nonce = newNonce()
  const signature = sign(opts.key, {
    method: opts.method,
    path: opts.path,
    query: opts.query ?? "",
    client: opts.client,
    timestamp,
    nonce,
    bodyHash: opts.bodyHash ?? sha256Hex(opts.body),
  })
  return {
    [HEADER.client]: opts.client,
    [HEADER.timestamp]: timestamp,
    [HEADER.nonce]: nonce,
    [HEADER.signature]: signature,
  }
}

/** Nonces one NonceCache generation holds at most (see NonceCache): 2^20, a table of 16 MiB at most. */
export const NONCE_GENERATION_MAX = 1 << 20

/**
 * One generation of nonces: an open-addressing table of 64-bit hashes of (client, nonce), two uint32
 * lanes per slot (0 marks an empty slot), doubled when half full: 16 to 32 bytes a nonce instead of a
 * string key and a number in a Map.
 */
class NonceTable {
  private slots = new Uint32Array(2 * 4096)
  size = 0

  /** True when the hash was there; otherwise adds it (the caller checked `size < max`). */
  seenOrAdd(hi: number, lo: number): boolean {
    const mask = this.slots.length / 2 - 1
    let i = (lo ^ hi) & mask
    for (;;) {
      const h = this.slots[2 * i]!
      if (h === 0) break
      if (h === hi && this.slots[2 * i + 1] === lo) return true
      i = (i + 1) & mask
    }
    this.slots[2 * i] = hi
    this.slots[2 * i + 1] = lo
    if (++this.size * 4 >= this.slots.length) this.grow()
    return false
  }

  has(hi: number, lo: number): boolean {
    const mask = this.slots.length / 2 - 1
    for (let i = (lo ^ hi) & mask; ; i = (i + 1) & mask) {
      const h = this.slots[2 * i]!
      if (h === 0) return false
      if (h === hi && this.slots[2 * i + 1] === lo) return true
    }
  }

  private grow() {
    const old = this.slots
    this.slots = new Uint32Array(old.length * 2)
    this.size = 0
    for (let i = 0; i < old.length; i += 2) if (old[i] !== 0) this.seenOrAdd(old[i]!, old[i + 1]!)
  }
}

/**
 * Remembers nonces for the signing window so that a captured request cannot be replayed. A timestamp
 * may be up to one window old or early, so a nonce must be kept for two windows: nonces go into the
 * current generation, which becomes the previous one after two windows and is dropped after two more
 * (each nonce is kept 2 to 4 windows). They are kept as 64-bit hashes under seeds of this process (a
 * false "replayed" takes a 64-bit collision, about 1 in 10^7 at a full table). Bounded: a generation
 * holds at most `max` nonces (NONCE_GENERATION_MAX, over 17,000 signed requests/s for a whole minute);
 * past it `remember` answers "full" and the request is refused (fail closed: forgetting a nonce would
 * let its request be replayed) until the generation turns.
 */
export class NonceCache {
  private cur = new NonceTable()
  private prev = new NonceTable()
  private turnAt = -Infinity
  private readonly seeds = crypto.getRandomValues(new Uint32Array(2))

  constructor(
    private windowMs = WINDOW_SECONDS * 1000,
    private max = NONCE_GENERATION_MAX,
  ) {}

  /** "new" the first time this (client, nonce) pair is seen within the window, "replay" after; "full" past the bound. */
  remember(client: string, nonce: string, now: number): "new" | "replay" | "full" {
    if (now >= this.turnAt) {
      const generation = 2 * this.windowMs
      const idle = now >= this.turnAt + generation
      this.prev = idle ? new NonceTable() : this.cur
      this.cur = new NonceTable()
      this.turnAt = idle ? now + generation : this.turnAt + generation
    }
    const id = `${client}\n${nonce}`
    // Never 0 (an empty slot).
    const hi = (Bun.hash.murmur32v3(id, this.seeds[0]) | 1) >>> 0
    const lo = Bun.hash.murmur32v3(id, this.seeds[1]) >>> 0
    if (this.prev.has(hi, lo)) return "replay"
    if (this.cur.size >= this.max) return this.cur.has(hi, lo) ? "replay" : "full"
    return this.cur.seenOrAdd(hi, lo) ? "replay" : "new"
  }
}
