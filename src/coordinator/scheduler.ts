import type { Job, Worker } from "../shared/protocol/schemas.ts"
import type { Logger } from "../shared/log.ts"
import type { Store } from "../store/index.ts"

export interface Candidate {
  worker: Worker
  load: number
}

/**
 * Pure choice: the eligible worker for `job` with the lowest relative load. Eligible means it is
 * online (not registering, draining or offline), has the binary, advertises every path variable the
 * job needs and has a free slot. A worker that lost or gave up this job before is passed over while
 * another capable worker exists, even a busy one (the job then waits for it).
 */
export function pick(
  job: Pick<Job, "binary" | "paths"> & { excluded?: string[] },
  candidates: Candidate[],
): Candidate | undefined {
  const able = candidates.filter(
    (c) =>
      (c.worker.status ?? "online") === "online" &&
      c.worker.binaries.includes(job.binary) &&
      job.paths.every((p) => c.worker.paths.includes(p)),
  )
  const excluded = job.excluded ?? []
  const avoid = excluded.length > 0 && able.some((c) => !excluded.includes(c.worker.id))
  let best: Candidate | undefined
  for (const c of able) {
    if (c.load >= c.worker.maxJobs) continue
    if (avoid && excluded.includes(c.worker.id)) continue
    if (!best) {
      best = c
      continue
    }
    const a = c.load / c.worker.maxJobs
    const b = best.load / best.worker.maxJobs
    if (a < b || (a === b && (c.load < best.load || (c.load === best.load && c.worker.id < best.worker.id)))) best = c
  }
  return best
}

export interface Scheduler {
  /** Asks for a scheduling pass soon; passes never overlap and requests made during one cause another. */
  kick(): void
  /** Resolves when no pass is running or pending (tests, shutdown). */
  idle(): Promise<void>
}

/**
 * Event-driven: the store's changes that could make an assignment possible (a job queued, a slot freed,
 * a worker registered or polling) call `kick()` (coordinator/wakeups.ts), and an assignment wakes its
 * worker's poll the same way; there is no timer in the hot path. Every assignment is a guarded UPDATE (queued → assigned), so a racing pass, or another
 * coordinator sharing the database, can never assign a job twice.
 */
export function createScheduler(deps: { store: Store; log: Logger; now: () => number; staleMs: number }): Scheduler {
  let running: Promise<void> | undefined
  let again = false

  const PAGE = 200
  const pass = async () => {
    const now = deps.now()
    const workers = (await deps.store.listWorkers()).filter(
      (w) => w.status === "online" && now - w.lastSeen < deps.staleMs,
    )
    if (!workers.length) return
    const loads = await deps.store.workerLoads()
    const candidates = workers.map((worker) => ({ worker, load: loads.get(worker.id) ?? 0 }))
    // Page through the queue oldest first, so that jobs no worker can run never starve those behind
    // them; stop as soon as every slot is taken.
    let after: string | undefined
    while (candidates.some((c) => c.load < c.worker.maxJobs)) {
      const queued = await deps.store.queuedJobs(PAGE, after)
      for (const job of queued) {
        const choice = pick(job, candidates)
        if (!choice) continue
        const done = await deps.store.assign(job.id, choice.worker.id, deps.now())
        if (!done) continue
        choice.load++
        deps.log.info("job assigned", { job: job.id, worker: choice.worker.id, epoch: done.epoch })
      }
      if (queued.length < PAGE) return
      after = queued[queued.length - 1].id
    }
  }

  const run = async () => {
    do {
      again = false
      try {
        await pass()
      } catch (err) {
        deps.log.error("scheduling pass failed", err as Error)
      }
    } while (again)
    running = undefined
  }

  return {
    kick() {
      if (running) {
        again = true
        return
      }
      running = run()
    },
    async idle() {
      while (running) await running
    },
  }
}
