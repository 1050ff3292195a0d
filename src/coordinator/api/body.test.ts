import { describe, expect, test } from "bun:test"
import { UnavailableError } from "../../shared/errors.ts"
import { REGISTRATION_BYTES, bodyCaps, createBodyBudget, readCapped } from "./body.ts"

const cap = { bytes: 1024 * 1024, key: "limits.max_body_bytes" }

/** A request whose body the test feeds chunk by chunk, and ends when it says so. */
function feeding(declared?: number) {
  let ctl!: ReadableStreamDefaultController<Uint8Array>
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) })
  const headers = declared === undefined ? undefined : { "content-length": String(declared) }
  const req = new Request("http://127.0.0.1/api/v1/jobs/x/output", {
    method: "POST",
    body,
    headers,
    duplex: "half",
  } as RequestInit)
  return { req, push: (n: number) => ctl.enqueue(new Uint8Array(n)), end: () => ctl.close() }
}

describe("readCapped with a budget for unverified bodies", () => {
  test("bodies read at the same time share the budget: the one that would pass it is 503, and the budget is whole again after", async () => {
    const budget = createBodyBudget(1000)
    const a = feeding()
    const reading = readCapped(a.req, cap, undefined, budget)
    a.push(700)
    // Let the first chunk be taken before the second request arrives.
    for (let i = 0; i < 20 && budget.used < 700; i++) await Bun.sleep(1)
    expect(budget.used).toBe(700)

    const b = feeding()
    b.push(400)
    b.end()
    const refused = await readCapped(b.req, cap, undefined, budget).catch((e) => e)
    expect(refused).toBeInstanceOf(UnavailableError)
    expect((refused as UnavailableError).status).toBe(503)
    expect((refused as Error).message).toContain("limits.max_unverified_body_bytes")
    expect(budget.used).toBe(700)

    a.push(200)
    a.end()
    expect((await reading).length).toBe(900)
    expect(budget.used).toBe(0)

    const c = feeding()
    c.push(1000)
    c.end()
    expect((await readCapped(c.req, cap, undefined, budget)).length).toBe(1000)
    expect(budget.used).toBe(0)
  })

  test("a large declared length is reserved before anything is read: one that does not fit is 503 unread; a small body is never metered", async () => {
    const budget = createBodyBudget(200_000)
    const a = feeding(150_000)
    const reading = readCapped(a.req, cap, undefined, budget)
    expect(budget.used).toBe(150_000)
    const b = feeding(100_000)
    expect(await readCapped(b.req, cap, undefined, budget).catch((e) => e)).toBeInstanceOf(UnavailableError)
    // Never touched: no reader was taken on it.
    expect(b.req.body!.locked).toBe(false)
    // A small one (a heartbeat, a submission) does not wait on large ones.
    const small = feeding(60_000)
    small.push(60_000)
    small.end()
    expect((await readCapped(small.req, cap, undefined, budget)).length).toBe(60_000)
    expect(budget.used).toBe(150_000)
    a.push(150_000)
    a.end()
    expect((await reading).length).toBe(150_000)
    expect(budget.used).toBe(0)
  })

  test("a body refused for its size gives back what it took", async () => {
    const budget = createBodyBudget(4 * 1024 * 1024)
    const a = feeding()
    a.push(cap.bytes)
    a.push(1)
    a.end()
    expect((await readCapped(a.req, cap, undefined, budget).catch((e) => e)).status).toBe(413)
    expect(budget.used).toBe(0)
  })
})

describe("bodyCaps", () => {
  test("a submission may carry 5 MiB more than other JSON (its concat lists and filter scripts)", () => {
    const caps = bodyCaps({ max_args_bytes: 256 * 1024, max_body_bytes: 8 << 20 } as Parameters<typeof bodyCaps>[0])
    expect(caps.of("GET", "/api/v1/jobs").bytes).toBe(1 << 20)
    expect(caps.of("POST", "/api/v1/jobs").bytes).toBe(6 << 20)
    expect(caps.of("POST", "/api/v1/jobs/x/cancel").bytes).toBe(1 << 20)
    expect(caps.of("POST", "/api/v1/jobs/x/output")).toEqual({ bytes: 8 << 20, key: "limits.max_body_bytes" })
    expect(caps.of("POST", "/api/v1/jobs").key).toBe("limits.max_args_bytes")
  })

  test("a worker registration (its tools: every name of its binaries) has its own, smaller cap", () => {
    const caps = bodyCaps({ max_args_bytes: 256 * 1024, max_body_bytes: 8 << 20 } as Parameters<typeof bodyCaps>[0])
    expect(caps.of("POST", "/api/v1/worker/register").bytes).toBe(REGISTRATION_BYTES)
    expect(REGISTRATION_BYTES).toBeLessThan(caps.of("POST", "/api/v1/worker/heartbeat").bytes)
  })
})
