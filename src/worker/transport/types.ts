import type { Frame } from "../../shared/protocol/frames.ts"
import type { Assignment, WorkerRegistration } from "../../shared/protocol/schemas.ts"

export interface RegisterReply {
  /** How long the coordinator holds a poll open before answering with no work. */
  pollWaitSeconds: number
}

/**
 * Everything a worker says to and hears from the coordinator. HTTP (long poll + framed uploads) is the
 * default; a broker transport (MQTT, RabbitMQ) implements the same calls over its own channels.
 *
 * Errors are `DffmpegError`s: `retryable(err)` says whether to try again (coordinator unreachable or
 * restarting); a `ConflictError` (409) means the job is no longer this worker's at that epoch and its
 * process must stop; `NotFoundError` means the job is gone.
 */
export interface WorkerTransport {
  /** Where the coordinator is, for logs. */
  readonly url: string
  register(reg: WorkerRegistration): Promise<RegisterReply>
  /** Jobs assigned to this worker and not yet started; waits up to `waitSeconds` for one. */
  poll(waitSeconds: number, signal: AbortSignal): Promise<Assignment[]>
  /** Claims an assignment (assigned → running) for exactly this epoch. */
  start(job: string, epoch: number): Promise<void>
  /**
   * Delivers encoded output frames (stdout/stderr with per-attempt sequence numbers, optionally ending
   * with the exit frame). Repeated sequence numbers are ignored by the coordinator, so a retry after an
   * unknown outcome never duplicates output.
   */
  upload(job: string, epoch: number, frames: Uint8Array): Promise<void>
  /** The caller's stdin after sequence `after`: stdin frames, then one stdin-end frame. */
  input(job: string, epoch: number, after: number, signal: AbortSignal): AsyncIterable<Frame>
}
