import type { Frame } from "../../shared/protocol/frames.ts"
import type { Assignment, WorkerRegistration } from "../../shared/protocol/schemas.ts"

export interface RegisterReply {
  /** How long the coordinator holds a poll open before answering with no work. */
  pollWaitSeconds: number
  /** How often to send heartbeats for held jobs. */
  heartbeatSeconds: number
  /** How often to register again (binaries, healthy paths, draining). */
  registrationSeconds: number
}

export interface PollReply {
  jobs: Assignment[]
  /** Registration token to echo with `verify` (stage two of registration). */
  verify?: string
}

export interface HeartbeatReply {
  /** Held jobs that are no longer this worker's at that epoch: stop them without reporting. */
  stale: HeldJob[]
  /** The coordinator considers this worker offline: register again. */
  reregister: boolean
}

export interface HeldJob {
  id: string
  epoch: number
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
  /** Stage two of registration: echo the token received over the job channel. */
  verify(token: string): Promise<void>
  deregister(): Promise<void>
  /** Jobs assigned to this worker and not yet started; waits up to `waitSeconds` for one. */
  poll(waitSeconds: number, signal: AbortSignal): Promise<PollReply>
  heartbeat(held: HeldJob[]): Promise<HeartbeatReply>
  /** Gives an assignment back (draining): the coordinator re-queues it for another worker. */
  reject(job: string, epoch: number): Promise<void>
  /** Claims an assignment (assigned → running) for exactly this epoch. */
  start(job: string, epoch: number): Promise<void>
  /**
   * Delivers encoded output frames (stdout/stderr with per-attempt sequence numbers, optionally ending
   * with the exit frame). Repeated sequence numbers are ignored by the coordinator, so a retry after an
   * unknown outcome never duplicates output.
   */
  upload(job: string, epoch: number, frames: Uint8Array): Promise<void>
  /**
   * The job's downlink after sequence `after`: the caller's stdin frames, one stdin-end frame, signal
   * frames, and a cancel frame when the job is canceled. Ends when the job ends.
   */
  input(job: string, epoch: number, after: number, signal: AbortSignal): AsyncIterable<Frame>
}
