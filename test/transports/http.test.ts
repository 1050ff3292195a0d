import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as v from "valibot"
import { startCoordinator } from "../../src/coordinator/index.ts"
import { generateKey } from "../../src/shared/auth/hmac.ts"
import { CoordinatorConfig } from "../../src/shared/config/server-schema.ts"
import { createApiClient } from "../../src/shared/http/client.ts"
import { newId } from "../../src/shared/ids.ts"
import { createLogger } from "../../src/shared/log.ts"
import { MAX_FOLLOWING } from "../../src/shared/protocol/worker.ts"
import { createSqliteStore } from "../../src/store/sqlite/index.ts"
import type { Store } from "../../src/store/types.ts"
import { createWorkerTransport } from "../../src/transports/index.ts"
import { newJob } from "../helpers/fixtures.ts"
import { testTransport } from "../conformance/transport.ts"

/**
 * A coordinator in process on 127.0.0.1 (signed requests, signed replies, the real routes) on `store`
 * (migrated here), with `config` over its defaults, and the key of its worker identity `w1`.
 */
async function coordinatorOn(store: Store, config: Record<string, unknown>) {
  await store.migrate()
  const key = generateKey()
  await store.addUser("w1", "worker", key, Date.now())
  const parsed = v.parse(CoordinatorConfig, { host: "127.0.0.1", port: 0, ...config })
  const service = await startCoordinator(parsed, { log: createLogger({ level: "error" }), base: "/", store })
  return { service, key }
}

// The coordinator on an in-memory store, and the worker's HTTP transport that reaches it.
testTransport("http", async (timing) => {
  const store = createSqliteStore({ path: ":memory:" })
  const { service, key } = await coordinatorOn(store, {
    poll_wait_seconds: timing.pollWaitSeconds,
    heartbeat_interval: timing.heartbeatSeconds,
  })
  return {
    worker: createWorkerTransport({ coordinators: [{ url: service.url }], client: "w1", key }),
    process: (instance) => createWorkerTransport({ coordinators: [{ url: service.url }], client: "w1", key, instance }),
    workerName: "w1",
    store,
    close: () => service.stop(),
  }
})

describe("http binding: the poll's following list", () => {
  test("ids that are not job ids, or more of them than any worker has slots, are refused with a 400 in JSON", async () => {
    const { service, key } = await coordinatorOn(createSqliteStore({ path: ":memory:" }), { poll_wait_seconds: 0.05 })
    try {
      const api = createApiClient({ url: service.url, client: "w1", key })
      await api.json("POST", "/api/v1/worker/register", {
        json: { binaries: [], paths: [], maxJobs: 1, version: "test", capabilities: {} },
      })
      const poll = (following: string) => api.request("GET", "/api/v1/worker/poll", { query: { wait: 0, following } })
      for (const following of ["not-a-ulid", `${newId()},,${newId()}`, `${newId()};DROP`]) {
        const res = await poll(following)
        expect(res.status).toBe(400)
        expect(((await res.json()) as { error: { message: string } }).error.message).toContain("job ids (ULIDs)")
      }
      const many = await poll(Array.from({ length: MAX_FOLLOWING + 1 }, () => newId()).join(","))
      expect(many.status).toBe(400)
      expect(((await many.json()) as { error: { message: string } }).error.message).toContain(
        `at most ${MAX_FOLLOWING}`,
      )
      // Within the bound of every worker but over this one's slots (1 + 4 probe slots).
      const over = await poll(Array.from({ length: 6 }, () => newId()).join(","))
      expect(over.status).toBe(400)
      expect(await poll(newId())).toHaveProperty("status", 200)
      // The held assignments are checked the same way, under their own name.
      const hold = (holding: string) => api.request("GET", "/api/v1/worker/poll", { query: { wait: 0, holding } })
      for (const holding of [
        "not-a-ulid",
        `${newId()},,${newId()}`,
        Array.from({ length: 6 }, () => newId()).join(","),
      ]) {
        const res = await hold(holding)
        expect(res.status).toBe(400)
        expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/holding|holds/)
      }
      expect(await hold(newId())).toHaveProperty("status", 200)
    } finally {
      await service.stop()
    }
  })
})

describe("http binding: a cancel written by another process", () => {
  test("reaches a worker whose poll waits, by its re-reads (nothing notifies this process)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dffmpeg-lazydown-"))
    const path = join(dir, "coordinator.db")
    // The coordinator's reads of a poll's answer, counted: the cancel is written once the poll has read.
    let pollReads = 0
    const store = createSqliteStore({ path, onStatement: (q) => void (q.includes('"has_input"') && pollReads++) })
    // A poll held far longer than the test may take: only its re-reads can answer it in time.
    const { service, key } = await coordinatorOn(store, { poll_wait_seconds: 60, heartbeat_interval: 0.2 })
    const other = createSqliteStore({ path })
    try {
      const w = createWorkerTransport({ coordinators: [{ url: service.url }], client: "w1", key })
      await w.register({
        draining: false,
        binaries: ["ffmpeg"],
        paths: [],
        maxJobs: 1,
        version: "t",
        capabilities: { pathTokens: true },
      })
      const next = async (following: string[]) => {
        for await (const b of w.assignments(
          () => 60,
          new AbortController().signal,
          () => following,
        ))
          return b
        throw new Error("no batch")
      }
      await w.verify((await next([])).verify!)
      const id = newId()
      await store.createJob(newJob(id), Date.now())
      await store.assign(id, "w1", Date.now())
      const [a] = (await next([])).jobs
      await w.start(a!.id, a!.epoch)
      const read = pollReads
      const told = next([])
      // Its first read found nothing: from then on only a re-read can see what another process writes.
      const until = performance.now() + 5000
      while (pollReads === read) {
        if (performance.now() > until) throw new Error("the poll never read")
        await Bun.sleep(5)
      }
      await other.requestCancel(id, "canceled by an administrator", Date.now())
      expect(await told).toEqual({ jobs: [], downlink: [{ id, epoch: a!.epoch }] })
    } finally {
      await service.stop()
      await other.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 10_000)
})
