import { describe, expect, test } from "bun:test"
import { createHash } from "node:crypto"
import { Hono } from "hono"
import {
  BODY_DIGEST_HEADER,
  FRAMES_DIGEST,
  FRAMES_DIGEST_MAX,
  HEADER,
  framesBodyHash,
  generateKey,
  signRequest,
} from "../../../shared/auth/hmac.ts"
import { concatFrames, encodeFrame } from "../../../shared/protocol/frames.ts"
import { DffmpegError } from "../../../shared/errors.ts"
import { createLogger } from "../../../shared/log.ts"
import type { Store } from "../../../store/index.ts"
import { hmacAuth, type AuthEnv } from "./hmac.ts"

const KEY = generateKey()
const NOW = 1_700_000_000_000
const CAP = 1024
const PATH = "/api/v1/echo"

/**
 * The middleware on one echo route, with an in-memory identity `alice`; counts credential lookups and
 * nonce writes. `nonces` is the database's nonce table: two harnesses given one are two coordinators on it.
 */
function harness(cap = CAP, nonces = new Set<string>(), shared = true) {
  const seen = { lookups: 0, refusals: [] as string[], nonceWrites: 0 }
  const store = {
    shared,
    async getCredential(name: string) {
      seen.lookups++
      return name === "alice" ? { name, role: "client", key: KEY, createdAt: 0 } : undefined
    },
    async rememberNonce(client: string, nonce: string) {
      seen.nonceWrites++
      const k = `${client}\n${nonce}`
      if (nonces.has(k)) return false
      nonces.add(k)
      return true
    },
  } as unknown as Store
  const app = new Hono<AuthEnv>()
  app.use(
    "/api/*",
    hmacAuth({
      store,
      log: createLogger({ level: "error" }),
      now: () => NOW,
      cap: () => ({ bytes: cap, key: "limits.test" }),
      stripBase: (p) => p,
      onRefuse: (r) => seen.refusals.push(r),
    }),
  )
  app.post(PATH, (c) =>
    c.json({
      who: c.get("principal").name,
      bytes: c.get("body").length,
      keyBytes: c.get("key").length,
      ...(c.get("digests") ? { digests: c.get("digests")!.map((d) => Buffer.from(d).toString("hex")) } : {}),
    }),
  )
  app.onError((err, c) => {
    if (err instanceof DffmpegError)
      return c.json({ error: { code: err.code, message: err.message } }, err.status as 400)
    return c.json({ error: { code: "E_INTERNAL", message: String(err) } }, 500)
  })
  return { app, seen }
}

/** A body stream that only produces data when read (highWaterMark 0), and says how much was read. */
function lazyBody(total: number, chunk = 256) {
  const state = { pulled: 0, canceled: false }
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(ctl) {
        if (state.pulled >= total) return ctl.close()
        const n = Math.min(chunk, total - state.pulled)
        state.pulled += n
        ctl.enqueue(new Uint8Array(n).fill(0x61))
      },
      cancel() {
        state.canceled = true
      },
    },
    { highWaterMark: 0 },
  )
  return { stream, state }
}

const bytesOf = (n: number) => new Uint8Array(n).fill(0x61)

function signed(body: Uint8Array, over: { client?: string; now?: number; bodyHash?: string } = {}) {
  return signRequest({
    key: Buffer.from(KEY, "base64"),
    client: over.client ?? "alice",
    method: "POST",
    path: PATH,
    body,
    bodyHash: over.bodyHash,
    now: over.now ?? NOW,
  })
}

async function send(
  app: Hono<AuthEnv>,
  headers: Record<string, string>,
  body: ReadableStream<Uint8Array> | Uint8Array | null,
) {
  const res = await app.request(`http://x${PATH}`, { method: "POST", headers, body, duplex: "half" } as RequestInit)
  return {
    status: res.status,
    body: (await res.json()) as {
      who?: string
      bytes?: number
      keyBytes?: number
      digests?: string[]
      error?: { code: string; message: string }
    },
  }
}

describe("hmacAuth reads the body only after the headers passed", () => {
  test("a signed streamed body within the cap is hashed as it arrives and verified; the key is exposed", async () => {
    const { app } = harness()
    const { stream, state } = lazyBody(CAP)
    const res = await send(app, signed(bytesOf(CAP)), stream)
    expect(res).toEqual({ status: 200, body: { who: "alice", bytes: CAP, keyBytes: 32 } })
    expect(state.pulled).toBe(CAP)
  })

  test("a body that differs from the signed one is refused as an invalid signature", async () => {
    const { app, seen } = harness()
    const res = await send(app, signed(bytesOf(10)), bytesOf(11))
    expect(res.status).toBe(401)
    expect(seen.refusals).toEqual(["signature"])
  })

  test.each([
    ["an unknown identity", { client: "mallory" }, "identity", 1],
    ["a timestamp outside the window", { now: NOW - 120_000 }, "clock", 0],
  ])("%s is 401 without reading a byte of the body", async (_what, over, kind, lookups) => {
    const { app, seen } = harness()
    const { stream, state } = lazyBody(8 * 1024 * 1024, 64 * 1024)
    const res = await send(app, signed(bytesOf(8), over), stream)
    expect(res.status).toBe(401)
    expect(res.body.error?.code).toBe("E_AUTH")
    expect(seen.refusals).toEqual([kind])
    expect(seen.lookups).toBe(lookups)
    expect(state.pulled).toBe(0)
  })

  test("unsigned requests are 401 before the store is asked", async () => {
    const { app, seen } = harness()
    const { stream, state } = lazyBody(4096)
    expect((await send(app, {}, stream)).status).toBe(401)
    expect({ lookups: seen.lookups, pulled: state.pulled }).toEqual({ lookups: 0, pulled: 0 })
  })

  test("a declared Content-Length over the cap is 413 JSON naming the limit, before reading", async () => {
    const { app, seen } = harness()
    const { stream, state } = lazyBody(CAP + 1)
    const res = await send(app, { ...signed(bytesOf(CAP + 1)), "content-length": String(CAP + 1) }, stream)
    expect(res.status).toBe(413)
    expect(res.body.error).toEqual({
      code: "E_TOO_LARGE",
      message: `request body of ${CAP + 1} bytes is over this route's limit of ${CAP} bytes (set by limits.test)`,
    })
    expect({ pulled: state.pulled, refusals: seen.refusals }).toEqual({ pulled: 0, refusals: [] })
  })

  test("a chunked body is counted while it streams: 413 once past the cap, and the stream is canceled", async () => {
    const { app } = harness()
    const { stream, state } = lazyBody(100 * CAP, 100)
    const res = await send(app, signed(bytesOf(8)), stream)
    expect(res.status).toBe(413)
    expect(res.body.error?.message).toBe(`request body is over this route's limit of ${CAP} bytes (set by limits.test)`)
    expect(state.pulled).toBeLessThanOrEqual(CAP + 100)
    expect(state.canceled).toBe(true)
  })

  test("a malformed Content-Length is 400", async () => {
    const { app } = harness()
    const res = await send(app, { ...signed(bytesOf(4)), "content-length": "4x" }, null)
    expect(res.status).toBe(400)
    expect(res.body.error?.message).toMatch(/Content-Length must be a number/)
  })

  test("the headers it checks are the signed ones: a missing nonce is 401", async () => {
    const { app } = harness()
    const h = signed(bytesOf(4))
    delete h[HEADER.nonce]
    expect((await send(app, h, bytesOf(4))).status).toBe(401)
  })
})

describe("hmacAuth, a body signed by its frames' digests", () => {
  const frames = concatFrames([encodeFrame(1, 1, bytesOf(100)), encodeFrame(2, 2, bytesOf(3))])
  const framed = framesBodyHash(frames)!
  const byFrames = { [BODY_DIGEST_HEADER]: FRAMES_DIGEST }

  test("verifies and exposes each frame's digest, in order", async () => {
    const { app } = harness()
    const res = await send(app, { ...signed(frames, { bodyHash: framed.hash }), ...byFrames }, frames)
    expect(res.status).toBe(200)
    expect(res.body.digests).toEqual(framed.digests.map((d) => Buffer.from(d).toString("hex")))
  })

  test("the header added to, or dropped from, a request is an invalid signature; so is a body that is not whole frames", async () => {
    const { app, seen } = harness()
    expect((await send(app, { ...signed(frames), ...byFrames }, frames)).status).toBe(401)
    expect((await send(app, signed(frames, { bodyHash: framed.hash }), frames)).status).toBe(401)
    const cut = frames.subarray(0, frames.length - 1)
    expect((await send(app, { ...signed(cut, { bodyHash: framed.hash }), ...byFrames }, cut)).status).toBe(401)
    expect(seen.refusals).toEqual(["signature", "signature", "signature"])
  })
})

describe("hmacAuth, a body of many frames signed by their digests", () => {
  /** The frames scheme's hash, computed here from its definition (docs/protocol.md, "Frame digests"). */
  const schemeHash = (frames: Uint8Array[]) => {
    const outer = createHash("sha256").update("DFFMPEG-FRAMES-SHA256\n")
    for (const f of frames) outer.update(f.subarray(0, 13)).update(createHash("sha256").update(f.subarray(13)).digest())
    return outer.digest("hex")
  }
  const empties = (n: number) => Array.from({ length: n }, (_, i) => encodeFrame(2, i + 1))
  const byFrames = { [BODY_DIGEST_HEADER]: FRAMES_DIGEST }

  test("more than FRAMES_DIGEST_MAX frames are refused (at most that many hashed); the same body signed by its SHA-256 passes", async () => {
    const { app, seen } = harness(1024 * 1024)
    const many = empties(FRAMES_DIGEST_MAX + 1)
    const body = concatFrames(many)
    const res = await send(app, { ...signed(body, { bodyHash: schemeHash(many) }), ...byFrames }, body)
    expect(res.status).toBe(401)
    expect(res.body.error?.message).toContain(`more than ${FRAMES_DIGEST_MAX}`)
    expect(seen.refusals).toEqual(["signature"])
    expect(framesBodyHash(body)).toBeUndefined()
    expect((await send(app, signed(body), body)).body).toMatchObject({ who: "alice", bytes: body.length })
  })

  test("FRAMES_DIGEST_MAX frames are taken", async () => {
    const { app } = harness(1024 * 1024)
    const most = empties(FRAMES_DIGEST_MAX)
    const body = concatFrames(most)
    const res = await send(app, { ...signed(body, { bodyHash: schemeHash(most) }), ...byFrames }, body)
    expect(res.status).toBe(200)
    expect(res.body.digests?.length).toBe(FRAMES_DIGEST_MAX)
  })
})

describe("replays across coordinators on one database", () => {
  test("a request replayed to a second coordinator is refused by the shared nonces; one replayed to the first costs no write", async () => {
    const table = new Set<string>()
    const a = harness(CAP, table)
    const b = harness(CAP, table)
    const headers = signed(bytesOf(8))
    const first = await send(a.app, headers, bytesOf(8))
    expect(first.status).toBe(200)
    expect(a.seen.nonceWrites).toBe(1)
    const other = await send(b.app, headers, bytesOf(8))
    expect(other.status).toBe(401)
    expect(other.body.error?.message).toContain("another coordinator")
    expect(b.seen.refusals).toEqual(["replay"])
    // Refused from memory, before the database.
    const again = await send(a.app, headers, bytesOf(8))
    expect(again.status).toBe(401)
    expect(a.seen.nonceWrites).toBe(1)
    expect(a.seen.refusals).toEqual(["replay"])
    // A fresh request goes through either.
    expect((await send(b.app, signed(bytesOf(8)), bytesOf(8))).status).toBe(200)
  })

  test("a database only one coordinator serves (SQLite) is not written: the memory is the whole check", async () => {
    const one = harness(CAP, new Set<string>(), false)
    const headers = signed(bytesOf(8))
    expect((await send(one.app, headers, bytesOf(8))).status).toBe(200)
    expect((await send(one.app, headers, bytesOf(8))).status).toBe(401)
    expect(one.seen.nonceWrites).toBe(0)
    expect(one.seen.refusals).toEqual(["replay"])
  })
})
