import type { Job, Worker } from "../shared/protocol/schemas.ts"
import type { Logger } from "../shared/log.ts"
import type { Store } from "../store/index.ts"

export interface Candidate {
  worker: Worker
  load: number
}

/** When a worker is judged: `now`, and how recently it must have been heard from to be given work. */
export interface Liveness {
  now: number
  staleMs: number
}

/** Online (not registering, draining or offline) and, when `live` is given, heard from less than `staleMs` ago. */
export function serving(worker: Worker, live?: Liveness): boolean {
  return (worker.status ?? "online") === "online" && (!live || live.now - worker.lastSeen < live.staleMs)
}

/**
 * The one rule for whether `worker` may be given `job`, its load aside: it is serving (above), has the
 * binary and advertises every path variable the job needs. The scheduler places jobs by it, and the
 * janitor fails a queued job as one no worker can run by the same rule and the same liveness, so it
 * fails exactly the jobs the scheduler would never place. Liveness belongs in the rule: a worker that
 * stopped polling gets nothing new even before the janitor reaps it (the janitor did not check it; it
 * agreed in practice only because it reaps silent workers first). Without `live` the workers are
 * taken as already known to be live (`pick` over a pass's candidates).
 */
export function eligible(job: Eligible, worker: Worker, live?: Liveness): boolean {
  return (
    serving(worker, live) &&
    (!job.pin || job.pin === worker.id) &&
    worker.binaries.includes(job.binary) &&
    job.paths.every((p) => worker.paths.includes(p)) &&
    (!job.pathTokens || writesPathTokens(worker)) &&
    missing(job, worker).length === 0
  )
}

/** What `eligible` reads of a job. */
export type Eligible = Pick<Job, "binary" | "paths"> & Partial<Pick<Job, "pathTokens" | "needs" | "pin">>

/**
 * The job's needs this worker's tools or labels lack, each as `kind name` (`encoder h264_nvenc`,
 * `label gpu=nvidia`): empty when it has them all. A worker that registered no tools for the job's
 * binary (one from before issue 12) is taken to have whatever the job needs, as before; labels are
 * always checked.
 */
export function missing(job: Pick<Eligible, "binary" | "needs">, worker: Pick<Worker, "tools" | "labels">): string[] {
  const needs = job.needs
  if (!needs) return []
  const out: string[] = []
  const tool = worker.tools?.[job.binary]
  if (tool) {
    const lists = [
      ["encoder", needs.encoders, tool.encoders],
      ["decoder", needs.decoders, tool.decoders],
      ["hwaccel", needs.hwaccels, tool.hwaccels],
      ["hw device", needs.hwDevices, tool.hwDevices],
      ["filter", needs.filters, tool.filters],
      ["muxer", needs.muxers, tool.muxers],
      ["demuxer", needs.demuxers, tool.demuxers],
    ] as const
    for (const [kind, want, has] of lists)
      for (const name of want ?? []) if (!has.includes(name)) out.push(`${kind} ${name}`)
  }
  for (const [k, val] of Object.entries(needs.labels ?? {}))
    if (worker.labels?.[k] !== val) out.push(`label ${k}=${val}`)
  return out
}

/**
 * Does the worker write its roots as path tokens for a job that asks (docs/protocol.md)? Workers from
 * before issue 11 do not say so, and their output would be read wrongly by a caller that decodes tokens.
 */
export const writesPathTokens = (worker: Pick<Worker, "capabilities">): boolean =>
  worker.capabilities.pathTokens === true

/**
 * Pure choice: the worker `eligible` for `job` with a free slot and the lowest relative load. A worker
 * that lost or gave up this job before is passed over while another eligible worker exists, even a
 * busy one (the job then waits for it).
 */
export function pick(
  job: Eligible & { excluded?: string[] },
  candidates: Candidate[],
  live?: Liveness,
): Candidate | undefined {
  const able = candidates.filter((c) => eligible(job, c.worker, live))
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
    const live = { now: deps.now(), staleMs: deps.staleMs }
    const workers = (await deps.store.listWorkers()).filter((w) => serving(w, live))
    if (!workers.length) return
    const loads = await deps.store.workerLoads()
    const candidates = workers.map((worker) => ({ worker, load: loads.get(worker.id) ?? 0 }))
    // Page through the queue oldest first, so that jobs no worker can run never starve those behind
    // them; stop as soon as every slot is taken.
    let after: string | undefined
    while (candidates.some((c) => c.load < c.worker.maxJobs)) {
      const queued = await deps.store.queuedJobs(PAGE, after)
      for (const job of queued) {
        const choice = pick(job, candidates, live)
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
