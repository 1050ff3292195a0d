import { constants } from "node:os"
import { ConflictError, NotFoundError } from "../shared/errors.ts"
import type { Logger } from "../shared/log.ts"
import { isTerminal, type Job } from "../shared/protocol/schemas.ts"
import type { Store } from "../store/types.ts"
import { newId } from "../shared/ids.ts"
import { queueKey } from "./priorities.ts"

/** Who cancels, as the job's timeline and error say it: `canceled by <name>[ from the <from>]`. */
export interface Canceler {
  /** The identity; null when there is none (`admin --local` works on the database without a key). */
  name: string | null
  /** Where it was asked when not over the API, e.g. "dashboard". */
  from?: string
}

export interface CancelOptions {
  /** Throws when the canceler may not cancel this job (the API's requester-or-admin rule). */
  authorize?: (job: Job) => void
  log?: Logger
}

/**
 * How the reason of a cancel begins when the job's attached caller vanished (killed, crashed) rather
 * than asked: its worker then kills the process at once, as a local ffmpeg dies with its parent,
 * instead of letting it finalise (the cancel frame's `kill`, `callerGone`).
 */
export const CALLER_GONE = "the caller went away"

/** Whether a cancel with this reason is for a vanished caller (see `CALLER_GONE`). */
export const callerGone = (reason: string | null): boolean => reason?.startsWith(CALLER_GONE) === true

/**
 * The exit code a local `binary` gives when `sig` reaches it while it runs (measured on ffmpeg 5.1):
 * ffmpeg stops on SIGINT and SIGTERM and exits 255; ffprobe, and ffmpeg on any other signal (SIGHUP,
 * SIGQUIT, SIGUSR1...), dies by it: 128+N.
 */
export function signaledExit(binary: string, sig: string): number {
  if (binary === "ffmpeg" && (sig === "SIGINT" || sig === "SIGTERM")) return 255
  return 128 + ((constants.signals as Record<string, number>)[sig] ?? 0)
}

/** The reason a cancel records. */
export const cancelReason = (by: Canceler) =>
  `canceled by ${by.name ?? "an administrator"}${by.from ? ` from the ${by.from}` : ""}`

/**
 * Stops a job, the one way every caller does it (API, dashboard, `admin jobs cancel --local`): a queued
 * or assigned job is canceled at once, a running one is marked and its worker stops it (it ends
 * `canceled` when the worker reports the exit). Returns the job as it now is: `canceled`, or still
 * running with its cancel requested (also when one was already under way). NotFoundError for an
 * unknown job, ConflictError when it had already ended. Who is woken follows from the store's change.
 */
export async function cancelJob(
  store: Store,
  id: string,
  by: Canceler,
  now: number,
  opts: CancelOptions = {},
): Promise<Job> {
  const job = await store.getJob(id)
  if (!job) throw new NotFoundError(`no job ${id}`)
  opts.authorize?.(job)
  const ended = (status: string) => new ConflictError(`job ${id} already ended: ${status}`, { status })
  if (isTerminal(job.status)) throw ended(job.status)
  const done = await store.requestCancel(id, cancelReason(by), now)
  if (!done) {
    // Nothing changed: a cancel is already under way, or the job ended (or was pruned) meanwhile.
    const cur = await store.getJob(id)
    if (cur && !isTerminal(cur.status)) return cur
    throw ended(cur?.status ?? "deleted")
  }
  opts.log?.info(done.status === "canceled" ? "job canceled" : "job cancel requested", {
    job: id,
    by: by.name ?? "an administrator",
    ...(by.from ? { from: by.from } : {}),
  })
  return done
}

/**
 * Submits a failed detached job again as a new job (a new id, the same command, requester and placement,
 * queued now by its priority: `agingMs` is `scheduling.aging_seconds`), the one way the dashboard and
 * `dffmpeg admin jobs retry` do it; both timelines name the other. NotFoundError for an unknown job,
 * ConflictError (409) for one that did not fail, was attached (its caller followed it and is gone: a
 * re-run would have nobody to hand its output to) or read its caller's stdin (not kept).
 */
export async function retryJob(
  store: Store,
  id: string,
  by: Canceler,
  now: number,
  agingMs: number,
  opts: { log?: Logger } = {},
): Promise<Job> {
  const job = await store.getJob(id)
  if (!job) throw new NotFoundError(`no job ${id}`)
  const refuse = (why: string) => new ConflictError(`job ${id} cannot be retried: ${why}`, { status: job.status })
  if (job.status !== "failed") throw refuse(`only a failed job can be, and it is ${job.status}`)
  if (job.attached) throw refuse("it was attached (only a detached job can be submitted again)")
  if (job.stdin) throw refuse("it read its caller's stdin, which is not kept")
  const who = `${by.name ?? "an administrator"}${by.from ? ` from the ${by.from}` : ""}`
  const fresh = { id: newId(), queueKey: queueKey(job.lane, job.priority, now, agingMs) }
  const done = await store.retryJob(id, fresh, who, now)
  // Changed between the two reads (pruned, or it was not failed any more): say what it is now.
  if (!done) throw refuse("it changed meanwhile")
  opts.log?.info("job retried", { job: id, as: done.id, by: who })
  return done
}
