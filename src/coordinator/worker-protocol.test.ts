import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import * as v from "valibot"
import { CoordinatorConfig } from "../shared/config/server-schema.ts"
import { createLogger } from "../shared/log.ts"
import type { Store } from "../store/types.ts"
import { memoryStore, registration, T0 } from "../../test/helpers/fixtures.ts"
import { Hub } from "./hub.ts"
import { createWorkerProtocol } from "./worker-protocol.ts"

/** Polls against a real store whose worker-row writes are recorded. */
describe("worker polls: the row is written when the poll's state changes, not on every answer", () => {
  let store: Store
  let touches: string[]
  /** The store's clock: real time (a poll waits on it) from T0, moved on by `skew`. */
  let skew: number
  let started: number
  const now = () => T0 + skew + Math.floor(performance.now() - started)
  beforeEach(async () => {
    store = await memoryStore()
    await store.upsertWorker("w1", registration(), "tok", T0)
    await store.verifyWorker("w1", "tok", T0)
    // This test's list: a close still waiting when a test ends must not land in the next one's.
    const mine: string[] = (touches = [])
    const touch = store.touchWorker.bind(store)
    store.touchWorker = (id, now, poll) => {
      mine.push(poll ?? "seen")
      return touch(id, now, poll)
    }
    skew = 0
    started = performance.now()
  })
  afterEach(() => store.close())

  const protocol = (config: Record<string, unknown> = {}) =>
    createWorkerProtocol({
      store,
      hub: new Hub(),
      log: createLogger({ level: "error" }),
      now,
      config: v.parse(CoordinatorConfig, { poll_wait_seconds: 0.05, ...config }),
    })
  const closedAt = async () => (await store.getWorker("w1"))?.pollClosedAt ?? null
  const until = async (what: () => Promise<boolean>) => {
    const deadline = performance.now() + 5000
    while (!(await what())) {
      if (performance.now() > deadline) throw new Error("timed out")
      await Bun.sleep(10)
    }
  }

  test("a poll reopened at once writes neither the close nor the reopening; one not reopened records its close", async () => {
    const p = protocol({ scheduling: { poll_gone_seconds: 0.4 } })
    const signal = new AbortController().signal
    await p.poll("w1", 0.05, signal)
    expect(touches).toEqual(["open"])
    // Three answers in a row, each poll opened right after the last: the row still says open.
    for (let i = 0; i < 3; i++) await p.poll("w1", 0.05, signal)
    expect(touches).toEqual(["open"])
    expect(await closedAt()).toBeNull()
    // No poll follows: the close is written within the grace (a quarter of poll_gone_seconds), with the
    // time the poll closed.
    const at = now()
    await until(async () => (await closedAt()) !== null)
    expect(touches).toEqual(["open", "closed"])
    expect(await closedAt()).toBeGreaterThanOrEqual(at - 5)
    expect(await closedAt()).toBeLessThanOrEqual(at)
    // The next poll opens it again.
    await p.poll("w1", 0.05, signal)
    expect(touches).toEqual(["open", "closed", "open"])
  })

  test("a reopened poll writes the row again once the last write is POLL_TOUCH_MS old (the worker is seen)", async () => {
    const p = protocol()
    const signal = new AbortController().signal
    await p.poll("w1", 0.05, signal)
    skew += 1500
    const at = now()
    await p.poll("w1", 0.05, signal)
    expect(touches).toEqual(["open", "open"])
    expect((await store.getWorker("w1"))?.lastSeen).toBeGreaterThanOrEqual(at)
  })

  test("with two polls open, the first to close records nothing", async () => {
    const p = protocol({ poll_wait_seconds: 10, scheduling: { poll_gone_seconds: 0.2 } })
    const long = new AbortController()
    const first = p.poll("w1", 10, long.signal)
    await until(async () => touches.length === 1)
    await p.poll("w1", 0.05, new AbortController().signal)
    await Bun.sleep(150)
    expect(await closedAt()).toBeNull()
    long.abort()
    await first
    await until(async () => (await closedAt()) !== null)
  })
})
