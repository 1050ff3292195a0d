import type { CoordinatorConfig } from "../../shared/config/server-schema.ts"
import { QuotaError, TooLargeError } from "../../shared/errors.ts"
import type { SubmitRequest } from "../../shared/protocol/schemas.ts"
import type { Store } from "../../store/index.ts"

type Limits = CoordinatorConfig["limits"]

/** UTF-8 bytes of what a job carries for good: its arguments, cwd and path variable names. */
export function argumentBytes(req: Pick<SubmitRequest, "args" | "cwd" | "paths">): number {
  let n = 0
  for (const a of req.args) n += Buffer.byteLength(a, "utf8")
  for (const p of req.paths) n += Buffer.byteLength(p, "utf8")
  return n + (req.cwd === null ? 0 : Buffer.byteLength(req.cwd, "utf8"))
}

/** 413 when a submission is over the argument count or size limits. */
export function checkArguments(req: Pick<SubmitRequest, "args" | "cwd" | "paths">, limits: Limits): void {
  if (req.args.length > limits.max_args_count) {
    throw new TooLargeError(
      `the job has ${req.args.length} arguments; at most ${limits.max_args_count} are accepted (limits.max_args_count)`,
    )
  }
  const bytes = argumentBytes(req)
  if (bytes > limits.max_args_bytes) {
    throw new TooLargeError(
      `the job's arguments, cwd and path names take ${bytes} bytes; at most ${limits.max_args_bytes} are accepted (limits.max_args_bytes)`,
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
