import { afterEach, beforeEach, expect, test } from "bun:test"
import { hostname } from "node:os"
import type { Logger } from "../shared/log.ts"
import { VERSION } from "../shared/version.ts"
import { createSqliteStore } from "../store/sqlite/index.ts"
import type { Store } from "../store/types.ts"
import { waitFor } from "../../test/helpers/bin.ts"
import { PRESENCE_TTL_MS, startPresence } from "./presence.ts"

let store: Store
let lines: string[]
/** A logger that keeps its warn and info lines (the presence logs nothing else). */
const log = {
  warn: (msg: string) => lines.push(`warn ${msg}`),
  info: (msg: string) => lines.push(`info ${msg}`),
} as unknown as Logger
let clock = 1_000_000_000_000
const now = () => clock

beforeEach(async () => {
  store = createSqliteStore({ path: ":memory:" })
  await store.migrate()
  lines = []
})
afterEach(() => store.close())

test("the row is written at start, its seen_at refreshed by the timer, and removed at stop", async () => {
  await store.registerCoordinator(
    { id: "dead", host: "h", pid: 1, version: "0", url: null, startedAt: 0, seenAt: clock - PRESENCE_TTL_MS - 1 },
    0,
  )
  const p = await startPresence(store, { url: "http://127.0.0.1:8000", log, now, startedAt: clock - 5, intervalMs: 5 })
  // The start removed the row of a coordinator not seen for a day.
  expect(await store.listCoordinators(0)).toEqual([
    {
      id: p.id,
      host: hostname(),
      pid: process.pid,
      version: VERSION,
      url: "http://127.0.0.1:8000",
      startedAt: clock - 5,
      seenAt: clock,
    },
  ])
  clock += 1000
  await waitFor(async () => (await store.listCoordinators(0))[0]?.seenAt === clock, { what: "a refresh" })
  await p.stop()
  expect(await store.listCoordinators(0)).toEqual([])
  expect(lines).toEqual([])
})

test("a row deleted meanwhile is written again at the next refresh", async () => {
  const p = await startPresence(store, { url: "http://x", log, now, startedAt: clock, intervalMs: 5 })
  expect(await store.removeCoordinator(p.id)).toBe(true)
  await waitFor(async () => (await store.listCoordinators(0)).length === 1, { what: "the row again" })
  expect((await store.listCoordinators(0))[0].id).toBe(p.id)
  await p.stop()
})

test("refreshes that fail are logged once until one succeeds again; stop still ends", async () => {
  let fail = true
  let tries = 0
  const flaky: Store = {
    ...store,
    touchCoordinator: async (id, at) => {
      tries++
      if (fail) throw new Error("connection terminated")
      return store.touchCoordinator(id, at)
    },
  }
  const p = await startPresence(flaky, { url: "http://x", log, now, startedAt: clock, intervalMs: 5 })
  await waitFor(() => tries >= 4, { what: "several failed refreshes" })
  expect(lines).toEqual(["warn cannot refresh this coordinator's row in coordinators"])
  fail = false
  await waitFor(() => lines.length === 2, { what: "the recovery line" })
  expect(lines[1]).toBe("info coordinator row refreshed again")
  await p.stop()
  expect(await store.listCoordinators(0)).toEqual([])
})
