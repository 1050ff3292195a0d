import { afterEach, expect, test } from "bun:test"
import { Hono } from "hono"
import { createConsola } from "consola/core"
import { waitFor } from "../../../test/helpers/bin.ts"
import { newId } from "../../shared/ids.ts"
import type { Store } from "../../store/index.ts"
import { memoryStore, registration } from "../../../test/helpers/fixtures.ts"
import type { AuthEnv } from "../api/middleware/hmac.ts"
import { Hub } from "../hub.ts"
import { liveEvents } from "./live.ts"

const stores: Store[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
})

/** The event stream alone, with short timings; the store is not wired to the hub (as for a change made by another coordinator). */
async function stream() {
  const store = await memoryStore()
  stores.push(store)
  const hub = new Hub()
  const deps = { store, hub, log: createConsola({ level: 0 }), now: Date.now, staleMs: 30_000 }
  const app = new Hono<AuthEnv>().get("/events", (c) =>
    liveEvents(c, deps, { timing: { minGapMs: 10, refreshMs: 60, keepaliveMs: 150 } }),
  )
  const res = await app.request("/events")
  const reader = res.body!.getReader()
  const dec = new TextDecoder()
  let text = ""
  return {
    store,
    hub,
    /** Reads until `re` matches the text received so far. */
    async until(re: RegExp) {
      while (!re.test(text)) {
        const { value, done } = await reader.read()
        if (done) throw new Error("stream ended")
        text += dec.decode(value, { stream: true })
      }
      return text
    },
    close: () => reader.cancel(),
  }
}

test("a quiet stream gets keep-alive comments, and a change nobody announced shows on the refresh round", async () => {
  const s = await stream()
  await s.until(/event: state/)
  await s.until(/^: keep-alive$/m)
  const id = newId()
  await s.store.createJob(
    { id, requester: "c", binary: "ffmpeg", args: [], paths: [], cwd: null, stdin: false, attached: false, retries: 0 },
    Date.now(),
  )
  await s.until(new RegExp(id))
  await s.close()
  await waitFor(() => s.hub.size === 0, { what: "the stream to stop waiting" })
})

test("pages woken by the same change share one read of the state, and each still shows the change", async () => {
  const store = await memoryStore()
  stores.push(store)
  let reads = 0
  const listWorkers = store.listWorkers.bind(store)
  store.listWorkers = () => {
    reads++
    return listWorkers()
  }
  const hub = new Hub()
  const deps = { store, hub, log: createConsola({ level: 0 }), now: Date.now, staleMs: 30_000 }
  // A refresh round far away: only the announced change wakes the pages.
  const app = new Hono<AuthEnv>().get("/events", (c) =>
    liveEvents(c, deps, { timing: { minGapMs: 10, refreshMs: 60_000, keepaliveMs: 60_000 } }),
  )
  const dec = new TextDecoder()
  const pages = await Promise.all(
    [1, 2, 3, 4].map(async () => {
      const reader = (await app.request("/events")).body!.getReader()
      let text = ""
      return {
        async until(re: RegExp) {
          while (!re.test(text)) text += dec.decode((await reader.read()).value, { stream: true })
        },
        close: () => reader.cancel(),
      }
    }),
  )
  await Promise.all(pages.map((p) => p.until(/event: state/)))
  await waitFor(() => hub.size === 1, { what: "every page to wait for a change" })
  const before = reads
  const id = newId()
  await store.createJob(
    { id, requester: "c", binary: "ffmpeg", args: [], paths: [], cwd: null, stdin: false, attached: false, retries: 0 },
    Date.now(),
  )
  hub.notify("changes")
  await Promise.all(pages.map((p) => p.until(new RegExp(id))))
  expect(reads - before).toBe(1)
  await Promise.all(pages.map((p) => p.close()))
  await waitFor(() => hub.size === 0, { what: "the streams to stop waiting" })
})

test("a job page's live updates carry a large job's arguments cut and flagged; its first load has them whole", async () => {
  const { followJob } = await import("./live.ts")
  const { readJob, readState } = await import("./views.ts")
  const store = await memoryStore()
  stores.push(store)
  const args = Array.from({ length: 3000 }, (_, i) => `-metadata:${i}=${"z".repeat(2000)}`)
  const id = newId()
  await store.createJob(
    { id, requester: "alice", binary: "ffmpeg", args, paths: [], cwd: null, stdin: false, attached: false, retries: 0 },
    Date.now(),
  )
  const update = await followJob(store, id)()
  if (!update || "gone" in update) throw new Error("expected a job update")
  expect(update.job.truncated).toBe(true)
  expect(update.job.args).toEqual(args.slice(0, update.job.args.length))
  expect(JSON.stringify(update).length).toBeLessThan(16 * 1024)
  expect((await readJob(store, id))!.job.args).toEqual(args)
  const state = await readState({ store, now: Date.now, staleMs: 30_000 })
  expect(state.jobs.active[0].command.length).toBeLessThanOrEqual(240)
  expect(JSON.stringify(state).length).toBeLessThan(8 * 1024)
})

test("a queued job shows why no worker takes it, by the scheduler's rule", async () => {
  const { readState } = await import("./views.ts")
  const { NO_NEEDS } = await import("../../shared/protocol/capabilities.ts")
  const store = await memoryStore()
  stores.push(store)
  const now = Date.now()
  await store.upsertWorker("w1", registration({ labels: { site: "attic" } }), "t", now)
  await store.verifyWorker("w1", "t", now)
  const base = {
    requester: "alice",
    binary: "ffmpeg",
    args: [],
    paths: [],
    cwd: null,
    stdin: false,
    attached: false,
    retries: 0,
  }
  await store.createJob({ ...base, id: newId(), needs: { ...NO_NEEDS, labels: { gpu: "nvidia" } } }, now)
  await store.createJob({ ...base, id: newId(), priority: "batch" }, now)
  const state = await readState({ store, now: () => now, staleMs: 30_000 })
  expect(state.jobs.active.map((j) => [j.priority, j.waiting])).toEqual([
    ["batch", "a slot is free: the next scheduling pass assigns it"],
    ["normal", "no online worker has label gpu=nvidia"],
  ])
})
