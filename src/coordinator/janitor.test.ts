import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test"
import * as v from "valibot"
import { newJob, registration, T0, tempDir } from "../../test/helpers/fixtures.ts"
import { waitFor } from "../../test/helpers/bin.ts"
import { NO_NEEDS } from "../shared/protocol/capabilities.ts"
import { noCapableWorker } from "../shared/protocol/fallback.ts"
import { openPeer, type Peer } from "../../test/helpers/store-peer.ts"
import { CoordinatorConfig } from "../shared/config/server-schema.ts"
import { createLogger } from "../shared/log.ts"
import type { Job, JobEvent, WorkerRegistration } from "../shared/protocol/schemas.ts"
import { createStore, type Store } from "../store/index.ts"
import type { NewJob } from "../store/types.ts"
import { Hub, topic } from "./hub.ts"
import { createJanitor, timings, type Janitor, type JanitorReport, type Timings } from "./janitor.ts"
import { wireWakeups } from "./wakeups.ts"

const tmp = tempDir("janitor")
const tempPath = () => tmp.fresh()
afterAll(tmp.remove)

const config = (over: Record<string, unknown> = {}) => v.parse(CoordinatorConfig, over)
/** Defaults: workers stale after 22.5 s, jobs and callers after 12.5 s, assignment 10 s, pending 30 s, retention 168 h. */
const T = timings(config())
const GRACE = Math.max(T.workerStale, T.jobStale, T.assignment)
/** Past every threshold but retention, and past the start-up grace. */
const LATER = T0 + 60_000

const reg = (over: Partial<WorkerRegistration> = {}) => registration({ maxJobs: 64, ...over })

describe("timings", () => {
  test("derives the thresholds in ms from the config defaults", () => {
    expect(timings(config())).toEqual({
      interval: 10_000,
      jitter: 500,
      workerStale: 22_500,
      jobStale: 12_500,
      assignment: 10_000,
      pending: 30_000,
      probePending: 5000,
      retention: 168 * 3600 * 1000,
    })
  })

  test("follows the configured intervals and factors, and caps the jitter at half the interval", () => {
    const t = timings(
      config({
        heartbeat_interval: 2,
        registration_interval: 4,
        janitor: {
          interval: 1,
          jitter: 5,
          worker_threshold_factor: 3,
          job_heartbeat_threshold_factor: 4,
          job_assignment_timeout: 7,
          job_pending_timeout: 8,
          probe_pending_timeout: 0.5,
          retention_hours: 0.5,
        },
      }),
    )
    expect(t).toEqual({
      interval: 1000,
      jitter: 500,
      workerStale: 12_000,
      jobStale: 8000,
      assignment: 7000,
      pending: 8000,
      probePending: 500,
      retention: 1_800_000,
    })
  })

  test("a registration interval shorter than the heartbeat does not make a live worker look dead", () => {
    // Workers are heard from at every heartbeat; re-registration waits for the poll in flight.
    expect(timings(config({ heartbeat_interval: 5, registration_interval: 2 })).workerStale).toBe(7500)
  })
})

/** One store (on a file, as a coordinator has), a hub, a counting scheduler, and janitors on a clock the test moves. */
class Harness {
  store!: Store
  hub = new Hub()
  clock = T0
  kicks = 0

  janitor(
    t: Timings = T,
    startedAt = T0,
    store: Store = this.store,
    more: { staleMs?: number; pollGoneMs?: number } = {},
  ): Janitor {
    const janitor = createJanitor({
      store,
      log: createLogger({ level: "error" }),
      now: () => this.clock,
      timings: t,
      startedAt,
      ...more,
    })
    // A pass's changes wake this hub and count as kicks through the store's change hook, as in the
    // coordinator; only while the pass runs, so that the set-up's own changes are not counted.
    const run = async () => {
      const unwire = wireWakeups(store, { notifier: this.hub, scheduler: { kick: () => void this.kicks++ } })
      try {
        return await janitor.run()
      } finally {
        unwire()
      }
    }
    return { ...janitor, run }
  }

  run(t: Timings = T): Promise<JanitorReport> {
    return this.janitor(t).run()
  }

  /** Registers and verifies a worker, so that it is online, heard from at `at`. */
  async worker(id: string, over: Partial<WorkerRegistration> = {}, at = T0): Promise<void> {
    await this.store.upsertWorker(id, reg(over), `tok-${id}`, at)
    expect(await this.store.verifyWorker(id, `tok-${id}`, at)).toBe(true)
  }

  /** A job created at `at`, assigned to `worker` at at+1 and, unless told otherwise, started at at+2. */
  async job(id: string, over: Partial<NewJob> = {}, worker: string | null = "w1", start = true, at = T0): Promise<Job> {
    const created = await this.store.createJob(newJob(id, over), at)
    if (!worker) return created
    const assigned = await this.store.assign(id, worker, at + 1)
    if (!start) return assigned!
    return (await this.store.start(id, worker, assigned!.epoch, at + 2))!
  }

  /** Keeps workers and the jobs they hold alive (and attached callers present) at `at`. */
  async alive(at: number, workers: Record<string, string[]>, callers: string[] = []): Promise<void> {
    for (const [w, jobs] of Object.entries(workers)) {
      const held = await Promise.all(jobs.map(async (id) => ({ id, epoch: (await this.store.getJob(id))!.epoch })))
      expect(await this.store.heartbeat(w, held, at)).toEqual([])
    }
    for (const id of callers) await this.store.touchClient(id, at)
  }

  async status(id: string) {
    return (await this.store.getJob(id))?.status
  }
}

describe("createJanitor", () => {
  let h: Harness

  beforeEach(async () => {
    h = new Harness()
    h.store = await createStore({ database: { engine: "sqlite", path: tempPath() } })
  })
  afterEach(async () => {
    await h.store.close()
  })

  describe("start-up grace", () => {
    test("reaps nothing for one threshold after start-up, and reaps once it has passed", async () => {
      // Both last heard from just before this coordinator started (by a previous one).
      await h.worker("w1", {}, T0 - 1)
      await h.worker("gone", {}, T0 - 1)
      await h.job("att", { attached: true })
      await h.job("asg", {}, "w1", false)
      await h.job("pend", { binary: "ffprobe" }, null)
      const events = async () => Promise.all(["att", "asg", "pend"].map((id) => h.store.events(id)))
      const before = await events()

      // Everything is overdue, but the coordinator started at T0: workers and callers may not have found it yet.
      h.clock = T0 + GRACE - 1
      const quiet = await h.run()
      expect(quiet).toEqual({
        suppressed: true,
        workersOffline: [],
        lost: [],
        canceled: [],
        unassigned: [],
        failedPending: [],
        abandoned: [],
        pruned: { jobs: 0, workers: 0 },
      })
      expect(await events()).toEqual(before)
      expect((await h.store.getWorker("gone"))?.status).toBe("online")
      expect(h.kicks).toBe(0)

      h.clock = T0 + GRACE
      const report = await h.run()
      expect(report.suppressed).toBe(false)
      expect(report.workersOffline.sort()).toEqual(["gone", "w1"])
      expect(report.lost).toEqual([{ job: "att", requeued: false }])
      expect(report.unassigned).toEqual(["asg"])
      expect(await h.status("att")).toBe("failed")
      expect(await h.status("asg")).toBe("queued")
    })

    test("the grace is measured from startedAt, not from the first pass", async () => {
      await h.worker("w1")
      h.clock = LATER
      const janitor = h.janitor(T, LATER - 1)
      expect((await janitor.run()).suppressed).toBe(true)
      expect((await h.store.getWorker("w1"))?.status).toBe("online")
    })
  })

  describe("running jobs without a heartbeat", () => {
    test("an attached job is failed with a reason naming its worker", async () => {
      await h.worker("w1")
      await h.job("att", { attached: true, retries: 3 })
      await h.job("fresh", { attached: true })
      h.clock = LATER
      // The worker itself is alive and so are the callers; only "att" has no heartbeat for jobStale.
      await h.alive(h.clock - T.jobStale, { w1: ["fresh"] })
      await h.alive(h.clock, { w1: [] }, ["att", "fresh"])
      const woke = h.hub.wait(topic.output("att"), 60_000).then(() => true)

      const report = await h.run()
      expect(report.lost).toEqual([{ job: "att", requeued: false }])
      expect(await woke).toBe(true)
      const job = (await h.store.getJob("att"))!
      expect(job).toMatchObject({ status: "failed", finishedAt: LATER, attempts: 1 })
      expect(job.error).toContain("worker w1 stopped responding")
      // A heartbeat exactly at the threshold is still fresh.
      expect(await h.status("fresh")).toBe("running")
      expect(h.kicks).toBe(0)
      expect((await h.store.events("att")).filter((e) => e.status === "failed")).toHaveLength(1)
    })

    test("a detached job with retries left is re-queued, excluding its worker, and the scheduler is kicked", async () => {
      await h.worker("w1")
      await h.job("det", { retries: 1 })
      await h.job("det0", { retries: 0 })
      h.clock = LATER
      await h.alive(h.clock, { w1: [] })

      const report = await h.run()
      expect(report.lost.sort((a, b) => a.job.localeCompare(b.job))).toEqual([
        { job: "det", requeued: true },
        { job: "det0", requeued: false },
      ])
      expect(await h.store.getJob("det")).toMatchObject({
        status: "queued",
        workerId: null,
        attempts: 1,
        excluded: ["w1"],
      })
      expect((await h.store.events("det")).at(-1)?.reason).toMatch(/^worker w1 stopped responding .*; retry 1 of 1$/)
      expect(await h.status("det0")).toBe("failed")
      expect(h.kicks).toBe(1)
    })

    test("a running job whose cancel was requested and whose heartbeat is stale ends canceled", async () => {
      await h.worker("w1")
      await h.job("c", { retries: 2 })
      await h.store.requestCancel("c", "canceled by alice", T0 + 5)
      h.clock = LATER
      await h.alive(h.clock, { w1: [] })

      const report = await h.run()
      expect(report.canceled).toEqual(["c"])
      expect(report.lost).toEqual([])
      const job = (await h.store.getJob("c"))!
      expect(job).toMatchObject({ status: "canceled", finishedAt: LATER })
      expect(job.error).toStartWith("canceled by alice; worker w1 stopped responding")
      expect((await h.store.events("c")).map((e) => e.status)).toEqual([
        "queued",
        "assigned",
        "running",
        "canceling",
        "canceled",
      ])
      expect(h.kicks).toBe(0)
    })
  })

  describe("assignments", () => {
    test("a job assigned for longer than the timeout is re-queued with its worker excluded and barred", async () => {
      await h.worker("w1")
      await h.worker("w2")
      await h.job("old", {}, "w1", false, T0) // assigned at T0+1
      await h.job("new", {}, "w1", false, LATER - T.assignment - 1) // assigned exactly at the cutoff
      h.clock = LATER
      await h.alive(h.clock, { w1: ["old", "new"], w2: [] })
      const woke = h.hub.wait(topic.worker("w1"), 60_000).then(() => true)

      const report = await h.run()
      expect(report.unassigned).toEqual(["old"])
      expect(await woke).toBe(true)
      expect(await h.store.getJob("old")).toMatchObject({
        status: "queued",
        workerId: null,
        excluded: ["w1"],
        barred: ["w1"],
        epoch: 1,
      })
      expect((await h.store.events("old")).at(-1)?.reason).toContain("worker w1 did not start the job")
      expect(await h.store.getJob("new")).toMatchObject({ status: "assigned", workerId: "w1" })
      expect(h.kicks).toBe(1)
    })
  })

  describe("queued jobs past the pending timeout", () => {
    test("fail only when no online worker has the binary and every path", async () => {
      await h.worker("ff", { binaries: ["ffmpeg"], paths: ["Movies"], maxJobs: 1 })
      await h.job("busy", {}, "ff") // ff is full from now on
      await h.store.upsertWorker("new-probe", reg({ binaries: ["ffprobe"] }), "t", T0) // registering: does not count
      await h.worker("off-all", { paths: ["Movies", "TV"] })
      await h.store.setWorkerStatus("off-all", "offline", T0 + 1) // offline: does not count

      await h.job("capable-busy", { paths: ["Movies"] }, null) // ff could run it once free
      await h.job("no-binary", { binary: "ffprobe", pathTokens: true }, null)
      await h.job("no-path", { paths: ["Movies", "TV"] }, null)
      // ff writes no path tokens (an older worker): a caller that decodes them must not get it.
      await h.job("no-tokens", { paths: ["Movies"], pathTokens: true }, null)
      await h.job("young", { binary: "ffprobe" }, null, false, LATER - T.pending) // queued exactly at the cutoff
      h.clock = LATER
      await h.alive(h.clock, { ff: ["busy"], "new-probe": [] })

      const report = await h.run()
      // A janitor's first pass judges every queued job, young ones too (see the next tests).
      expect(report.failedPending.sort()).toEqual(["no-binary", "no-path", "no-tokens", "young"])
      expect(await h.status("capable-busy")).toBe("queued")
      const noPath = (await h.store.getJob("no-path"))!
      expect(noPath).toMatchObject({ status: "failed", finishedAt: LATER })
      expect(noPath.error).toContain("no online worker can run it")
      expect(noPath.error).toContain("ffmpeg, $Movies, $TV")
      // Path tokens are named only when they are what is missing.
      expect((await h.store.getJob("no-binary"))?.error).toMatch(/needs ffprobe\)$/)
      expect((await h.store.getJob("no-tokens"))?.error).toContain("needs ffmpeg, $Movies, path tokens")
      expect(h.kicks).toBe(0)
    })

    test("a young job no worker can run waits for its timeout while the workers stay the same, and fails at the pass after the last capable one leaves", async () => {
      await h.worker("ff", { binaries: ["ffmpeg"] })
      await h.worker("probe", { binaries: ["ffprobe"] })
      const janitor = h.janitor()
      h.clock = LATER
      await h.alive(h.clock, { ff: [], probe: [] })
      expect((await janitor.run()).failedPending).toEqual([])
      // Queued after that pass (as if the submission let it through), needing what no worker has.
      await h.job("nv", { needs: { ...NO_NEEDS, labels: { gpu: "nvidia" } } }, null, false, LATER)
      await h.job("fp", { binary: "ffprobe" }, null, false, LATER)
      h.clock = LATER + 1
      await h.alive(h.clock, { ff: [], probe: [] })
      expect((await janitor.run()).failedPending).toEqual([])
      expect(await h.status("nv")).toBe("queued")
      // The only ffprobe worker leaves: the next pass fails the ffprobe job at once, naming what it needs.
      await h.store.setWorkerStatus("probe", "offline", LATER + 2)
      h.clock = LATER + 3
      await h.alive(h.clock, { ff: [] })
      expect((await janitor.run()).failedPending.sort()).toEqual(["fp", "nv"])
      expect((await h.store.getJob("fp"))?.error).toBe("no online worker can run it (needs ffprobe)")
      expect((await h.store.getJob("nv"))?.error).toBe("no online worker has label gpu=nvidia")
    })

    test("after a change among the serving workers, the whole queue is judged, page by page", async () => {
      await h.worker("ff", { binaries: ["ffmpeg"] })
      for (let i = 0; i < 450; i++)
        await h.job(`p${String(i).padStart(3, "0")}`, { binary: i % 2 ? "ffprobe" : "ffmpeg" }, null, false, LATER)
      h.clock = LATER + 1
      await h.alive(h.clock, { ff: [] })
      const report = await h.run()
      expect(report.failedPending).toHaveLength(225)
      expect((await h.store.queuedJobs(1000)).every((j) => j.binary === "ffmpeg")).toBe(true)
    })

    test("a queued probe fails after probe_pending_timeout when its able workers went quiet, not while they are only busy", async () => {
      await h.worker("w1", { binaries: ["ffmpeg", "ffprobe"] })
      const janitor = h.janitor(T, T0, h.store, { pollGoneMs: 2000 })
      h.clock = LATER
      // Heard from before its poll closed (a close is never recorded over anything heard later).
      await h.alive(LATER - 3000, { w1: [] })
      await janitor.run()
      await h.job("p-old", { binary: "ffprobe", lane: "probe" }, null, false, LATER - T.probePending - 1)
      await h.job("p-new", { binary: "ffprobe", lane: "probe" }, null, false, LATER - T.probePending + 1)
      await h.job("t-old", { binary: "ffprobe" }, null, false, LATER - T.probePending - 1)
      // w1 polls (it is only busy): the old probe waits for a slot.
      expect((await janitor.run()).failedPending).toEqual([])
      // w1's poll closed 2 s ago and it has not polled since (killed): the old probe fails, the new one waits.
      await h.store.touchWorker("w1", LATER - 2000, "closed")
      await h.alive(h.clock, { w1: [] })
      expect((await janitor.run()).failedPending).toEqual(["p-old"])
      expect((await h.store.getJob("p-old"))?.error).toBe(
        "no online worker took the probe within 5 s (janitor.probe_pending_timeout): every worker that could run it stopped polling (w1)",
      )
      // The fallback's no_capable_worker marker: a client may run it locally.
      expect(noCapableWorker((await h.store.getJob("p-old"))?.error)).toBe(true)
      expect(await h.status("p-new")).toBe("queued")
      expect(await h.status("t-old")).toBe("queued")
    })

    test("watchProbe fails the one probe at its deadline, between passes", async () => {
      const fast = { ...T, probePending: 20 }
      const real = createJanitor({
        store: h.store,
        log: createLogger({ level: "error" }),
        now: () => Date.now(),
        timings: fast,
        startedAt: T0,
      })
      await h.store.createJob(newJob("p", { binary: "ffprobe", lane: "probe" }), Date.now())
      real.watchProbe("p")
      await waitFor(async () => (await h.status("p")) === "failed", { what: "the probe to fail at its deadline" })
      expect((await h.store.getJob("p"))?.error).toMatch(
        /^no online worker took the probe within 0.02 s \(janitor.probe_pending_timeout\): no worker is online$/,
      )
      await real.stop()
    })

    test("a worker counts only while the scheduler would give it work: the same rule and liveness", async () => {
      await h.worker("w1")
      await h.job("q", {}, null)
      h.clock = LATER
      // Heard from 5 ms ago: far inside the reaping threshold, but silent for the scheduler's 1 ms.
      await h.alive(LATER - 5, { w1: [] })
      const quick = createJanitor({
        store: h.store,
        log: createLogger({ level: "error" }),
        now: () => h.clock,
        timings: T,
        startedAt: T0,
        staleMs: 1,
      })
      expect((await h.run()).failedPending).toEqual([])
      expect((await quick.run()).failedPending).toEqual(["q"])
      expect((await h.store.getWorker("w1"))?.status).toBe("online")
    })

    test("a capable worker that stopped polling is reaped first, so the job fails in the same pass", async () => {
      await h.worker("w1") // last heard from at T0
      await h.job("q", {}, null)
      h.clock = LATER
      const report = await h.run()
      expect(report.workersOffline).toEqual(["w1"])
      expect(report.failedPending).toEqual(["q"])
    })

    test("the wait restarts when a job is re-queued", async () => {
      await h.worker("w1")
      await h.job("back", { retries: 1 })
      // Lost at LATER-1 and re-queued; no worker can run it any more.
      await h.store.loseJob("back", 1, "lost", LATER - 1)
      await h.store.setWorkerStatus("w1", "offline", LATER - 1)
      h.clock = LATER
      expect((await h.run()).failedPending).toEqual([])
      h.clock = LATER - 1 + T.pending + 1
      expect((await h.run()).failedPending).toEqual(["back"])
    })
  })

  describe("attached jobs whose caller is gone", () => {
    test("a queued one is canceled and a running one is asked to cancel; a present caller or a detached job is left alone", async () => {
      await h.worker("w1")
      await h.job("q", { attached: true }, null)
      await h.job("asg", { attached: true }, "w1", false, LATER - 5) // fresh assignment, caller gone
      await h.store.touchClient("asg", T0)
      await h.job("r", { attached: true })
      await h.job("here", { attached: true })
      await h.job("det", { attached: false })
      h.clock = LATER
      await h.alive(h.clock, { w1: ["asg", "r", "here", "det"] }, ["here"])
      const wokeInput = h.hub.wait(topic.input("r"), 60_000).then(() => true)

      const report = await h.run()
      expect(report.abandoned.sort()).toEqual(["asg", "q", "r"])
      expect(await wokeInput).toBe(true)
      const q = (await h.store.getJob("q"))!
      expect(q).toMatchObject({ status: "canceled", finishedAt: LATER })
      expect(q.error).toContain("the caller went away: it stopped following the job")
      expect(await h.status("asg")).toBe("canceled")
      const r = (await h.store.getJob("r"))!
      expect(r).toMatchObject({ status: "running", cancelRequestedAt: LATER, finishedAt: null })
      expect(r.error).toContain("the caller went away: it stopped following the job")
      expect((await h.store.events("r")).at(-1)?.status).toBe("canceling")
      expect(await h.status("here")).toBe("running")
      expect(await h.status("det")).toBe("running")

      // The next pass does not ask again; the worker's exit then ends it canceled.
      h.clock = LATER + 1
      await h.alive(h.clock, { w1: ["r"] })
      expect((await h.run()).abandoned).toEqual([])
      expect(await h.store.appendOutput("r", "w1", 1, [], { code: 255, signal: null }, LATER + 2)).toMatchObject({
        ok: true,
        job: { status: "canceled" },
      })
    })

    test("a job asked to cancel whose worker then goes silent ends canceled on a later pass", async () => {
      await h.worker("w1")
      await h.job("r", { attached: true })
      h.clock = LATER
      await h.alive(h.clock, { w1: ["r"] })
      expect((await h.run()).abandoned).toEqual(["r"])

      h.clock = LATER + T.jobStale + 1
      await h.alive(h.clock, { w1: [] })
      const report = await h.run()
      expect(report.canceled).toEqual(["r"])
      expect(await h.status("r")).toBe("canceled")
      expect((await h.store.events("r")).map((e) => e.status)).toEqual([
        "queued",
        "assigned",
        "running",
        "canceling",
        "canceled",
      ])
    })
  })

  describe("workers", () => {
    test("workers not heard from for the threshold go offline, once, whatever their state", async () => {
      await h.worker("on")
      await h.worker("drain")
      await h.store.setWorkerStatus("drain", "draining", T0)
      await h.store.upsertWorker("reg", reg(), "t", T0)
      await h.worker("off")
      await h.store.setWorkerStatus("off", "offline", T0)
      await h.worker("fresh", {}, LATER - T.workerStale)
      h.clock = LATER

      const report = await h.run()
      expect(report.workersOffline.sort()).toEqual(["drain", "on", "reg"])
      expect(Object.fromEntries((await h.store.listWorkers()).map((w) => [w.id, w.status]))).toEqual({
        drain: "offline",
        fresh: "online",
        off: "offline",
        on: "offline",
        reg: "offline",
      })
      expect((await h.run()).workersOffline).toEqual([])
    })
  })

  describe("retention", () => {
    const RETENTION = 3_600_000
    const t = { ...T, retention: RETENTION }

    test("prunes jobs finished and workers offline before the retention, and keeps the rest", async () => {
      await h.worker("w1")
      await h.worker("old-off")
      await h.store.setWorkerStatus("old-off", "offline", T0)
      await h.job("old")
      await h.store.appendOutput(
        "old",
        "w1",
        1,
        [{ seq: 1, stream: "stdout", data: new Uint8Array([1]) }],
        { code: 0, signal: null },
        T0 + 10,
      )
      await h.job("recent")
      await h.store.appendOutput("recent", "w1", 1, [], { code: 0, signal: null }, T0 + 20)
      await h.job("queued", {}, null)
      h.clock = T0 + RETENTION + 15
      await h.alive(h.clock, { w1: [] })
      // The queued job would fail as pending; that is not what this test looks at.
      const report = await h.run({ ...t, pending: 10 * RETENTION })
      expect(report.pruned).toEqual({ jobs: 1, workers: 1 })
      expect(await h.store.getJob("old")).toBeUndefined()
      expect(await h.store.events("old")).toEqual([])
      expect(await h.store.readOutput("old", 0, 10)).toEqual([])
      expect(await h.status("recent")).toBe("completed")
      expect(await h.status("queued")).toBe("queued")
      expect((await h.store.listWorkers()).map((w) => w.id)).toEqual(["w1"])
    })

    test("a retention of zero keeps everything", async () => {
      await h.job("old")
      await h.store.failJob("old", "x", T0 + 1)
      // Long past the default retention.
      h.clock = T0 + 2 * T.retention
      expect((await h.run({ ...T, retention: 0 })).pruned).toEqual({ jobs: 0, workers: 0 })
      expect(await h.status("old")).toBe("failed")
    })
  })

  test("passes of one janitor never overlap: a run during a run shares its result", async () => {
    await h.worker("w1")
    await h.job("j", { attached: true })
    h.clock = LATER
    const janitor = h.janitor()
    const [a, b] = await Promise.all([janitor.run(), janitor.run()])
    expect(a).toBe(b)
    expect(a.lost).toEqual([{ job: "j", requeued: false }])
    const c = await janitor.run()
    expect(c).not.toBe(a)
    expect(c.lost).toEqual([])
  })

  test("start() runs passes on its interval until stop()", async () => {
    await h.worker("a")
    h.clock = LATER
    const janitor = h.janitor({ ...T, interval: 50, jitter: 0 })
    janitor.start()
    try {
      for (let i = 0; i < 100 && (await h.store.getWorker("a"))?.status !== "offline"; i++) await Bun.sleep(20)
      expect((await h.store.getWorker("a"))?.status).toBe("offline")
    } finally {
      await janitor.stop()
    }
    // Stopped: a worker that goes stale now stays as it is.
    await h.worker("b", {}, T0)
    await Bun.sleep(200)
    expect((await h.store.getWorker("b"))?.status).toBe("online")
  })

  test("does not fail a pending job that was assigned after the janitor looked at it", async () => {
    await h.job("q", { binary: "ffprobe" }, null)
    const store = h.store
    // Another coordinator, sharing the database, acts between the janitor's query and its transition.
    const racing: Store = {
      ...store,
      async queuedSince(before) {
        const jobs = await store.queuedSince(before)
        await store.upsertWorker("probe", reg({ binaries: ["ffprobe"] }), "t", h.clock)
        await store.verifyWorker("probe", "t", h.clock)
        await store.assign("q", "probe", h.clock)
        return jobs
      },
    }
    h.clock = LATER
    await h.janitor(T, T0, racing).run()
    expect(await store.getJob("q")).toMatchObject({ status: "assigned", workerId: "probe" })
  })
})

describe("two janitors over two store instances on one file", () => {
  /**
   * One coordinator's janitor here and another's in a second thread (its own store on the same file, as
   * another process would have), both running one pass over the same overdue jobs at the same instant.
   */
  async function race(store: Store, peer: Peer): Promise<void> {
    const h = new Harness()
    h.store = store
    const N = 12
    const ids = (kind: string) => Array.from({ length: N }, (_, i) => `${kind}-${String(i).padStart(2, "0")}`)
    await h.worker("live")
    // Another live worker: a timed-out assignment is barred from "live" but can still run elsewhere.
    await h.worker("live2")
    for (const id of ids("stale")) await h.worker(id)
    // Each job qualifies for exactly one action.
    for (const id of ids("lost-att")) await h.job(id, { attached: true }, "live")
    for (const id of ids("lost-det")) await h.job(id, { retries: 1 }, "live")
    for (const id of ids("cancel")) {
      await h.job(id, { attached: true }, "live")
      await store.requestCancel(id, "canceled by alice", T0 + 3)
    }
    for (const id of ids("asg")) await h.job(id, {}, "live", false)
    for (const id of ids("aband-q")) await h.job(id, { attached: true }, null)
    for (const id of ids("aband-r")) await h.job(id, { attached: true }, "live")
    // live is alive, holds only the abandoned running jobs; callers of the lost and canceling jobs are present.
    await h.alive(LATER, { live: ids("aband-r"), live2: [] }, [...ids("lost-att"), ...ids("cancel")])

    const expected: Record<string, string> = {}
    for (const [kind, status] of Object.entries({
      "lost-att": "failed",
      "lost-det": "queued",
      cancel: "canceled",
      asg: "queued",
      pend: "failed",
      "aband-q": "canceled",
      "aband-r": "canceling",
    }))
      for (const id of ids(kind)) expected[id] = status
    // A warm-up pass on each side, before anything is overdue: it changes nothing, but gets both threads'
    // code paths going so that the real passes overlap.
    h.clock = T0
    const warm = await peer.janitorRace({ now: T0, startedAt: T0 - GRACE, timings: T }, () =>
      h.janitor(T, T0 - GRACE).run(),
    )
    for (const r of [warm.peer, warm.local])
      expect(r).toEqual({
        suppressed: false,
        workersOffline: [],
        lost: [],
        canceled: [],
        unassigned: [],
        failedPending: [],
        abandoned: [],
        pruned: { jobs: 0, workers: 0 },
      })
    // Queued after the warm-up judged every queued job against the workers: these fail only once the
    // workers change (the stale ones are reaped) or their pending timeout passes.
    for (const id of ids("pend")) await h.job(id, { binary: "ffprobe" }, null)

    const before = new Map<string, JobEvent[]>()
    for (const id of Object.keys(expected)) before.set(id, await store.events(id))

    h.clock = LATER
    const mine = h.janitor()
    const { peer: theirs, local: ours } = await peer.janitorRace({ now: LATER, startedAt: T0, timings: T }, () =>
      mine.run(),
    )

    for (const [id, status] of Object.entries(expected)) {
      const events = await store.events(id)
      const added = events.slice(before.get(id)!.length)
      expect({ id, added: added.map((e) => e.status) }).toEqual({ id, added: [status] })
    }
    const reported = (r: JanitorReport) => [
      ...r.lost.map((l) => l.job),
      ...r.canceled,
      ...r.unassigned,
      ...r.failedPending,
      ...r.abandoned,
    ]
    expect([...reported(ours), ...reported(theirs)].sort()).toEqual(Object.keys(expected).sort())
    expect([...ours.workersOffline, ...theirs.workersOffline].sort()).toEqual(ids("stale"))
    expect((await store.getWorker("live"))?.status).toBe("online")
  }

  // Which side wins each job depends on timing; a few rounds make overlapping passes all but certain.
  test.each([1, 2, 3])("running at once, they make exactly one transition per job (round %i)", async () => {
    const path = tempPath()
    const store = await createStore({ database: { engine: "sqlite", path } })
    const peer = await openPeer(path)
    try {
      await race(store, peer)
    } finally {
      await peer.close()
      await store.close()
    }
  })
})
