import { afterAll, describe, expect, test } from "bun:test"
import { HEADER } from "../auth/hmac.ts"
import { RESPONSE_HEADER, StreamSealer, signResponse } from "../auth/response.ts"
import { AuthError, ConflictError, DffmpegError, TrustError, UnavailableError } from "../errors.ts"
import { Kind, encodeFrame, readFrames } from "../protocol/frames.ts"
import { createApiClient, retryable, tlsReason } from "./client.ts"

const FRAMES = "application/vnd.dffmpeg.frames"

describe("retryable", () => {
  test("retries an unreachable coordinator and its 5xx answers", () => {
    expect(retryable(new UnavailableError("down"))).toBe(true)
    expect(retryable(new DffmpegError("bad gateway", "E_X", 502, 1))).toBe(true)
  })

  test("retries a connection dropped while a streamed body was read (a plain system error)", () => {
    const reset = Object.assign(new Error("The socket connection was closed unexpectedly"), { code: "ECONNRESET" })
    expect(retryable(reset)).toBe(true)
  })

  test("does not retry answers that waiting will not change, nor programming errors", () => {
    expect(retryable(new AuthError("refused"))).toBe(false)
    expect(retryable(new TrustError("forged reply"))).toBe(false)
    expect(retryable(new ConflictError("stale epoch"))).toBe(false)
    expect(retryable(new DffmpegError("stdout closed", "E_EPIPE", 499, 1))).toBe(false)
    expect(retryable(new TypeError("x is not a function"))).toBe(false)
    expect(retryable(Object.assign(new Error("odd"), { code: 42 }))).toBe(false)
    expect(retryable(undefined)).toBe(false)
  })
})

const key = Buffer.alloc(32, 3).toString("base64")
const raw = Buffer.from(key, "base64")
const enc = new TextEncoder()

/** The signature header of a reply to `req` (as the coordinator makes it). */
function signed(req: Request, status: number, contentType: string, body: string): Record<string, string> {
  return {
    "content-type": contentType,
    [RESPONSE_HEADER]: signResponse(raw, { nonce: req.headers.get(HEADER.nonce)!, status, contentType }, body),
  }
}

describe("createApiClient timeouts", () => {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname
      if (path === "/slow-headers") {
        await Bun.sleep(400)
        return Response.json({ ok: true }, { headers: signed(req, 200, "application/json", '{"ok":true}') })
      }
      if (path === "/slow-json") {
        const stream = new ReadableStream<Uint8Array>({
          async start(c) {
            c.enqueue(enc.encode('{"a":'))
            await Bun.sleep(400)
            c.enqueue(enc.encode("1}"))
            c.close()
          },
        })
        return new Response(stream, { headers: signed(req, 200, "application/json", '{"a":1}') })
      }
      // A signed frame stream: headers at once, then frames that take far longer than the request timeout.
      const sealer = new StreamSealer(raw, { nonce: req.headers.get(HEADER.nonce)!, status: 200, contentType: FRAMES })
      const stream = new ReadableStream<Uint8Array>({
        async start(c) {
          c.enqueue(sealer.seal(encodeFrame(Kind.stdout, 1, enc.encode("first "))))
          await Bun.sleep(400)
          c.enqueue(sealer.seal(encodeFrame(Kind.stdout, 2, enc.encode("last"))))
          c.enqueue(sealer.end())
          c.close()
        },
      })
      return new Response(stream, { headers: { "content-type": FRAMES, [RESPONSE_HEADER]: sealer.header } })
    },
  })
  const api = createApiClient({ url: `http://127.0.0.1:${server.port}`, client: "c", key })
  afterAll(() => server.stop(true))

  test("a streamed body may outlast the timeout: it only bounds the wait for headers", async () => {
    const res = await api.request("GET", "/stream", { timeoutMs: 100 })
    const text: string[] = []
    for await (const f of readFrames(res.body!)) text.push(new TextDecoder().decode(f.data))
    expect(text.join("")).toBe("first last")
  })

  test("headers that do not come in time are an unavailable coordinator", async () => {
    const err = await api.request("GET", "/slow-headers", { timeoutMs: 100 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnavailableError)
    expect((err as Error).message).toContain("timed out")
  })

  test("json() bounds the whole answer, body included", async () => {
    const err = await api.json("GET", "/slow-json", { timeoutMs: 100 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnavailableError)
    expect(await api.json("GET", "/slow-json", { timeoutMs: 2000 })).toEqual({ a: 1 })
  })
})

describe("createApiClient verifies every reply", () => {
  /** What the test server answers to the next request, given that request. */
  let reply: (req: Request) => Response = () => new Response()
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => reply(req) })
  const api = createApiClient({ url: `http://127.0.0.1:${server.port}`, client: "c", key })
  afterAll(() => server.stop(true))
  const ASSIGNMENT = '{"jobs":[{"id":"J","args":["-i","a.mkv"]}]}'

  test("a reply signed for this request is returned", async () => {
    reply = (req) => new Response(ASSIGNMENT, { headers: signed(req, 200, "application/json", ASSIGNMENT) })
    expect(await api.json("GET", "/poll")).toEqual(JSON.parse(ASSIGNMENT))
  })

  test("a coordinator whose database is unreachable: its 503 (signed or not) is an error worth retrying", async () => {
    const DOWN =
      '{"error":{"code":"E_UNAVAILABLE","message":"the coordinator\'s database is unreachable; try again shortly"}}'
    for (const sign of [true, false]) {
      reply = (req) =>
        new Response(DOWN, {
          status: 503,
          headers: {
            "retry-after": "2",
            ...(sign ? signed(req, 503, "application/json", DOWN) : { "content-type": "application/json" }),
          },
        })
      const err = await api.json("GET", "/poll").catch((e: unknown) => e)
      expect(err).toBeInstanceOf(DffmpegError)
      expect((err as DffmpegError).status).toBe(503)
      expect((err as Error).message).toContain("database is unreachable")
      expect(retryable(err)).toBe(true)
    }
  })

  test("an unsigned, tampered, re-labelled or replayed reply is refused with one clear reason", async () => {
    let captured: Record<string, string> = {}
    const cases: [string, (req: Request) => Response][] = [
      ["unsigned", () => new Response(ASSIGNMENT, { headers: { "content-type": "application/json" } })],
      [
        "tampered body",
        (req) =>
          new Response(ASSIGNMENT.replace("a.mkv", "b.mkv"), {
            headers: signed(req, 200, "application/json", ASSIGNMENT),
          }),
      ],
      [
        "changed status",
        (req) => new Response(ASSIGNMENT, { status: 201, headers: signed(req, 200, "application/json", ASSIGNMENT) }),
      ],
      [
        "changed content type",
        (req) =>
          new Response(ASSIGNMENT, {
            headers: { ...signed(req, 200, "application/json", ASSIGNMENT), "content-type": "text/plain" },
          }),
      ],
      ["another request's reply", () => new Response(ASSIGNMENT, { headers: captured })],
      [
        "an unsigned error that should have been signed",
        () => Response.json({ error: { code: "E_CONFLICT", message: "stale" } }, { status: 409 }),
      ],
      [
        "a next-page cursor added to a signed page",
        (req) =>
          new Response("[]", {
            headers: { ...signed(req, 200, "application/json", "[]"), "x-next-before": "01JSKIP" },
          }),
      ],
      [
        "a rewritten next-page cursor",
        (req) => {
          const headers = new Headers({ "x-next-before": "01JB" })
          const sig = signResponse(
            raw,
            { nonce: req.headers.get(HEADER.nonce)!, status: 200, contentType: "application/json", headers },
            "[]",
          )
          return new Response("[]", {
            headers: { "content-type": "application/json", [RESPONSE_HEADER]: sig, "x-next-before": "01JA" },
          })
        },
      ],
      [
        "a log tail's truncation notice dropped",
        (req) => {
          const headers = new Headers({ "x-dffmpeg-tail-truncated": "1000 bytes" })
          return new Response("[]", {
            headers: {
              "content-type": "application/json",
              [RESPONSE_HEADER]: signResponse(
                raw,
                { nonce: req.headers.get(HEADER.nonce)!, status: 200, contentType: "application/json", headers },
                "[]",
              ),
            },
          })
        },
      ],
    ]
    reply = (req) =>
      new Response(ASSIGNMENT, { headers: (captured = signed(req, 200, "application/json", ASSIGNMENT)) })
    await api.json("GET", "/poll")
    for (const [name, r] of cases) {
      reply = r
      const err = await api.json("GET", "/poll").catch((e: unknown) => e)
      expect(err, name).toBeInstanceOf(TrustError)
      expect(retryable(err), name).toBe(false)
      expect((err as Error).message, name).toContain(`the coordinator at http://127.0.0.1:${server.port}`)
    }
  })

  test("signed errors keep their type; unsigned 401, 413 and 5xx are accepted as the refusals they are", async () => {
    const body = (code: string) => JSON.stringify({ error: { code, message: "m" } })
    reply = (req) =>
      new Response(body("E_CONFLICT"), {
        status: 409,
        headers: signed(req, 409, "application/json", body("E_CONFLICT")),
      })
    expect(await api.json("GET", "/x").catch((e: unknown) => e)).toBeInstanceOf(ConflictError)
    reply = () => new Response(body("E_AUTH"), { status: 401, headers: { "content-type": "application/json" } })
    expect(await api.json("GET", "/x").catch((e: unknown) => e)).toBeInstanceOf(AuthError)
    reply = () => new Response("<html>bad gateway</html>", { status: 502, headers: { "content-type": "text/html" } })
    const down = await api.json("GET", "/x").catch((e: unknown) => e)
    expect(down).toBeInstanceOf(UnavailableError)
    expect(retryable(down)).toBe(true)
  })

  test("a signed page keeps its signed cursor", async () => {
    reply = (req) => {
      const headers = new Headers({ "content-type": "application/json", "x-next-before": "01JB" })
      headers.set(
        RESPONSE_HEADER,
        signResponse(
          raw,
          { nonce: req.headers.get(HEADER.nonce)!, status: 200, contentType: "application/json", headers },
          "[]",
        ),
      )
      return new Response("[]", { headers })
    }
    const res = await api.request("GET", "/api/v1/jobs")
    expect(res.headers.get("x-next-before")).toBe("01JB")
  })

  test("an unsigned refusal's message reaches no terminal raw: controls and bidi escaped, length capped, details dropped", async () => {
    const evil = "\x1b[31mred\x07\r\nfake line \u202eevil\u2028" + "x".repeat(5000)
    for (const status of [401, 413, 503]) {
      reply = () =>
        Response.json({ error: { code: "E_AUTH", message: evil, details: ["\x1b]0;title\x07"] } }, { status })
      const err = (await api.json("GET", "/x").catch((e: unknown) => e)) as DffmpegError
      expect(err, String(status)).toBeInstanceOf(DffmpegError)
      expect(err.message.startsWith("\\x1b[31mred\\x07\\r\\nfake line \\u202eevil\\u2028xxx")).toBe(true)
      expect(err.message).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/)
      expect(err.message.length).toBeLessThanOrEqual(300)
      expect(err.details).toBeUndefined()
    }
    reply = () => new Response("\x1b[2J".repeat(100_000), { status: 502, headers: { "content-type": "text/html" } })
    expect(((await api.json("GET", "/x").catch((e: unknown) => e)) as Error).message).toBe("HTTP 502")
  })
})

describe("tlsReason", () => {
  test("names the certificate problem and what to check; other errors are not TLS", () => {
    expect(tlsReason("UNABLE_TO_VERIFY_LEAF_SIGNATURE")).toContain("coordinator.ca_file")
    expect(tlsReason("ERR_TLS_CERT_ALTNAME_INVALID")).toContain("subjectAltName")
    expect(tlsReason("CERT_HAS_EXPIRED")).toContain("expired")
    expect(tlsReason("ERR_SSL_WRONG_VERSION_NUMBER")).toContain("handshake")
    expect(tlsReason("ECONNREFUSED")).toBeUndefined()
    expect(tlsReason(undefined)).toBeUndefined()
  })
})
