import { afterAll, describe, expect, test } from "bun:test"
import { AuthError, ConflictError, DffmpegError, UnavailableError } from "../errors.ts"
import { createApiClient, retryable } from "./client.ts"

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
    expect(retryable(new ConflictError("stale epoch"))).toBe(false)
    expect(retryable(new DffmpegError("stdout closed", "E_EPIPE", 499, 1))).toBe(false)
    expect(retryable(new TypeError("x is not a function"))).toBe(false)
    expect(retryable(Object.assign(new Error("odd"), { code: 42 }))).toBe(false)
    expect(retryable(undefined)).toBe(false)
  })
})

describe("createApiClient timeouts", () => {
  const key = Buffer.alloc(32, 3).toString("base64")
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname
      if (path === "/slow-headers") {
        await Bun.sleep(400)
        return Response.json({ ok: true })
      }
      // Headers at once, then a body that takes far longer than the request timeout.
      const stream = new ReadableStream<Uint8Array>({
        async start(c) {
          c.enqueue(new TextEncoder().encode(path === "/slow-json" ? '{"a":' : "first "))
          await Bun.sleep(400)
          c.enqueue(new TextEncoder().encode(path === "/slow-json" ? "1}" : "last"))
          c.close()
        },
      })
      return new Response(stream, { headers: { "content-type": "application/json" } })
    },
  })
  const api = createApiClient({ url: `http://127.0.0.1:${server.port}`, client: "c", key })
  afterAll(() => server.stop(true))

  test("a streamed body may outlast the timeout: it only bounds the wait for headers", async () => {
    const res = await api.request("GET", "/stream", { timeoutMs: 100 })
    expect(await res.text()).toBe("first last")
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
