import { describe, expect, test } from "bun:test"
import { createHash, createHmac } from "node:crypto"
import {
  HEADER,
  NonceCache,
  SCHEME,
  canonical,
  canonicalQuery,
  FRAMES_DIGEST_MAX,
  framesBodyHash,
  decodeKey,
  generateKey,
  sha256Hex,
  sign,
  signRequest,
  signaturesEqual,
  type SignInput,
} from "./hmac.ts"

const KEY_B64 = Buffer.from(Array.from({ length: 32 }, (_, i) => i)).toString("base64")
const KEY = decodeKey(KEY_B64)

const base: SignInput = {
  method: "POST",
  path: "/api/v1/jobs",
  query: "",
  client: "alice",
  timestamp: "1700000000",
  nonce: "abcdefghijklmnop",
  bodyHash: sha256Hex('{"a":1}'),
}

describe("canonicalQuery", () => {
  test.each([
    ["an empty string gives an empty string", "", ""],
    ["a lone '?' gives an empty string", "?", ""],
    ["a leading '?' is ignored", "?b=2&a=1", "a=1&b=2"],
    ["parameters are sorted by key", "wait=5&after=10&limit=1", "after=10&limit=1&wait=5"],
    ["repeated keys are kept and sorted by value", "a=2&a=10&a=1", "a=1&a=10&a=2"],
    ["a key without a value gets an empty value", "flag&a=1", "a=1&flag="],
    ["'+' and '%20' both mean a space, encoded as %20", "q=a+b&r=a%20b", "q=a%20b&r=a%20b"],
    ["reserved characters are percent-encoded", "p=a/b?c=d&e", "e=&p=a%2Fb%3Fc%3Dd"],
    ["encoded '&' and '=' inside a value stay encoded", "v=x%26y%3Dz", "v=x%26y%3Dz"],
    ["RFC 3986 sub-delims !'()* are percent-encoded in upper case", "s=!'()*", "s=%21%27%28%29%2A"],
    ["unreserved characters -_.~ are left alone", "s=A-z_0.9~", "s=A-z_0.9~"],
    ["lower-case percent escapes are normalised to upper case", "s=%2f%c3%a9", "s=%2F%C3%A9"],
    ["non-ASCII is UTF-8 percent-encoded", "name=é", "name=%C3%A9"],
    ["keys are encoded too", "a b=1", "a%20b=1"],
  ])("%s", (_name, input, expected) => {
    expect(canonicalQuery(input)).toBe(expected)
  })

  test("a URLSearchParams gives the same result as the equivalent string", () => {
    const params = new URLSearchParams()
    params.append("wait", "25")
    params.append("after", "a b/c")
    params.append("after", "!")
    expect(canonicalQuery(params)).toBe(canonicalQuery(params.toString()))
    expect(canonicalQuery(params)).toBe("after=%21&after=a%20b%2Fc&wait=25")
  })

  test("parameter order and encoding style never change the result", () => {
    const variants = ["x=1&y=a%20b&z=%21", "z=!&x=1&y=a+b", "y=a%20b&z=%21&x=1"]
    const results = new Set(variants.map((v) => canonicalQuery(v)))
    expect(results.size).toBe(1)
  })
})

describe("canonical", () => {
  test("joins scheme, upper-cased method, path, canonical query, client, timestamp, nonce and body hash, one per line", () => {
    const text = canonical({ ...base, method: "post", query: "b=2&a=1" })
    expect(text.split("\n")).toEqual([
      SCHEME,
      "POST",
      "/api/v1/jobs",
      "a=1&b=2",
      "alice",
      "1700000000",
      "abcdefghijklmnop",
      base.bodyHash,
    ])
  })

  test("an empty query still takes its own (empty) line", () => {
    expect(canonical(base).split("\n")).toHaveLength(8)
    expect(canonical(base).split("\n")[3]).toBe("")
  })
})

describe("sha256Hex", () => {
  test.each([
    ["undefined", undefined],
    ["an empty string", ""],
    ["an empty byte array", new Uint8Array(0)],
  ])("hashes %s as the empty input", (_name, body) => {
    expect(sha256Hex(body)).toBe(createHash("sha256").update("").digest("hex"))
  })

  test("hashes strings as UTF-8 and bytes exactly", () => {
    const bytes = new Uint8Array([0, 255, 1, 254, 0x0a, 0x0d])
    expect(sha256Hex("héllo")).toBe(createHash("sha256").update("héllo", "utf8").digest("hex"))
    expect(sha256Hex(bytes)).toBe(createHash("sha256").update(bytes).digest("hex"))
  })
})

describe("sign", () => {
  test("matches an independently computed HMAC-SHA256 test vector", () => {
    const body = '{"a":1}'
    const bodyHash = createHash("sha256").update(body).digest("hex")
    const text = [SCHEME, "POST", "/api/v1/jobs", "", "alice", "1700000000", "abcdefghijklmnop", bodyHash].join("\n")
    const expected = createHmac("sha256", Buffer.from(KEY_B64, "base64")).update(text).digest("base64")

    expect(KEY_B64).toBe("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    expect(bodyHash).toBe("015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862")
    expect(sign(KEY, base)).toBe(expected)
    // Pinned as well (computed with Python's hmac module), so a change on both sides is still caught.
    expect(expected).toBe("UZcegQE61vqhEaDWU5FGaXw2dA1hDY+Vjeop/okaLug=")
  })

  test.each<[string, Partial<SignInput>]>([
    ["method", { method: "PUT" }],
    ["path", { path: "/api/v1/jobs/x" }],
    ["query", { query: "limit=1" }],
    ["client", { client: "bob" }],
    ["timestamp", { timestamp: "1700000001" }],
    ["nonce", { nonce: "abcdefghijklmnoq" }],
    ["body", { bodyHash: sha256Hex('{"a":2}') }],
  ])("changes when only the %s changes", (_field, change) => {
    expect(sign(KEY, { ...base, ...change })).not.toBe(sign(KEY, base))
  })

  test("changes with the key", () => {
    const other = Buffer.from(KEY)
    other[31] ^= 1
    expect(sign(other, base)).not.toBe(sign(KEY, base))
  })

  test("does not depend on the method's letter case or the query's order", () => {
    expect(sign(KEY, { ...base, method: "post", query: "b=2&a=1" })).toBe(sign(KEY, { ...base, query: "a=1&b=2" }))
  })
})

describe("signRequest", () => {
  test("produces headers whose signature verifies against the same request", () => {
    const now = 1_700_000_000_123
    const body = new Uint8Array([1, 2, 3, 0, 255])
    const headers = signRequest({
      key: KEY,
      client: "alice",
      method: "put",
      path: "/api/v1/jobs/j1/input",
      query: "seq=3&end=1",
      body,
      now,
    })

    expect(headers[HEADER.client]).toBe("alice")
    expect(headers[HEADER.timestamp]).toBe("1700000000")
    expect(headers[HEADER.nonce].length).toBeGreaterThanOrEqual(16)
    const expected = sign(KEY, {
      method: "PUT",
      path: "/api/v1/jobs/j1/input",
      // The server sees the parsed query, in any order.
      query: new URL("http://x/?end=1&seq=3").searchParams,
      client: headers[HEADER.client],
      timestamp: headers[HEADER.timestamp],
      nonce: headers[HEADER.nonce],
      bodyHash: sha256Hex(body),
    })
    expect(signaturesEqual(expected, headers[HEADER.signature])).toBe(true)
  })

  test("does not verify when the body was changed after signing", () => {
    const headers = signRequest({ key: KEY, client: "alice", method: "POST", path: "/api/v1/jobs", body: '{"a":1}' })
    const forged = sign(KEY, {
      method: "POST",
      path: "/api/v1/jobs",
      query: "",
      client: "alice",
      timestamp: headers[HEADER.timestamp],
      nonce: headers[HEADER.nonce],
      bodyHash: sha256Hex('{"a":2}'),
    })
    expect(signaturesEqual(forged, headers[HEADER.signature])).toBe(false)
  })

  test("uses a fresh nonce for every request", () => {
    const nonces = new Set(
      Array.from(
        { length: 50 },
        () => signRequest({ key: KEY, client: "a", method: "GET", path: "/", now: 0 })[HEADER.nonce],
      ),
    )
    expect(nonces.size).toBe(50)
  })
})

describe("decodeKey", () => {
  test.each([
    ["an empty string", ""],
    ["text that is not base64", "not a key at all!!"],
    ["base64url characters", Buffer.alloc(32, 0xfb).toString("base64url")],
    ["base64 without padding", Buffer.alloc(32, 7).toString("base64").replace(/=+$/, "")],
    ["padding in the middle", "AAAA=AAA" + Buffer.alloc(32).toString("base64")],
    ["too much padding", Buffer.alloc(32).toString("base64") + "=="],
  ])("rejects %s", (_name, key) => {
    expect(() => decodeKey(key)).toThrow("not standard base64")
  })

  test.each([0, 1, 16, 31])("rejects a key of %d bytes as too short", (n) => {
    const key = Buffer.alloc(n, 1).toString("base64")
    expect(() => decodeKey(key)).toThrow(n === 0 ? "not standard base64" : "shorter than 32 bytes")
  })

  test.each([32, 48, 64])("accepts a key of %d bytes", (n) => {
    const raw = Buffer.from(Array.from({ length: n }, (_, i) => (i * 7) & 0xff))
    expect(decodeKey(raw.toString("base64")).equals(raw)).toBe(true)
  })

  test("ignores surrounding whitespace such as a trailing newline in a key file", () => {
    expect(decodeKey(`  ${KEY_B64}\n`).equals(KEY)).toBe(true)
  })
})

describe("generateKey", () => {
  test("gives 44 characters of standard base64 that decode to 32 bytes", () => {
    const key = generateKey()
    expect(key).toHaveLength(44)
    expect(key).toMatch(/^[A-Za-z0-9+/]{43}=$/)
    expect(decodeKey(key)).toHaveLength(32)
  })

  test("gives a different key every time", () => {
    const keys = new Set(Array.from({ length: 100 }, generateKey))
    expect(keys.size).toBe(100)
  })
})

describe("signaturesEqual", () => {
  const sig = sign(KEY, base)
  test.each([
    ["identical strings", sig, sig, true],
    ["two empty strings", "", "", true],
    ["a different last character", sig, sig.slice(0, -2) + (sig.at(-2) === "A" ? "B" : "A") + sig.at(-1), false],
    ["a different first character", sig, (sig[0] === "A" ? "B" : "A") + sig.slice(1), false],
    ["a prefix", sig, sig.slice(0, -1), false],
    ["an empty and a non-empty string", "", sig, false],
    ["a case difference", "abcd", "abcD", false],
  ])("compares %s", (_name, a, b, equal) => {
    expect(signaturesEqual(a, b)).toBe(equal)
    expect(signaturesEqual(b, a)).toBe(equal)
  })
})

describe("NonceCache", () => {
  const W = 1000

  test("accepts a nonce once and refuses it again within the window", () => {
    const cache = new NonceCache(W)
    expect(cache.remember("alice", "n1", 10_000)).toBe("new")
    expect(cache.remember("alice", "n1", 10_000)).toBe("replay")
    expect(cache.remember("alice", "n1", 10_000 + W)).toBe("replay")
  })

  test("keeps a nonce for at least two windows and forgets it within four", () => {
    for (const offset of [0, 1, W, 2 * W - 1]) {
      const cache = new NonceCache(W)
      // The generation turns at 50_000; the nonce comes `offset` ms into it.
      expect(cache.remember("x", "first", 50_000)).toBe("new")
      const t0 = 50_000 + offset
      expect(cache.remember("alice", "n1", t0)).toBe("new")
      expect(cache.remember("alice", "n1", t0 + 2 * W - 1)).toBe("replay")
      expect(cache.remember("alice", "n1", 50_000 + 4 * W)).toBe("new")
      // Accepting it again starts a new period.
      expect(cache.remember("alice", "n1", 50_000 + 4 * W + 1)).toBe("replay")
    }
  })

  test("after a long idle spell both generations are empty", () => {
    const cache = new NonceCache(W)
    expect(cache.remember("alice", "n1", 0)).toBe("new")
    expect(cache.remember("alice", "n1", 10 * W)).toBe("new")
  })

  test("treats the same nonce from different clients independently", () => {
    const cache = new NonceCache(W)
    expect(cache.remember("alice", "n1", 0)).toBe("new")
    expect(cache.remember("bob", "n1", 0)).toBe("new")
    expect(cache.remember("alice", "n1", 1)).toBe("replay")
    expect(cache.remember("bob", "n1", 1)).toBe("replay")
  })

  test("does not confuse client/nonce pairs that concatenate to the same text", () => {
    const cache = new NonceCache(W)
    expect(cache.remember("ab", "c", 0)).toBe("new")
    expect(cache.remember("a", "bc", 0)).toBe("new")
  })

  test("still refuses a replay after many other nonces (the table grows and keeps them all)", () => {
    const cache = new NonceCache(W)
    expect(cache.remember("alice", "keep", 0)).toBe("new")
    for (let i = 0; i < 50_000; i++) expect(cache.remember("bob", `n${i}`, 1)).toBe("new")
    expect(cache.remember("alice", "keep", 2 * W - 1)).toBe("replay")
    for (let i = 0; i < 50_000; i += 997) expect(cache.remember("bob", `n${i}`, 2)).toBe("replay")
  })

  test("is bounded: past its size a new nonce is refused as full, a seen one still as a replay", () => {
    const cache = new NonceCache(W, 3)
    for (const n of ["a", "b", "c"]) expect(cache.remember("alice", n, 0)).toBe("new")
    expect(cache.remember("alice", "d", 1)).toBe("full")
    expect(cache.remember("alice", "b", 1)).toBe("replay")
    // The next generation takes new nonces again and still refuses the old ones.
    expect(cache.remember("alice", "d", 2 * W)).toBe("new")
    expect(cache.remember("alice", "a", 2 * W)).toBe("replay")
  })

  test("uses a 30 s signing window by default: a nonce is kept at least 60 s", () => {
    const cache = new NonceCache()
    expect(cache.remember("alice", "n1", 0)).toBe("new")
    expect(cache.remember("alice", "n1", 59_999)).toBe("replay")
    expect(cache.remember("alice", "n1", 120_000)).toBe("new")
  })
})

describe("framesBodyHash", () => {
  const frame = (kind: number, seq: number, payload: number[]) => {
    const f = new Uint8Array(13 + payload.length)
    const v = new DataView(f.buffer)
    v.setUint8(0, kind)
    v.setBigUint64(1, BigInt(seq))
    v.setUint32(9, payload.length)
    f.set(payload, 13)
    return f
  }
  const a = frame(1, 1, [1, 2, 3])
  const b = frame(2, 2, [])
  const body = Buffer.concat([a, b])

  test("hashes the scheme, then each frame's header and its payload's SHA-256; returns the payloads' digests", () => {
    const d1 = createHash("sha256")
      .update(Buffer.from([1, 2, 3]))
      .digest()
    const d2 = createHash("sha256").update(Buffer.alloc(0)).digest()
    const want = createHash("sha256")
      .update("DFFMPEG-FRAMES-SHA256\n")
      .update(a.subarray(0, 13))
      .update(d1)
      .update(b.subarray(0, 13))
      .update(d2)
      .digest("hex")
    const got = framesBodyHash(body)!
    expect(got.hash).toBe(want)
    expect(got.digests.map((d) => Buffer.from(d).toString("hex"))).toEqual([d1.toString("hex"), d2.toString("hex")])
    expect(got.hash).not.toBe(sha256Hex(body))
  })

  test("a body that is not whole frames has none", () => {
    expect(framesBodyHash(body.subarray(0, body.length - 1))).toBeUndefined()
    expect(framesBodyHash(body.subarray(0, 5))).toBeUndefined()
    expect(framesBodyHash(new Uint8Array(0))?.digests).toEqual([])
  })

  test("a body of more than FRAMES_DIGEST_MAX frames has none (a hash per frame is not paid for without a bound)", () => {
    const most = Buffer.concat(Array.from({ length: FRAMES_DIGEST_MAX }, () => b))
    expect(framesBodyHash(most)?.digests.length).toBe(FRAMES_DIGEST_MAX)
    expect(framesBodyHash(Buffer.concat([most, b]))).toBeUndefined()
  })
})
