import { expect, test } from "bun:test"
import { createFallbackLedger, REMEMBERED } from "./fallbacks.ts"
import { createMetrics } from "./metrics.ts"
import { parseProm } from "../../test/helpers/prom.ts"

const rec = (id: number, reason: "coordinator_unreachable" | "queue_timeout", at = 1000 + id) => ({
  id: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}`,
  at,
  reason,
  tool: "ffmpeg" as const,
  code: 0,
})

test("counts per client and reason; a record sent again is not counted again", () => {
  const l = createFallbackLedger()
  expect(l.add("c1", [rec(1, "coordinator_unreachable"), rec(2, "coordinator_unreachable")])).toEqual({
    accepted: 2,
    duplicates: 0,
  })
  expect(l.add("c1", [rec(2, "coordinator_unreachable"), rec(3, "queue_timeout")])).toEqual({
    accepted: 1,
    duplicates: 1,
  })
  // The same id from another client is another record.
  expect(l.add("c2", [rec(1, "coordinator_unreachable", 5)])).toEqual({ accepted: 1, duplicates: 0 })
  expect(l.counts()).toEqual([
    { client: "c1", reason: "coordinator_unreachable", count: 2, lastAt: 1002 },
    { client: "c1", reason: "queue_timeout", count: 1, lastAt: 1003 },
    { client: "c2", reason: "coordinator_unreachable", count: 1, lastAt: 5 },
  ])
})

test("the ids remembered are bounded", () => {
  const l = createFallbackLedger()
  for (let i = 0; i <= REMEMBERED; i++) l.add("c1", [rec(i, "queue_timeout")])
  // The oldest was forgotten, the newest not.
  expect(l.add("c1", [rec(REMEMBERED, "queue_timeout")]).duplicates).toBe(1)
  expect(l.add("c1", [rec(0, "queue_timeout")]).accepted).toBe(1)
})

test("the ids remembered are per client: another client's flood of new ids does not make a resent report count again", () => {
  const l = createFallbackLedger()
  l.add("c1", [rec(1, "queue_timeout")])
  for (let i = 0; i <= 10_000; i += 100)
    l.add(
      "c2",
      Array.from({ length: 100 }, (_, k) => rec(10 + i + k, "queue_timeout")),
    )
  expect(l.add("c1", [rec(1, "queue_timeout")])).toEqual({ accepted: 0, duplicates: 1 })
  expect(l.counts().find((c) => c.client === "c1")?.count).toBe(1)
})

test("dffmpeg_client_fallbacks_total carries the ledger's counts, by client and reason", () => {
  const l = createFallbackLedger()
  l.add("c1", [rec(1, "coordinator_unreachable"), rec(2, "queue_timeout"), rec(3, "queue_timeout")])
  const text = createMetrics().render({
    stats: { jobs: {}, workers: {}, slots: { total: 0, used: 0 }, oldestQueuedAt: null } as never,
    workers: [],
    loads: new Map(),
    running: [],
    now: 0,
    version: "t",
    startedAt: 0,
    fallbacks: l.counts(),
  })
  const { samples: all, types } = parseProm(text)
  expect(types.get("dffmpeg_client_fallbacks_total")).toBe("counter")
  const samples = all.filter((s) => s.name === "dffmpeg_client_fallbacks_total")
  expect(samples.map((s) => [s.labels, s.value])).toEqual([
    [{ client: "c1", reason: "coordinator_unreachable" }, 1],
    [{ client: "c1", reason: "queue_timeout" }, 2],
  ])
})
