import { afterAll, describe, expect, test } from "bun:test"
import { HEADER } from "../auth/hmac.ts"
import { RESPONSE_HEADER, signResponse } from "../auth/response.ts"
import { NotFoundError, UnavailableError } from "../errors.ts"
import { createApiClient } from "./client.ts"
import { createFailover, failoverStatus, notSent, onePass } from "./failover.ts"

describe("failover policy", () => {
  test("a pass starts at the current coordinator and wraps around in configured order", () => {
    const f = createFailover(3)
    expect(f.order()).toEqual([0, 1, 2])
    f.answered(2)
    expect(f.current).toBe(2)
    expect(f.order()).toEqual([2, 0, 1])
    expect(() => createFailover(0)).toThrow(RangeError)
  })

  test("the first coordinator that answers becomes current (sticky: the next pass starts there)", async () => {
    const f = createFailover(3)
    const tried: number[] = []
    const down = new Set([0])
    const attempt = async (i: number) => {
      tried.push(i)
      return down.has(i)
        ? { verdict: "next" as const, error: new UnavailableError(`${i} down`) }
        : { verdict: "done" as const, value: i }
    }
    expect(await onePass(f, attempt)).toBe(1)
    expect(await onePass(f, attempt)).toBe(1)
    expect(await onePass(f, attempt)).toBe(1)
    // No round robin: after the failover every request went to 1 only.
    expect(tried).toEqual([0, 1, 1, 1])
    down.add(1)
    expect(await onePass(f, attempt)).toBe(2)
    expect(tried.slice(4)).toEqual([1, 2])
  })

  test("every coordinator down: the last failure is thrown after one attempt each", async () => {
    const f = createFailover(2)
    const tried: number[] = []
    const err = onePass(f, async (i) => {
      tried.push(i)
      return { verdict: "next", error: new UnavailableError(`c${i} down`) }
    })
    await expect(err).rejects.toThrow("c1 down")
    expect(tried).toEqual([0, 1])
    expect(f.current).toBe(0)
  })

  test("a stop is final: an answer stays on its coordinator, an error is thrown without trying the next", async () => {
    const f = createFailover(3)
    const tried: number[] = []
    const refused = await onePass(f, async (i) => {
      tried.push(i)
      return i === 0
        ? { verdict: "next", error: new Error("x") }
        : { verdict: "stop", error: undefined, value: `answer of ${i}` }
    })
    expect(refused).toBe("answer of 1")
    expect(f.current).toBe(1)
    await expect(onePass(f, async () => ({ verdict: "stop", error: new Error("lost after sending") }))).rejects.toThrow(
      "lost after sending",
    )
    expect(tried).toEqual([0, 1])
  })

  test("which failures and statuses move on", () => {
    for (const c of ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"])
      expect(notSent(c)).toBe(true)
    for (const c of ["ECONNRESET", "EPIPE", undefined]) expect(notSent(c)).toBe(false)
    expect([502, 503, 504].every(failoverStatus)).toBe(true)
    expect([400, 401, 404, 409, 413, 429, 500].some(failoverStatus)).toBe(false)
  })
})

const key = Buffer.alloc(32, 5).toString("base64")
const raw = Buffer.from(key, "base64")

/** A coordinator stand-in whose answer per path is chosen by the test; it records each request's nonce. */
function coordinator(name: string, answer: (path: string) => number) {
  const seen: { path: string; nonce: string; method: string }[] = []
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname
      seen.push({ path, nonce: req.headers.get(HEADER.nonce)!, method: req.method })
      await req.arrayBuffer()
      const a = answer(path)
      const body = JSON.stringify(a < 400 ? { from: name } : { error: { code: "E_X", message: `${name} says ${a}` } })
      const headers = {
        "content-type": "application/json",
        [RESPONSE_HEADER]: signResponse(
          raw,
          { nonce: req.headers.get(HEADER.nonce)!, status: a, contentType: "application/json" },
          body,
        ),
      }
      return new Response(body, { status: a, headers })
    },
  })
  return { server, seen, url: `http://127.0.0.1:${server.port}` }
}

describe("createApiClient with several coordinators", () => {
  const servers: ReturnType<typeof coordinator>[] = []
  afterAll(() => {
    for (const s of servers) s.server.stop(true)
  })
  /**
   * A coordinator that reads each request (it may have acted on it) and then drops the connection
   * before any answer; it records the request lines it got.
   */
  const dropping = () => {
    const seen: string[] = []
    const l = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(sock, data) {
          seen.push(data.toString().split(" ", 2).join(" "))
          sock.terminate()
        },
      },
    })
    dropped.push(l)
    return { seen, url: `http://127.0.0.1:${l.port}` }
  }
  const dropped: { stop(force?: boolean): void }[] = []
  afterAll(() => {
    for (const d of dropped) d.stop(true)
  })
  const start = (name: string, answer: (path: string) => number) => {
    const c = coordinator(name, answer)
    servers.push(c)
    return c
  }
  /** A port nothing listens on (a coordinator that is down: connection refused). */
  const refused = () => {
    const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() })
    const url = `http://127.0.0.1:${s.port}`
    s.stop(true)
    return url
  }

  test("a refused connection and a 503 move on; the coordinator that answers sticks, re-signed per attempt", async () => {
    const a = refused()
    const b = start("b", () => 503)
    const c = start("c", () => 200)
    const api = createApiClient({ coordinators: [{ url: a }, { url: b.url }, { url: c.url }], client: "u", key })
    // Even a POST that is not idempotent: a refused connection and a 503 never acted on it.
    expect(await api.json("POST", "/api/v1/x")).toEqual({ from: "c" })
    expect(api.url).toBe(c.url)
    expect(await api.json("GET", "/api/v1/y")).toEqual({ from: "c" })
    expect(b.seen.map((r) => r.path)).toEqual(["/api/v1/x"])
    expect(c.seen.map((r) => r.path)).toEqual(["/api/v1/x", "/api/v1/y"])
    // Each attempt carries its own nonce (a replayed signature would be refused).
    expect(b.seen[0]!.nonce).not.toBe(c.seen[0]!.nonce)
  })

  test("a 4xx is the answer: no failover", async () => {
    const a = start("a", () => 404)
    const b = start("b", () => 200)
    const api = createApiClient({ coordinators: [{ url: a.url }, { url: b.url }], client: "u", key })
    await expect(api.json("GET", "/api/v1/jobs/j")).rejects.toBeInstanceOf(NotFoundError)
    expect(b.seen).toEqual([])
    expect(api.url).toBe(a.url)
  })

  test("a connection lost after sending moves on only for a repeatable request", async () => {
    const a = dropping()
    const b = start("b", () => 200)
    const api = createApiClient({ coordinators: [{ url: a.url }, { url: b.url }], client: "u", key })
    await expect(api.json("POST", "/api/v1/jobs/j/start")).rejects.toBeInstanceOf(UnavailableError)
    expect(b.seen).toEqual([])
    expect(await api.json("POST", "/api/v1/jobs", { json: {}, idempotent: true })).toEqual({ from: "b" })
    expect(await api.json("GET", "/api/v1/jobs/j")).toEqual({ from: "b" })
    expect(a.seen).toEqual(["POST /api/v1/jobs/j/start", "POST /api/v1/jobs"])
  })

  test("all down: the last coordinator's 503 is the answer, after one attempt each", async () => {
    const a = start("a", () => 503)
    const b = start("b", () => 502)
    const api = createApiClient({ coordinators: [{ url: a.url }, { url: b.url }], client: "u", key })
    const res = await api.request("GET", "/api/v1/z")
    expect(res.status).toBe(502)
    expect(a.seen.length + b.seen.length).toBe(2)
  })
})
