import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { admin, alice, bob, RouteHarness } from "../../../../test/helpers/routes.ts"

let h: RouteHarness
beforeEach(async () => {
  h = await RouteHarness.open()
})
afterEach(async () => {
  await h.close()
})

const R = "/api/v1/clients/fallbacks"
const rec = (n: number, reason = "coordinator_unreachable") => ({
  id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
  at: 1_700_000_000_000 + n,
  reason,
  tool: "ffmpeg",
  code: 0,
})

describe("POST /clients/fallbacks", () => {
  test("counts each record once per client, by its id", async () => {
    const first = await h.request(alice, "POST", R, { records: [rec(1), rec(2, "queue_timeout")] })
    expect(first.status).toBe(200)
    expect(await first.json()).toEqual({ accepted: 2, duplicates: 0 })
    // The same report again (its answer was lost), and bob's own.
    expect(await (await h.request(alice, "POST", R, { records: [rec(1), rec(3)] })).json()).toEqual({
      accepted: 1,
      duplicates: 1,
    })
    await h.request(bob, "POST", R, { records: [rec(1)] })
    expect(h.fallbacks.counts().map((c) => [c.client, c.reason, c.count])).toEqual([
      ["alice", "coordinator_unreachable", 2],
      ["alice", "queue_timeout", 1],
      ["bob", "coordinator_unreachable", 1],
    ])
  })

  test.each([
    ["no records", { records: [] }],
    ["over 100 records", { records: Array.from({ length: 101 }, (_, i) => rec(i)) }],
    ["an unknown reason", { records: [rec(1, "bored")] }],
    ["an id that is no UUID", { records: [{ ...rec(1), id: "x".repeat(36) }] }],
    ["an exit code out of range", { records: [{ ...rec(1), code: 256 }] }],
    ["an unknown field", { records: [{ ...rec(1), argv: ["-i", "/secret"] }] }],
    ["not JSON", "{"],
  ])("refuses %s with 400, counting nothing", async (_what, body) => {
    const res = await h.request(alice, "POST", R, body)
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("E_INVALID")
    expect(h.fallbacks.counts()).toEqual([])
  })

  test("is for client identities only", async () => {
    expect((await h.request(admin, "POST", R, { records: [rec(1)] })).status).toBe(403)
    expect((await h.request({ name: "w1", role: "worker" }, "POST", R, { records: [rec(1)] })).status).toBe(403)
    expect(h.fallbacks.counts()).toEqual([])
  })
})
