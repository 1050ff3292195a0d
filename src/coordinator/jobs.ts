import { ConflictError, NotFoundError } from "../shared/errors.ts"
import type { Logger } from "../shared/log.ts"
import { isTerminal, type Job } from "../shared/protocol/schemas.ts"
import type { Store } from "../store/types.ts"

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
