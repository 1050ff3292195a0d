import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import * as v from "valibot"
import { CoordinatorConfig } from "../shared/config/server-schema.ts"
import { IdentityInUseError } from "../shared/errors.ts"
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

describe("one identity, one worker: calls of a process that does not serve the identity", () => {
  let store: Store
  let clock: number
  afterEach(() => store.close())
  const A = { id: "01J0000000000000000000000A", host: "a", pid: 1 }
  const B = { id: "01J0000000000000000000000B", host: "b", pid: 2 }

  test("after a takeover the old process's heartbeats and polls are refused, its stop changes nothing", async () => {
    store = await memoryStore()
    clock = T0
    const p = createWorkerProtocol({
      store,
      hub: new Hub(),
      log: createLogger({ level: "error" }),
      now: () => clock,
      config: v.parse(CoordinatorConfig, { poll_wait_seconds: 0.05, heartbeat_interval: 1 }),
    })
    await p.register("w1", { ...registration(), instance: A })
    await p.verify("w1", (await store.workerToken("w1"))!)
    // A is cut off: its poll closed, silent for more than two heartbeats: B takes over.
    await store.touchWorker("w1", clock, "closed")
    clock += 1000
    await expect(p.register("w1", { ...registration(), instance: B })).rejects.toBeInstanceOf(IdentityInUseError)
    clock += 1001
    await p.register("w1", { ...registration(), instance: B })
    await p.verify("w1", (await store.workerToken("w1"))!)
    await expect(p.heartbeat("w1", [], A.id)).rejects.toBeInstanceOf(IdentityInUseError)
    await expect(
      p.poll("w1", 0.05, new AbortController().signal, undefined, [], [], "http_polling", A.id),
    ).rejects.toThrow(/served by another worker process now: host b \(pid 2/)
    await p.deregister("w1", A.id)
    expect(await store.getWorker("w1")).toMatchObject({ status: "online", instance: B })
    // B's own calls work, and its heartbeat's load is stored rounded.
    const load = {
      at: "2026-12-03T10:00:00.000Z",
      cpuPercent: 33.33333,
      load1: 0.123456,
      cpus: 2,
      memUsedBytes: 1,
      memTotalBytes: 2,
      gpus: [{ name: "g", utilPercent: 9.87654, memUsedBytes: null, memTotalBytes: null }],
    }
    expect(await p.heartbeat("w1", [], B.id, load)).toEqual({ stale: [], reregister: false })
    expect((await store.getWorker("w1"))?.hostLoad).toMatchObject({
      cpuPercent: 33.3,
      load1: 0.12,
      gpus: [{ utilPercent: 9.9 }],
    })
    await p.deregister("w1", B.id)
    expect((await store.getWorker("w1"))?.status).toBe("offline")
  })
})
