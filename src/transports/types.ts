import { ConflictError, NotFoundError, ProtocolError, UnavailableError } from "../shared/errors.ts"
import type { Frame } from "../shared/protocol/frames.ts"
import type { Worker, WorkerRegistration } from "../shared/protocol/schemas.ts"
import type { TransportName } from "../shared/protocol/transports.ts"
import type { HostLoad } from "../shared/protocol/host-load.ts"
import type { HeartbeatReply, HeldJob, PollReply, RegisterReply } from "../shared/protocol/worker.ts"

/**
 * The worker protocol, both halves, independent of how messages travel. HTTP (long poll + framed
 * bodies, docs/protocol.md) is the binding today; a broker transport (MQTT, RabbitMQ) implements the same
 * two interfaces over its own channels and must pass the same suite (test/conformance/transport.ts).
 *
 * Failures are typed, on both sides: the coordinator half throws them, the worker half rebuilds them from
 * what its channel carries, so the worker loop never looks at a status code.
 */

export type { HeartbeatReply, HeldJob, PollReply, RegisterReply }

/** The job is no longer this worker's at that epoch (reassigned, canceled, ended), or its output had a gap. */
export class StaleJobError extends ConflictError {}

/** The job does not exist (pruned, another database). */
export class JobGoneError extends NotFoundError {}

/** The coordinator does not know this worker (new database, reaped as offline, wrong token): register again. */
export class UnknownWorkerError extends ConflictError {}

/**
 * The call did not reach a coordinator that answered it (network down, coordinator restarting, a refusal
 * from something in between): trying again later may succeed.
 */
export class TransportUnavailableError extends UnavailableError {
  readonly retryable = true
}

/** A coordinator reply that does not have the shape the protocol says (shared/errors.ts has the one definition). */
export { ProtocolError }

/**
 * True when trying the same call again, after a pause, may succeed: an outage, or a reply of the wrong
 * shape (a coordinator mid-upgrade or misbehaving once). A worker must not exit, nor kill a running job,
 * over one garbled reply: it backs off and asks again, as it always did for a 2xx body that was not JSON.
 */
export const retryable = (err: unknown): boolean =>
  err instanceof TransportUnavailableError || err instanceof ProtocolError

/** A batch of work the worker half hears from the coordinator: one long poll's answer over HTTP. */
export type WorkBatch = PollReply

/** What a worker says to and hears from the coordinator (the worker half). */
/** What an upload's answer tells a worker that keeps what it sent (see UploadReply). */
export interface UploadAnswer {
  durable?: number
  resend?: number
  /** The coordinator takes bodies signed by their frames' digests (`upload`'s `digests`). */
  digests?: boolean
}

export interface WorkerTransport {
  /** Which transport this is ("http"), for logs and /health. */
  readonly kind: string
  /** Where the coordinator is, for logs. */
  readonly url: string
  register(reg: WorkerRegistration): Promise<RegisterReply>
  /** Stage two of registration: echo the token received over the job channel. */
  verify(token: string): Promise<void>
  deregister(): Promise<void>
  /**
   * The stream of work: each batch holds the jobs assigned to this worker and not yet started (or the
   * token to verify), an empty batch after `waitSeconds()` without work. The next batch is only asked for
   * when the consumer pulls it, so the consumer may register again in between. With `following` (the jobs
   * whose downlink the worker already follows, asked at each poll, at most MAX_FOLLOWING) a batch's
   * `downlink` lists running jobs to open the downlink of (`input`): those with something on it that are
   * not followed. Without it the worker follows every job's downlink itself. `holding`: the assignments
   * it already has and has not started, not offered again. Ends when `signal` aborts;
   * a failure ends it with the typed error (`UnknownWorkerError`: register again).
   */
  assignments(
    waitSeconds: () => number,
    signal: AbortSignal,
    following?: () => string[],
    holding?: () => string[],
  ): AsyncIterable<WorkBatch>
  /** Every job held, and the host's load when measured (worker/host-load.ts). */
  heartbeat(held: HeldJob[], hostLoad?: HostLoad): Promise<HeartbeatReply>
  /** Gives an assignment back (draining): the coordinator re-queues it for another worker. */
  reject(job: string, epoch: number): Promise<void>
  /**
   * Claims an assignment (assigned → running) for exactly this epoch; `note` goes in the job's timeline.
   * A repeat of the same claim (its answer was lost) succeeds again; any other claim of a job that is not
   * assigned to this worker at this epoch is StaleJobError.
   */
  start(job: string, epoch: number, note?: string): Promise<void>
  /**
   * Delivers encoded output frames (stdout/stderr with per-attempt sequence numbers, optionally ending
   * with the exit frame). Repeated sequence numbers are ignored by the coordinator, so a retry after an
   * unknown outcome never duplicates output. With `retain` the worker keeps what it sent until the
   * answer's `durable` covers it and re-sends from `resend` when asked (worker/output-batch.ts). With
   * `digests` (once an answer said the coordinator takes them) the body is signed by its frames' digests.
   */
  upload(
    job: string,
    epoch: number,
    frames: Uint8Array,
    opts?: { retain?: boolean; digests?: boolean },
  ): Promise<UploadAnswer>
  /**
   * The job's downlink after sequence `after`: the caller's stdin frames, one stdin-end frame, signal
   * frames, and a cancel frame when the job is canceled. Ends when the job ends.
   */
  input(job: string, epoch: number, after: number, signal: AbortSignal): AsyncIterable<Frame>
}

/** The registration the coordinator recorded, with the timing the worker follows. */
export type Registered = RegisterReply & { worker: Worker; coordinatorVersion: string }

/**
 * The coordinator half: each call of a worker (named by its authenticated identity) as a plain function.
 * A binding (the Hono routes for HTTP) decodes the message, calls one of these and encodes the result or
 * the typed error; it decides nothing itself.
 */
export interface WorkerProtocol {
  /**
   * Stage one of registration: a new (or offline) worker is `registering` until it verifies. `via` is the
   * transport the call came by (http_polling when absent). The coordinator picks the first of
   * `reg.transports` it serves and whose broker it is connected to (InvalidError when none): the answer
   * names it, and a worker whose transport changed verifies again over the new one.
   */
  register(worker: string, reg: WorkerRegistration, via?: TransportName): Promise<Registered>
  /** Stage two: `UnknownWorkerError` when the token does not match. */
  verify(worker: string, token: string): Promise<void>
  /**
   * `instance`: the process stopping (docs/operations.md, "One identity, one worker"); another than the
   * one serving the identity changes nothing.
   */
  deregister(worker: string, instance?: string): Promise<void>
  /**
   * The jobs the worker holds; answers with those that are no longer its own. From another `instance`
   * than the one serving the identity: IdentityInUseError. `hostLoad` is stored on the worker's row.
   */
  heartbeat(worker: string, held: HeldJob[], instance?: string, hostLoad?: HostLoad): Promise<HeartbeatReply>
  /**
   * Assignments not yet started, at once; otherwise waits up to `waitSeconds` (capped by the
   * coordinator's poll_wait_seconds) for one. `UnknownWorkerError` when the worker is not registered. `hold` is called when the poll starts waiting and returns
   * its release (the binding's connection slot). Running jobs whose downlink has something (input
   * stored, a cancel requested) and that are not in `following` (at most the worker's job slots,
   * InvalidError otherwise) are answered at once too, as `downlink`. Assignments in `holding` (the
   * worker has them and its start claim is on its way; as many at most) are not answered again.
   */
  poll(
    worker: string,
    waitSeconds: number,
    signal: AbortSignal,
    hold?: () => () => void,
    following?: readonly string[],
    holding?: readonly string[],
    /** The transport the poll came by: one other than the negotiated one is UnknownWorkerError. */
    via?: TransportName,
    /** The process polling: another than the one serving the identity is IdentityInUseError. */
    instance?: string,
  ): Promise<PollReply>
  start(worker: string, job: string, epoch: number, note?: string): Promise<void>
  reject(worker: string, job: string, epoch: number): Promise<void>
  /** Stores decoded output frames of one attempt (stdout/stderr, progress, exit). */
  upload(
    worker: string,
    job: string,
    epoch: number,
    frames: Frame[],
    opts?: { retain?: boolean },
  ): Promise<{ finished: boolean } & UploadAnswer>
  /**
   * Checks that the job is the worker's at `epoch`, then returns its downlink: frames after `after`
   * (stdin, stdin-end, signal, one cancel, a ping when quiet), ending when the job ends or moves on.
   */
  input(
    worker: string,
    job: string,
    epoch: number,
  ): Promise<(after: number, signal: AbortSignal) => AsyncIterable<Frame>>
}
