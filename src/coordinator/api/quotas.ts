import type { CoordinatorConfig } from "../../shared/config/server-schema.ts"
import { QuotaError, TooLargeError } from "../../shared/errors.ts"
import type { SubmitRequest } from "../../shared/protocol/schemas.ts"
import type { Store } from "../../store/index.ts"

type Limits = CoordinatorConfig["limits"]

type Sized = Pick<SubmitRequest, "args" | "cwd" | "paths"> & Partial<Pick<SubmitRequest, "env">>

/** The job's environment as `NAME=value` strings: each counts as one more argument. */
const envStrings = (req: Sized) => Object.entries(req.env ?? {}).map(([k, v]) => `${k}=${v}`)

/** UTF-8 bytes of what a job carries for good: its arguments, environment, cwd and path variable names. */
export function argumentBytes(req: Sized): number {
  let n = 0
  for (const a of [...req.args, ...envStrings(req)]) n += Buffer.byteLength(a, "utf8")
  for (const p of req.paths) n += Buffer.byteLength(p, "utf8")
  return n + (req.cwd === null ? 0 : Buffer.byteLength(req.cwd, "utf8"))
}

/** 413 when a submission is over the argument count or size limits (environment variables count as arguments). */
export function checkArguments(req: Sized, limits: Limits): void {
  const vars = Object.keys(req.env ?? {}).length
  const count = req.args.length + vars
  const withEnv = vars ? " and environment variables" : ""
  if (count > limits.max_args_count) {
    throw new TooLargeError(
      `the job has ${count} arguments${withEnv}; at most ${limits.max_args_count} are accepted (limits.max_args_count)`,
    )
  }
  const bytes = argumentBytes(req)
  if (bytes > limits.max_args_bytes) {
    throw new TooLargeError(
      `the job's arguments${vars ? ", environment" : ""}, cwd and path names take ${bytes} bytes; at most ${limits.max_args_bytes} are accepted (limits.max_args_bytes)`,
    )
  }
}

/**
 * 429 when `requester` already has as many waiting (queued or assigned) or unfinished jobs as its
 * quota allows. Checked before the job is created: submissions racing each other can each pass, so a
 * quota can be exceeded by the number of submissions in flight at the same instant.
 */
export async function checkQueueQuota(store: Store, requester: string, limits: Limits): Promise<void> {
  const n = await store.activeJobCounts(requester)
  const waiting = n.queued + n.assigned
  if (waiting >= limits.max_queued_per_client) {
    throw new QuotaError(
      `${requester} already has ${waiting} jobs waiting for a worker, the most one identity may queue (limits.max_queued_per_client = ${limits.max_queued_per_client}); submit again once some have started`,
    )
  }
  const active = waiting + n.running
  if (active >= limits.max_active_per_client) {
    throw new QuotaError(
      `${requester} already has ${active} unfinished jobs, the most one identity may have (limits.max_active_per_client = ${limits.max_active_per_client}); submit again once some have ended`,
    )
  }
}
