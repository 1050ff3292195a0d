import { afterEach, describe, expect, test } from "bun:test"
import * as v from "valibot"
import type { Notifier, Subscription } from "../../src/coordinator/hub.ts"
import { startCoordinator } from "../../src/coordinator/index.ts"
import { generateKey } from "../../src/shared/auth/hmac.ts"
import { memoryKeyring } from "../../src/shared/auth/keyring.ts"
import { CoordinatorConfig } from "../../src/shared/config/server-schema.ts"
import { newId } from "../../src/shared/ids.ts"
import { createLogger } from "../../src/shared/log.ts"
import type { Job } from "../../src/shared/protocol/schemas.ts"
import { createStore } from "../../src/store/index.ts"
import { createWorkerTransport } from "../../src/transports/index.ts"
import { waitFor } from "../helpers/bin.ts"
import { freshDatabase, type ServerEngine } from "../helpers/databases.ts"
import { newJob } from "../helpers/fixtures.ts"
import type { TcpProxy } from "../helpers/tcp-proxy.ts"

/**
 * The Notifier contract (src/coordinator/hub.ts) as tests. `pair()` gives two notifiers as two
 * coordinators of one database have (`a` and `b`, connected), or the same one twice for the in-memory
 * hub, whose "other coordinator" is itself. `pair(true)` puts `b` behind a TCP proxy the test cuts.
 */
export interface NotifierSetup {
  /** The notifiers are different processes' (hints stay in their process) and have a connection. */
  remote: boolean
  pair(proxied?: boolean): Promise<{ a: Notifier; b: Notifier; proxy?: TcpProxy }>
  /** Statements `n` has sent so far, and how many `topics` notified in one tick may take at most. */
  statements?: { of(n: Notifier): number; for(topics: number): number }
}

/** A wait that must be woken, not end by its timer (which is far longer than `WOKEN_MS`). */
const WAIT_MS = 30_000
const WOKEN_MS = 10_000

let seq = 0
const unique = (what: string) => `job:${Date.now().toString(36)}${(seq++).toString(36).padStart(4, "0")}:${what}`

/** Resolves to the hint of `sub`'s next wake-up, failing if that took its timer. */
async function woken(sub: Subscription) {
  const t0 = performance.now()
  const hint = await sub.wait(WAIT_MS)
  expect(performance.now() - t0).toBeLessThan(WOKEN_MS)
  return hint
}

export function testNotifier(name: string, setup: NotifierSetup) {
  describe(`${name} notifier`, () => {
    const opened: Notifier[] = []
    const proxies: TcpProxy[] = []
    const pair = async (proxied = false) => {
      const p = await setup.pair(proxied)
      opened.push(p.a, p.b)
      if (p.proxy) proxies.push(p.proxy)
      return p
    }
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((n) => n.close?.()))
      for (const p of proxies.splice(0)) p.stop()
    })

    test("a notify wakes a waiter of the other instance (without the hint when it crosses processes)", async () => {
      const { a, b } = await pair()
      const t = unique("output")
      const sub = b.subscribe(t)
      a.notify(t, { output: true })
      expect(await woken(sub)).toEqual(setup.remote ? undefined : { output: true })
      sub.close()
    })

    test("a waiter of the notifying instance is woken with its hint", async () => {
      const { a } = await pair()
      const t = unique("output")
      const job = { id: "j", status: "running" } as Job
      const sub = a.subscribe(t)
      a.notify(t, { job })
      expect(await woken(sub)).toEqual({ job })
      sub.close()
    })

    test("an instance's own notifications are not delivered to it a second time", async () => {
      const { a, b } = await pair()
      const t = unique("output")
      const u = unique("input")
      const aT = a.subscribe(t)
      const aU = a.subscribe(u)
      const bT = b.subscribe(t)
      a.notify(t, { output: true })
      expect(await woken(aT)).toEqual({ output: true })
      await woken(bT)
      // b answers once it heard t: by the time a hears u, t came back to a too, if it ever does.
      b.notify(u)
      await woken(aU)
      // An echo is a notification without a hint: it would make this wake-up say nothing.
      a.notify(t, { input: true })
      expect(await woken(aT)).toEqual({ input: true })
      for (const s of [aT, aU, bT]) s.close()
    })

    test("a notification that comes while the subscriber reads is kept for its next wait", async () => {
      const { a, b } = await pair()
      const t = unique("output")
      const s = unique("input")
      const sub = b.subscribe(t)
      const sentinel = b.subscribe(s)
      // Both go out together, t first: once s arrived, t had arrived, while nobody waited on it.
      a.notify(t)
      a.notify(s)
      await woken(sentinel)
      const t0 = performance.now()
      await sub.wait(WAIT_MS)
      expect(performance.now() - t0).toBeLessThan(1000)
      sub.close()
      sentinel.close()
    })

    test("a wait ends by its timer and forgets its topic", async () => {
      const { b } = await pair()
      const before = b.size
      const t0 = performance.now()
      const w = b.wait(unique("output"), 40)
      expect(b.size).toBe(before + 1)
      await w
      expect(performance.now() - t0).toBeGreaterThanOrEqual(35)
      expect(b.size).toBe(before)
    })

    test("an abort ends a wait and a subscription's wait at once", async () => {
      const { b } = await pair()
      const before = b.size
      const ac = new AbortController()
      const t0 = performance.now()
      const w = b.wait(unique("output"), WAIT_MS, ac.signal)
      const sub = b.subscribe(unique("input"))
      const sw = sub.wait(WAIT_MS, ac.signal)
      ac.abort()
      await w
      expect(await sw).toBeUndefined()
      expect(performance.now() - t0).toBeLessThan(1000)
      sub.close()
      expect(b.size).toBe(before)
    })

    test("close sends what was notified before it; the closed instance still wakes its own waiters", async () => {
      const { a, b } = await pair()
      const t = unique("output")
      const bT = b.subscribe(t)
      a.notify(t)
      await a.close?.()
      await a.close?.()
      await woken(bT)
      if (setup.remote) expect(a.connected).toBe(false)
      const x = unique("input")
      const aX = a.subscribe(x)
      a.notify(x, { input: true })
      expect(await woken(aX)).toEqual({ input: true })
      aX.close()
      bT.close()
    })

    test("thousands of topics notified in one tick arrive, in few statements", async () => {
      const { a, b } = await pair()
      const n = 3000
      const topics = Array.from({ length: n }, () => unique("output"))
      const subs = topics.map((t) => b.subscribe(t))
      const before = setup.statements?.of(a) ?? 0
      for (const t of topics) a.notify(t)
      const t0 = performance.now()
      await Promise.all(subs.map((s) => s.wait(WAIT_MS)))
      expect(performance.now() - t0).toBeLessThan(WOKEN_MS)
      if (setup.statements) expect(setup.statements.of(a) - before).toBeLessThanOrEqual(setup.statements.for(n))
      for (const s of subs) s.close()
    })

    test("topics of the longest size are split across payloads; a longer one wakes every waiter", async () => {
      const { a, b } = await pair()
      // 128 bytes each, 200 of them: 26 KB, over PostgreSQL's 8000-byte payload.
      const topics = Array.from({ length: 200 }, () => unique("x").padEnd(128, "x"))
      const subs = topics.map((t) => b.subscribe(t))
      for (const t of topics) a.notify(t)
      await Promise.all(subs.map(woken))
      const long = unique("y").padEnd(300, "y")
      const other = b.subscribe(unique("z"))
      const longSub = b.subscribe(long)
      a.notify(long)
      await woken(longSub)
      if (setup.remote) await woken(other)
      for (const s of [...subs, other, longSub]) s.close()
    })

    if (setup.remote)
      test("after its connection is cut and back, every waiter is woken and what it sent meanwhile goes out", async () => {
        const { a, b, proxy } = await pair(true)
        if (!proxy) throw new Error("the setup gave no proxy")
        const t = unique("output")
        const u = unique("input")
        const bT = b.subscribe(t)
        const aU = a.subscribe(u)
        expect(b.connected).toBe(true)
        proxy.cut()
        await waitFor(() => b.connected === false, { what: "the notifier to see its connection cut" })
        // Missed by b (it listens to nothing); sent by b once it is back.
        a.notify(t)
        b.notify(u)
        proxy.restore()
        expect(await woken(bT)).toBeUndefined()
        expect(b.connected).toBe(true)
        await woken(aU)
        bT.close()
        aU.close()
      })
  })
}

/**
 * Two coordinators in this process on one fresh database of `engine`, each with the notifier its store's
 * kind picks: a job assigned through one wakes the worker's poll held by the other at once, where
 * nothing else would answer it for a minute (poll_wait_seconds 60, heartbeat_interval 30); /health
 * names the notifier, connected.
 */
/**
 * Two coordinators on one fresh `engine` database: an assignment committed through one wakes the
 * worker's poll held by the other. `over` adds to their config (a broker notifier: `transports` and
 * `notifier`, with the change sequence read only every minute), `notifier` is the kind /health must show.
 */
export function testCoordinatorWakeups(
  engine: ServerEngine,
  o: { over?: Record<string, unknown>; notifier?: string; interval?: number } = {},
) {
  describe(`two coordinators on ${engine}${o.notifier ? ` with the ${o.notifier} notifier` : ""}`, () => {
    test("an assignment committed through one wakes the worker's poll held by the other", async () => {
      const db = await freshDatabase(engine)
      const log = createLogger({ level: "error" })
      const config = v.parse(CoordinatorConfig, {
        host: "127.0.0.1",
        port: 0,
        poll_wait_seconds: 60,
        heartbeat_interval: 30,
        database: { ...db.config, notify_interval_ms: o.interval ?? 20 },
        ...o.over,
      })
      // One secret for both, as coordinators of one database share their secret file.
      const keys = memoryKeyring()
      const storeA = await createStore({ database: config.database, keys })
      const storeB = await createStore({ database: config.database, keys })
      const key = generateKey()
      await storeA.addUser("w1", "worker", key, Date.now())
      const a = await startCoordinator(config, { log, base: "/", store: storeA, keys })
      const b = await startCoordinator(config, { log, base: "/", store: storeB, keys })
      try {
        for (const c of [a, b]) {
          const health = (await (await fetch(`${c.url}/health`)).json()) as { components: { notifier: unknown } }
          expect(health.components.notifier).toEqual({ kind: o.notifier ?? engine, status: "ok", connected: true })
        }
        const w = createWorkerTransport({ coordinators: [{ url: b.url }], client: "w1", key })
        await w.register({
          draining: false,
          binaries: ["ffmpeg"],
          paths: [],
          maxJobs: 1,
          version: "t",
          capabilities: { pathTokens: true },
        })
        const ac = new AbortController()
        const batches = w
          .assignments(
            () => 60,
            ac.signal,
            () => [],
          )
          [Symbol.asyncIterator]()
        const next = async () => {
          const r = await batches.next()
          if (r.done) throw new Error("no batch")
          return r.value
        }
        await w.verify((await next()).verify!)
        const id = newId()
        await storeA.createJob(newJob(id), Date.now())
        const told = next()
        const t0 = performance.now()
        await storeA.assign(id, "w1", Date.now())
        const batch = await told
        expect(performance.now() - t0).toBeLessThan(10_000)
        expect(batch.jobs.map((j) => j.id)).toEqual([id])
        ac.abort()
      } finally {
        await a.stop()
        await b.stop()
      }
    }, 30_000)
  })
}
