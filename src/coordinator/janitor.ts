import type { CoordinatorConfig } from "../shared/config/server-schema.ts"
import type { Logger } from "../shared/log.ts"
import type { Job, Worker } from "../shared/protocol/schemas.ts"
import type { Store } from "../store/index.ts"
import type { QueueCursor } from "../store/types.ts"
import { CALLER_GONE } from "./jobs.ts"
import { NO_CAPABLE_WORKER } from "../shared/protocol/fallback.ts"
import { eligible, serving, unrunnable, type Liveness, lapsedPin } from "./scheduler.ts"

/** Thresholds in milliseconds, derived from the config (see `timings`). */
export interface Timings {
  interval: number
  jitter: number
  /** A worker not heard from for this long is offline. */
  workerStale: number
  /** A running job without a worker heartbeat, or an attached job without its caller, for this long is lost. */
  jobStale: number
  assignment: number
  pending: number
  /** A queued probe that no worker took for this long fails (probe_pending_timeout). */
  probePending: number
  retention: number
}

export function timings(c: CoordinatorConfig): Timings {
  const s = 1000
  return {
    interval: c.janitor.interval * s,
    jitter: Math.min(c.janitor.jitter, c.janitor.interval / 2) * s,
    // A live worker is heard from at least every heartbeat (its re-registration waits for the poll in
    // flight), so a registration interval shorter than the heartbeat must not make it look dead.
    workerStale: Math.max(c.registration_interval, c.heartbeat_interval) * c.janitor.worker_threshold_factor * s,
    jobStale: c.heartbeat_interval * c.janitor.job_heartbeat_threshold_factor * s,
    assignment: c.janitor.job_assignment_timeout * s,
    pending: c.janitor.job_pending_timeout * s,
    probePending: c.janitor.probe_pending_timeout * s,
    retention: c.janitor.retention_hours * 3600 * s,
  }
}

export interface JanitorReport {
  /** True while reaping is suppressed after start-up. */
  suppressed: boolean
  workersOffline: string[]
  lost: { job: string; requeued: boolean }[]
  canceled: string[]
  unassigned: string[]
  failedPending: string[]
  abandoned: string[]
  pruned: { jobs: number; workers: number }
}

export interface Janitor {
  /** One full pass now (also what `dffmpeg admin janitor run` triggers). Passes never overlap. */
  run(): Promise<JanitorReport>
  /**
   * A probe was just queued: if it is still queued `probe_pending_timeout` from now, it fails then, rather
   * than at the pass after (passes are `interval` apart). The passes still catch it if this process stops.
   */
  watchProbe(id: string): void
  start(): void
  stop(): Promise<void>
}

const secs = (ms: number) => `${+(ms / 1000).toFixed(2)} s`
/** Queued jobs judged per read after the serving workers change. */
const JUDGE_PAGE = 200

/** What the serving workers can run, as one string: a change means queued jobs must be judged again. */
function servingShape(workers: Worker[], live: Liveness): string {
  return JSON.stringify(
    workers
      .filter((w) => serving(w, live))
      .map((w) => [w.id, w.binaries, w.paths, w.capabilities.pathTokens === true, w.tools, w.labels]),
  )
}

/**
 * Why a probe could not be placed within probe_pending_timeout: no worker online, none able to run it,
 * or every able one gone quiet (its poll connection closed: killed, cut off). Undefined when an able
 * worker is there and only its probe slots are busy: the probe waits for one, as a library scan's burst
 * of probes must.
 */
function unplacedProbe(
  job: Job,
  workers: Worker[],
  live: Liveness,
  limitMs: number,
  pollGoneMs = Infinity,
): string | undefined {
  // The fallback's marker first (a client may run the probe locally): each reason below is that no online
  // worker could take it.
  const head = `${NO_CAPABLE_WORKER} took the probe within ${secs(limitMs)} (janitor.probe_pending_timeout)`
  if (!workers.some((w) => serving(w, live))) return `${head}: no worker is online`
  const why = unrunnable(job, workers, live)
  if (why) return `${head}: ${why}`
  // Pinned to a worker whose poll is gone: the pin has lapsed, any able worker may take it (pinNow).
  const free = lapsedPin(
    job,
    workers.filter((w) => serving(w, { ...live, pollGoneMs })),
  )
  const able = workers.filter((w) => eligible(free, w, live))
  if (able.some((w) => serving(w, { ...live, pollGoneMs }))) return undefined
  return `${head}: every worker that could run it stopped polling (${able.map((w) => w.id).join(", ")})`
}

/**
 * Finds what stopped moving and moves it, so that every accepted job reaches a terminal state.
 * Every action is a guarded transition in the store, so several janitors (other coordinators, or
 * `admin janitor run`) can run at once without double transitions; whom each one wakes (streams,
 * polls, the scheduler) follows from the store's change hook (coordinator/wakeups.ts). Liveness only compares times
 * written by this coordinator's clock (`now`), never a worker's or a caller's. For one threshold after
 * start-up nothing is reaped: workers and callers need that long to find a restarted coordinator.
 */
export function createJanitor(deps: {
  store: Store
  log: Logger
  now: () => number
  timings: Timings
  startedAt: number
  /** How recently a worker must have been heard from to count as able to run a job (default: `timings.workerStale`); the scheduler's. */
  staleMs?: number
  /** The scheduler's `poll_gone_seconds` (ms): a probe whose every able worker has gone quiet this long fails at its deadline. */
  pollGoneMs?: number
  /**
   * Asks the scheduler for a pass: after the serving workers changed without a store change (a worker's
   * poll gone past poll_gone_seconds), a job pinned to it can now go elsewhere (scheduler.ts `pinNow`).
   */
  kick?: () => void
}): Janitor {
  const { store, log, now } = deps
  const t = deps.timings
  const grace = Math.max(t.workerStale, t.jobStale, t.assignment)
  let running: Promise<JanitorReport> | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  let lastShape: string | undefined
  let lastPlacing = ""
  const probeTimers = new Set<ReturnType<typeof setTimeout>>()

  const pass = async (): Promise<JanitorReport> => {
    const at = now()
    const report: JanitorReport = {
      suppressed: at - deps.startedAt < grace,
      workersOffline: [],
      lost: [],
      canceled: [],
      unassigned: [],
      failedPending: [],
      abandoned: [],
      pruned: { jobs: 0, workers: 0 },
    }
    if (!report.suppressed) {
      report.workersOffline = await store.reapWorkers(at - t.workerStale)
      for (const w of report.workersOffline)
        log.warn("worker offline", { worker: w, silent_for: `> ${secs(t.workerStale)}` })

      for (const job of await store.runningWithoutHeartbeat(at - t.jobStale)) {
        const why = `worker ${job.workerId} stopped responding while running the job (no heartbeat for ${secs(at - (job.heartbeatAt ?? at))})`
        if (job.cancelRequestedAt !== null) {
          const done = await store.forceCanceled(job.id, job.epoch, `${job.error ?? "canceled"}; ${why}`, now())
          if (done) report.canceled.push(job.id)
          continue
        }
        const res = await store.loseJob(job.id, job.epoch, why, now())
        if (!res) continue
        report.lost.push({ job: job.id, requeued: res.requeued })
        log.warn(res.requeued ? "job re-queued: its worker was lost" : "job failed: its worker was lost", {
          job: job.id,
          worker: job.workerId,
          epoch: job.epoch,
        })
      }

      for (const job of await store.assignedSince(at - t.assignment)) {
        // Barred, not only excluded: a worker that did not start it in time (killed, cut off) must
        // never be given it again, even when it is the only one left (the job then fails as unrunnable).
        const done = await store.unassign(
          job.id,
          job.epoch,
          `worker ${job.workerId} did not start the job within ${secs(t.assignment)}`,
          now(),
          true,
        )
        if (!done) continue
        report.unassigned.push(job.id)
        log.warn("assignment timed out; job re-queued", { job: job.id, worker: job.workerId })
      }

      const workers = await store.listWorkers()
      const live = { now: at, staleMs: deps.staleMs ?? t.workerStale }
      const failQueued = async (job: Job, reason: string, what: string) => {
        // Guarded on the epoch read: a job assigned meanwhile (by another coordinator) is left alone.
        const done = await store.failJob(job.id, reason, now(), job.epoch)
        if (!done) return
        report.failedPending.push(job.id)
        log.warn(what, { job: job.id, reason })
      }
      // After a change to the serving workers (one left, one came with other tools), every queued job is
      // judged again: one that none of them could ever run fails now, not after job_pending_timeout. With
      // no worker serving at all, jobs wait for one (a restart) until their timeout.
      const shape = servingShape(workers, live)
      const judged = new Set<string>()
      if (shape !== lastShape && workers.some((w) => serving(w, live))) {
        // In pages of the queue's own order, read without their arguments: bounded whatever its length.
        let after: QueueCursor | undefined
        for (;;) {
          const page = await store.queuedJobs(JUDGE_PAGE, after)
          for (const job of page) {
            judged.add(job.id)
            const why = unrunnable(job, workers, live)
            if (why) await failQueued(job, why, "job failed: no worker can run it")
          }
          if (page.length < JUDGE_PAGE) break
          after = { key: page[page.length - 1].queueKey, id: page[page.length - 1].id }
        }
      }
      // Who may be given work now, poll connections included: a change frees jobs pinned to a gone worker.
      const placing = workers
        .filter((w) => serving(w, { ...live, pollGoneMs: deps.pollGoneMs }))
        .map((w) => w.id)
        .join(",")
      if (shape !== lastShape || placing !== lastPlacing) deps.kick?.()
      lastShape = shape
      lastPlacing = placing
      for (const job of await store.queuedSince(at - t.pending)) {
        if (judged.has(job.id)) continue
        const why = unrunnable(job, workers, live)
        if (why) await failQueued(job, `${why}; waited ${secs(at - job.updatedAt)}`, "job failed: no worker can run it")
      }
      for (const job of await store.queuedSince(at - t.probePending, "probe")) {
        if (judged.has(job.id) || report.failedPending.includes(job.id)) continue
        const why = unplacedProbe(job, workers, live, t.probePending, deps.pollGoneMs)
        if (why) await failQueued(job, why, "probe failed: not placed in time")
      }

      for (const job of await store.abandoned(at - t.jobStale)) {
        const done = await store.requestCancel(
          job.id,
          `${CALLER_GONE}: it stopped following the job (not seen for ${secs(at - (job.clientSeenAt ?? at))})`,
          now(),
        )
        if (!done) continue
        report.abandoned.push(job.id)
        log.warn("job canceled: its caller is gone", { job: job.id, status: done.status })
      }
    }
    if (t.retention > 0) {
      report.pruned = await store.prune(at - t.retention)
      if (report.pruned.jobs || report.pruned.workers) log.info("pruned old records", report.pruned)
    }
    return report
  }

  const run = () =>
    (running ??= pass().finally(() => {
      running = undefined
    }))

  const schedule = () => {
    if (stopped) return
    const delay = Math.max(50, t.interval + (Math.random() * 2 - 1) * t.jitter)
    timer = setTimeout(async () => {
      try {
        await run()
      } catch (err) {
        log.error("janitor pass failed", err as Error)
      }
      schedule()
    }, delay)
  }

  /** The one probe's deadline: failed if still queued (at the epoch it was queued with). */
  const probeDue = async (id: string) => {
    const job = await store.getJobSummary(id, { argsChars: 2 })
    if (!job || job.status !== "queued") return
    const at = now()
    if (at - job.updatedAt < t.probePending) return
    const live = { now: at, staleMs: deps.staleMs ?? t.workerStale }
    const reason = unplacedProbe(job, await store.listWorkers(), live, t.probePending, deps.pollGoneMs)
    // An able worker is there, its probe slots busy (or its pin just lapsed): the probe waits for a pass.
    if (!reason) return deps.kick?.()
    const done = await store.failJob(job.id, reason, now(), job.epoch)
    if (done) log.warn("probe failed: not placed in time", { job: job.id, reason })
  }

  return {
    run,
    watchProbe(id) {
      if (stopped) return
      const timer = setTimeout(() => {
        probeTimers.delete(timer)
        probeDue(id).catch((err) => log.error("probe deadline check failed", { job: id }, err as Error))
      }, t.probePending + 10)
      probeTimers.add(timer)
    },
    start: schedule,
    async stop() {
      stopped = true
      clearTimeout(timer)
      for (const p of probeTimers) clearTimeout(p)
      probeTimers.clear()
      await running?.catch(() => {})
    },
  }
}
