import { describe, expect, test } from "bun:test"
import { TrustError, UnavailableError } from "../errors.ts"
import { Kind, concatFrames, decodeFrames, encodeFrame, encodeJsonFrame } from "../protocol/frames.ts"
import { payloadDigest, sha256Hex } from "./hmac.ts"
import {
  STREAMED,
  STREAMED_DIGESTS,
  StreamSealer,
  StreamVerifier,
  responseCanonical,
  responseMac,
  signResponse,
} from "./response.ts"

const key = Buffer.alloc(32, 7)
const other = Buffer.alloc(32, 8)
const NONCE = "bm9uY2Utb2YtdGhlLXJlcXVlc3Q"
const head = { nonce: NONCE, status: 200, contentType: "application/vnd.dffmpeg.frames" }

describe("response canonical form", () => {
  test("joins scheme, request nonce, status, content type, signed headers and body hash, one per line", () => {
    expect(
      responseCanonical({ nonce: "n0", status: 409, contentType: "application/json", bodyHash: sha256Hex("{}") }),
    ).toBe(
      'DFFMPEG-RESPONSE-HMAC-SHA256\nn0\n409\napplication/json\n["",""]\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
    )
    const headers = new Headers({
      "X-Next-Before": "01JNEXT",
      "x-dffmpeg-tail-truncated": "1000 bytes",
      "x-other": "not signed",
    })
    expect(
      responseCanonical({ nonce: "n0", status: 200, contentType: "", headers, bodyHash: STREAMED }).split("\n")[4],
    ).toBe('["01JNEXT","1000 bytes"]')
  })

  test("the data-carrying headers are signed: adding, dropping or changing one changes the signature", () => {
    const json = { nonce: NONCE, status: 200, contentType: "application/json" }
    const page = signResponse(key, { ...json, headers: new Headers({ "x-next-before": "01JB" }) }, "[]")
    expect(signResponse(key, { ...json, headers: new Headers() }, "[]")).not.toBe(page)
    expect(signResponse(key, { ...json, headers: new Headers({ "x-next-before": "01JA" }) }, "[]")).not.toBe(page)
    expect(
      signResponse(
        key,
        { ...json, headers: new Headers({ "x-next-before": "01JB", "x-dffmpeg-tail-truncated": "1" }) },
        "[]",
      ),
    ).not.toBe(page)
    // A value moved to the other header is not the same reply.
    expect(signResponse(key, { ...json, headers: new Headers({ "x-dffmpeg-tail-truncated": "01JB" }) }, "[]")).not.toBe(
      page,
    )
    // Headers outside the list are not covered; absent equals no headers at all.
    expect(
      signResponse(key, { ...json, headers: new Headers({ "x-next-before": "01JB", "x-request-id": "r" }) }, "[]"),
    ).toBe(page)
    expect(signResponse(key, { ...json, headers: new Headers({ "x-request-id": "r" }) }, "[]")).toBe(
      signResponse(key, json, "[]"),
    )
  })

  test("every field changes the signature; a reply signed for one nonce does not verify for another", () => {
    const json = { nonce: NONCE, status: 200, contentType: "application/json" }
    const base = signResponse(key, json, '{"jobs":[]}')
    expect(signResponse(key, json, '{"jobs":[]}')).toBe(base)
    expect(signResponse(key, { ...json, nonce: "another-nonce-0000" }, '{"jobs":[]}')).not.toBe(base)
    expect(signResponse(key, { ...json, status: 201 }, '{"jobs":[]}')).not.toBe(base)
    expect(signResponse(key, { ...json, contentType: "text/plain" }, '{"jobs":[]}')).not.toBe(base)
    expect(signResponse(key, json, '{"jobs":[1]}')).not.toBe(base)
    expect(signResponse(other, json, '{"jobs":[]}')).not.toBe(base)
  })

  test("a streamed reply's signature differs from any body's", () => {
    expect(responseMac(key, { ...head, bodyHash: STREAMED }).toString("base64")).not.toBe(signResponse(key, head, ""))
    expect(new StreamSealer(key, head).header).toBe(
      responseMac(key, { ...head, bodyHash: STREAMED }).toString("base64"),
    )
  })
})

/** A sealed stream as the coordinator writes it: one sealed chunk per element, then the sealed end. */
function sealed(chunks: Uint8Array[], k: Uint8Array = key, nonce = NONCE, end = true): Uint8Array[] {
  const s = new StreamSealer(k, { ...head, nonce })
  return [...chunks.map((c) => s.seal(c)), ...(end ? [s.end()] : [])]
}

const verifier = (nonce = NONCE) =>
  new StreamVerifier(key, responseMac(key, { ...head, nonce, bodyHash: STREAMED }), "the coordinator")

/** Feeds `parts` to a verifier (optionally in `piece`-byte slices) and returns the verified frames. */
function run(parts: Uint8Array[], piece = 0, nonce = NONCE) {
  const v = verifier(nonce)
  const body = concatFrames(parts)
  const out: Uint8Array[] = []
  const step = piece || body.length || 1
  for (let i = 0; i < body.length; i += step) out.push(...v.push(body.subarray(i, i + step)))
  v.finish()
  return decodeFrames(concatFrames(out))
}

const chunks = [
  encodeJsonFrame(Kind.event, 0, { type: "job", job: { id: "J" } }),
  concatFrames([
    encodeFrame(Kind.stdout, 1, new TextEncoder().encode("hello ")),
    encodeFrame(Kind.stderr, 2, new TextEncoder().encode("warn")),
  ]),
  encodeFrame(Kind.stdout, 3, new Uint8Array(70_000).fill(65)),
  encodeJsonFrame(Kind.exit, 3, { status: "succeeded", code: 0, signal: null, error: null }),
]

describe("frame MAC chain", () => {
  test("an intact stream yields exactly its frames, without mac and end frames, whatever the chunking", () => {
    const want = decodeFrames(concatFrames(chunks))
    for (const piece of [0, 1, 7, 13, 45, 4096]) expect(run(sealed(chunks), piece)).toEqual(want)
  })

  test("a changed byte anywhere is refused", () => {
    const body = concatFrames(sealed(chunks))
    // A payload byte, a sequence number, a kind, a length (ends inside) and a MAC byte.
    for (const at of [20, 60 + 5, 0, 11]) {
      const bad = body.slice()
      bad[at]! ^= 1
      expect(() => run([bad])).toThrow()
    }
    const bad = body.slice()
    bad[bad.length - 1]! ^= 1
    expect(() => run([bad])).toThrow(TrustError)
  })

  test("a dropped, reordered or repeated chunk is refused", () => {
    const s = sealed(chunks)
    expect(() => run([s[0]!, s[2]!, s[3]!, s[4]!])).toThrow(TrustError)
    expect(() => run([s[1]!, s[0]!, s[2]!, s[3]!, s[4]!])).toThrow(TrustError)
    expect(() => run([s[0]!, s[1]!, s[1]!, s[2]!, s[3]!, s[4]!])).toThrow(TrustError)
  })

  test("frames reordered inside one sealed chunk are refused", () => {
    const s = new StreamSealer(key, head)
    const a = encodeFrame(Kind.stdout, 1, new Uint8Array([1]))
    const b = encodeFrame(Kind.stdout, 2, new Uint8Array([2]))
    const good = s.seal(concatFrames([a, b]))
    const swapped = concatFrames([b, a, good.subarray(a.length + b.length)])
    expect(() => run([swapped, s.end()])).toThrow(TrustError)
  })

  test("a chunk spliced from another stream (another request's nonce) is refused", () => {
    const mine = sealed(chunks)
    const theirs = sealed(chunks, key, "a-different-nonce-123")
    expect(() => run([mine[0]!, theirs[1]!, mine[2]!])).toThrow(TrustError)
    // A whole stream replayed for another request does not verify either.
    expect(() => run(theirs)).toThrow(TrustError)
    // Nor one sealed with another identity's key.
    expect(() => run(sealed(chunks, other))).toThrow(TrustError)
  })

  test("a stream cut off before its sealed end is a dropped connection, and only verified frames came out", () => {
    const v = verifier()
    const s = sealed(chunks, key, NONCE, false)
    const out = s.slice(0, 2).flatMap((c) => v.push(c))
    expect(decodeFrames(concatFrames(out)).map((f) => f.kind)).toEqual([Kind.event, Kind.stdout, Kind.stderr])
    // Half of the next chunk: nothing of it is released.
    expect(v.push(s[2]!.subarray(0, 100))).toEqual([])
    expect(() => v.finish()).toThrow(UnavailableError)
  })

  test("unsealed frames and bytes after the end are refused", () => {
    expect(() => run([...sealed(chunks), encodeFrame(Kind.stdout, 9, new Uint8Array([1]))])).toThrow(TrustError)
    // No mac at all: frames never come out, and the stream counts as cut off.
    const v = verifier()
    expect(v.push(concatFrames(chunks))).toEqual([])
    expect(() => v.finish()).toThrow(UnavailableError)
    // An end frame that is not the last frame of its chunk.
    const s = new StreamSealer(key, head)
    expect(() =>
      run([s.seal(concatFrames([encodeFrame(Kind.end, 0), encodeFrame(Kind.stdout, 1, new Uint8Array([1]))]))]),
    ).toThrow(TrustError)
  })
})

describe("sealFrame", () => {
  test("its pieces joined are exactly seal(encodeFrame(…)): the same bytes and the same chain", () => {
    const a = new StreamSealer(key, head)
    const b = new StreamSealer(key, head)
    const large = new Uint8Array(70_000).map((_, i) => i * 7)
    const small = large.subarray(0, 1000)
    for (const [kind, seq, data] of [
      [Kind.stdout, 3, large],
      [Kind.stderr, 2 ** 40, small],
      [Kind.stdout, 9, large],
    ] as const)
      expect(
        Buffer.from(concatFrames(a.sealFrame(kind, seq, data))).equals(
          Buffer.from(b.seal(encodeFrame(kind, seq, data))),
        ),
      ).toBe(true)
    // A large payload is one of the pieces as it is, not a copy.
    expect(a.sealFrame(Kind.stdout, 10, large)[1]).toBe(large)
    b.seal(encodeFrame(Kind.stdout, 10, large))
    expect(Buffer.from(a.end()).equals(Buffer.from(b.end()))).toBe(true)
  })
})

describe("frame MAC chain sealed by frame digests (STREAMED_DIGESTS)", () => {
  const digestSealer = (nonce = NONCE) => new StreamSealer(key, { ...head, nonce }, true)
  const digestVerifier = () =>
    new StreamVerifier(key, responseMac(key, { ...head, bodyHash: STREAMED_DIGESTS }), "the coordinator", true)
  const feed = (v: StreamVerifier, body: Uint8Array, step: number) => {
    const out: Uint8Array[] = []
    for (let i = 0; i < body.length; i += step) out.push(...v.push(body.subarray(i, i + step)))
    v.finish()
    return decodeFrames(concatFrames(out))
  }
  const stream = () => {
    const s = digestSealer()
    return concatFrames([...chunks.map((c) => s.seal(c)), s.end()])
  }

  test("an intact stream yields its frames whatever the chunking; its seed is not the plain one", () => {
    const want = decodeFrames(concatFrames(chunks))
    for (const piece of [1, 13, 4096, 1 << 20]) expect(feed(digestVerifier(), stream(), piece)).toEqual(want)
    expect(digestSealer().header).not.toBe(new StreamSealer(key, head).header)
  })

  test("a changed payload byte is refused, and neither form's verifier takes the other's stream", () => {
    const bad = stream()
    bad[bad.length - 200]! ^= 1
    expect(() => feed(digestVerifier(), bad, 4096)).toThrow(TrustError)
    expect(() => feed(verifier(), stream(), 4096)).toThrow(TrustError)
    const plain = new StreamSealer(key, head)
    expect(() =>
      feed(digestVerifier(), concatFrames([...chunks.map((c) => plain.seal(c)), plain.end()]), 4096),
    ).toThrow(TrustError)
  })

  test("sealFrame with the payload's digest seals what seal(encodeFrame(…)) does; a wrong digest never verifies", () => {
    const a = digestSealer()
    const b = digestSealer()
    const large = new Uint8Array(70_000).map((_, i) => i * 3)
    const pieces = a.sealFrame(Kind.stdout, 4, large, payloadDigest(large))
    expect(Buffer.from(concatFrames(pieces)).equals(Buffer.from(b.seal(encodeFrame(Kind.stdout, 4, large))))).toBe(true)
    // The receiver hashes the bytes it got: a digest that is not theirs cannot seal them.
    const c = digestSealer()
    const forged = concatFrames([...c.sealFrame(Kind.stdout, 4, large, payloadDigest(large.subarray(1))), c.end()])
    expect(() => feed(digestVerifier(), forged, 4096)).toThrow(TrustError)
  })
})
