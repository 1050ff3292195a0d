import type { Secret } from "../shared/auth/keyring.ts"
import type { JobEventType, JobTarget } from "./machine.ts"
import type {
  ExitReport,
  Job,
  JobEvent,
  JobStatus,
  ProgressReport,
  Role,
  User,
  Worker,
  WorkerRegistration,
  WorkerStatus,
} from "../shared/protocol/schemas.ts"
import type { HeldJob } from "../shared/protocol/worker.ts"
import type { Lane } from "../shared/protocol/capabilities.ts"
import type { TransportName } from "../shared/protocol/transports.ts"
import type { HostLoad } from "../shared/protocol/host-load.ts"

export type StoreKind = "sqlite" | "postgres" | "mysql"

/** A running coordinator as it describes itself in `coordinators` (for `dffmpeg admin db status`). */
export interface CoordinatorRow {
  /** A ULID made by the process at its start: a restart is a new row. */
  id: string
  host: string
  pid: number
  version: string
  /** Where it listens, as it sees itself (behind a load balancer: its own address, not the balancer's). */
  url: string | null
  startedAt: number
  seenAt: number
}

/** What a submission fixes of a job; the store adds its state (status, epoch, times, worker). */
export type NewJob = Pick<
  Job,
  "id" | "requester" | "binary" | "args" | "paths" | "cwd" | "stdin" | "attached" | "retries"
> &
  Partial<Pick<Job, "env" | "pathTokens" | "files" | "lane" | "priority" | "needs" | "pin" | "queueKey">> & {
    /**
     * The submitter's key of this submission (SubmitRequest.submission): one job per requester and key,
     * so a submission repeated on another coordinator after a lost answer finds the job the first made.
     */
    submission?: string
  }

/** Where a page of the queue ended: the last job's queue key and id (the queue's order). */
export interface QueueCursor {
  key: number
  id: string
}

/** A worker's assigned and running jobs, per lane. */
export type LaneLoad = Record<Lane, number>

export interface OutputChunk {
  /** Worker-side sequence number within one epoch (1, 2, 3...). */
  seq: number
  stream: "stdout" | "stderr"
  data: Uint8Array
  /** SHA-256 of `data`, when the upload was signed by its frames' digests (kept with a held payload). */
  digest?: Uint8Array
}

/** A finished run's output and exit code, as `createAnswered` stores it. */
export interface Answer {
  rows: { stream: "stdout" | "stderr"; data: Uint8Array }[]
  code: number
}

export interface StreamRow {
  /** Coordinator-wide position: strictly increasing within a job; the client's resume cursor. */
  pos: number
  stream: "stdout" | "stderr"
  data: Uint8Array
  /** SHA-256 of `data`, when known (a held payload whose upload had it): a stream seals the row by it. */
  digest?: Uint8Array
}

/** One entry of a job's downlink, in the caller's sequence: stdin bytes, end of stdin, or a signal. */
export interface InputChunk {
  seq: number
  /** Frame kind: Kind.stdin, Kind.stdinEnd or Kind.signal. */
  kind: number
  data: Uint8Array
}
export type InputRow = InputChunk

export interface JobFilter {
  requester?: string
  status?: JobStatus
  /** Only jobs in one of these states. */
  statuses?: JobStatus[]
  worker?: string
  /** Only jobs created at or after this time (ms). */
  since?: number
  /** Only jobs older than this job id (paging newest-first listings). */
  before?: string
  /**
   * Only jobs whose arguments contain this text as a plain substring (no wildcards), case-insensitively
   * as the database's lower() folds (SQLite: ASCII letters only):
   * matched in the first ARGS_HEAD_CHARS characters of the arguments' JSON the row keeps (store/sql/migrations.ts).
   */
  text?: string
  limit?: number
}

/** Finished jobs of one hour (or bucket) and outcome, counted by the database (`Store.throughput`). */
export interface ThroughputRow {
  /** Start of the bucket (ms, a multiple of the bucket's length). */
  at: number
  status: "completed" | "failed" | "canceled"
  count: number
}

/**
 * A job as listings and live views carry it, bounded whatever the job's size: `args` are the leading
 * arguments that fit in a prefix the database reads, `error` is cut to 2048 characters; every other
 * field is whole (they are bounded when written). The job's own read (`getJob`) has everything.
 */
export interface JobListing extends Job {
  /** True when `args` (or `error`) were cut for the listing. */
  truncated: boolean
  /** Characters of the full arguments as stored (their JSON), to say how much was left out. */
  argsChars: number
}

/** How much of a job's variable-size fields a listing reads. */
export interface ListingSize {
  /** Characters of the arguments' JSON read from the database (default 2048). */
  argsChars?: number
}

/** Counts for metrics and the dashboard, aggregated by the database. */
export interface Stats {
  /** Jobs the store holds, by state (finished ones until retention deletes them). */
  jobs: Record<JobStatus, number>
  /** Submission time of the oldest queued job (ms), null when the queue is empty. */
  oldestQueuedAt: number | null
  workers: Record<WorkerStatus, number>
  /** Transcode slots (max_jobs) of online and draining workers, and how many hold a transcode (probes aside). */
  slots: { used: number; total: number }
}

/** Non-terminal jobs of one identity, by state. */
export interface ActiveCounts {
  queued: number
  assigned: number
  running: number
}

/** What a worker's heartbeat says it runs (one definition, in the wire schemas). */
export type { HeldJob }

/** Outcome of losing a job's worker: re-queued (detached, retries left) or failed. */
export type LostResult = { job: Job; requeued: boolean } | undefined

/**
 * How much of a job's output the store keeps (coordinator config `relay:`). Without them everything is
 * kept until the job is pruned.
 */
export interface OutputBounds {
  /**
   * Bytes of an attached job's unacknowledged output (both streams): an upload that would pass it is
   * refused as `window-full` and changes nothing, unless nothing is unacknowledged (so one upload,
   * however large, always fits).
   */
  windowBytes: number
  /** Bytes of stderr kept as a job's tail once acknowledged (attached) or once truncated (detached). */
  stderrTailBytes: number
  /** Bytes of output a detached job keeps; later stdout is dropped behind a marker row. */
  detachedBytes: number
}

export type UploadResult =
  /** `ended`: this call ended the job (false for a repeated final upload). */
  | {
      ok: true
      job: Job
      finished: boolean
      ended?: boolean
      /**
       * For a worker that keeps what it sent (`retain`): the highest sequence up to which the attempt's
       * output is durable (stored, acknowledged, or ended with the job); it may forget its bodies up to there.
       */
      durable?: number
    }
  /**
   * `resend`: held output of the attempt from sequence `expected` on is lost (the coordinator restarted);
   * nothing of this upload was taken beyond what it brought back: send again from `expected`.
   */
  | { ok: false; reason: "not-found" | "stale" | "gap" | "window-full" | "resend"; job?: Job; expected?: number }

/** A job transition that committed (never one that was refused or rolled back). */
export interface JobChange {
  type: "job"
  /** The job as the transition left it. */
  job: Job
  /** Null for a new job. */
  from: JobStatus | null
  to: JobTarget
  epoch: number
  reason: string | null
  /** The machine's event that made it (see store/machine.ts). */
  event: JobEventType
  /** The worker of the attempt it concerns (still set when the transition took the job away from it). */
  worker: string | null
  /** That worker reported it itself (start, exit, giving the job up): it is alive (store/machine.ts `reportedByWorker`). */
  byWorker: boolean
}

/** A committed change to a worker's row. */
export interface WorkerChange {
  type: "worker"
  worker: string
  /** registered, verified: the two stages of joining; seen: a poll; reaped: offline after silence. */
  what: "registered" | "verified" | "seen" | "status" | "drain" | "reaped"
}

/** A running job whose worker should open its downlink (`Store.pollFor`). */
export interface DownlinkDue {
  id: string
  epoch: number
}

/**
 * What the store reports after each commit, in commit order: job transitions, worker changes, and the
 * stream events that waiters follow (output or progress stored, input stored), plus identities and
 * retention, which only change what a dashboard shows.
 */
export type StoreChange =
  | JobChange
  | WorkerChange
  | { type: "output"; job: string }
  /**
   * Input stored for a job: `worker` is the worker of its attempt (null before one), `stdin` whether the
   * job relays its caller's stdin (its worker follows the downlink from the start; docs/protocol.md).
   */
  | { type: "input"; job: string; worker: string | null; stdin: boolean }
  /** The caller acknowledged output: room in the job's window. */
  | { type: "acked"; job: string }
  | { type: "user"; name: string }
  | { type: "pruned"; jobs: number; workers: number }

/**
 * Domain-level persistence. Every job transition is one the state machine allows (store/machine.ts),
 * written as a compare-and-set on (status, epoch), recorded in the job's timeline in the same
 * transaction and reported to `changes` listeners once committed: when the guard does not match,
 * another actor (a worker, a janitor, another coordinator) won the race and the method returns
 * `undefined`/`false` rather than throwing. Time is passed in (`now`, ms) so that callers and
 * tests own the clock; liveness is always compared against times written by the same clock.
 */
/**
 * When a registration whose `instance` differs from the row's takes the identity over
 * (docs/operations.md, "One identity, one worker"): the row's process is gone when it was not heard
 * from for `staleMs`, or for `quietMs` with no poll open (a killed worker's poll connection closes).
 * Otherwise the registration is refused with IdentityInUseError naming the other process.
 */
export interface InstanceLiveness {
  quietMs: number
  staleMs: number
}

export interface Store {
  readonly kind: StoreKind
  /**
   * Whether several coordinators may serve this database at once (PostgreSQL, MySQL): what one
   * coordinator alone could keep in memory (the nonces it accepted) goes through the database. An
   * SQLite file has one coordinator (several on one file is not a cluster: docs/operations.md).
   */
  readonly shared: boolean
  /**
   * Brings the schema up to date, then the stored keys: seals those still in clear and completes a
   * secret rotation that was interrupted after its commit (`recovered`: the secret id now on disk).
   */
  migrate(): Promise<{ sealed: number; recovered?: string }>
  /** One real round trip to the database (for /health); throws when it does not answer. */
  ping(): Promise<void>
  /**
   * The database's clock (ms since the epoch), as the statement runs: PostgreSQL's clock_timestamp(),
   * MySQL's now(3); SQLite has none and answers the host's. Coordinators on one database measure their
   * offset to it (coordinator/clock.ts) so that liveness times written by each compare alike.
   */
  clock(): Promise<number>
  /**
   * Records that `client` signed a request with `nonce` at `at` (ms), in one statement that skips a pair
   * already there: true when it was new, false for a replay (seen by any coordinator on this database).
   */
  rememberNonce(client: string, nonce: string, at: number): Promise<boolean>
  /** Deletes at most `limit` nonces recorded before `before`, oldest first; returns how many. */
  pruneNonces(before: number, limit: number): Promise<number>
  close(): Promise<void>
  /** The schema version the database is at (0 before the first migration); never migrates. */
  schemaVersion(): Promise<number>

  /** Writes (or rewrites) a coordinator's row; rows not seen since `before` go at the same time. */
  registerCoordinator(row: CoordinatorRow, before: number): Promise<void>
  /** Refreshes a coordinator's `seen_at` (one statement); false when its row is gone (pruned, deleted). */
  touchCoordinator(id: string, now: number): Promise<boolean>
  /** Removes a coordinator's row (its clean stop); false when there was none. */
  removeCoordinator(id: string): Promise<boolean>
  /** Coordinators seen at or after `since`, most recently started first. */
  listCoordinators(since: number): Promise<CoordinatorRow[]>
  /**
   * Calls `listener` with every change this store object commits, after the commit (a refused or
   * rolled-back one is never reported); changes made by other processes are not seen. Returns the
   * function that stops the calls.
   */
  changes(listener: (change: StoreChange) => void): () => void

  addUser(name: string, role: Role, key: string, now: number): Promise<User>
  /** The user with its key, for request verification. */
  getCredential(name: string): Promise<(User & { key: string }) | undefined>
  listUsers(): Promise<User[]>
  removeUser(name: string): Promise<boolean>
  getUser(name: string): Promise<User | undefined>
  /** Replaces a user's key (the old one stops working at once). False when there is no such user. */
  setUserKey(name: string, key: string): Promise<boolean>
  /**
   * Re-encrypts every stored key under `next` and records it as the database's secret, in one
   * transaction; ConflictError (nothing changed) when a key cannot be opened. Returns how many.
   */
  resealKeys(next: Secret): Promise<number>

  /**
   * Registers a worker: new, offline, or on another `transport` than before (default http_polling), it is
   * `registering` with `token` until it verifies; otherwise it keeps its state.
   */
  upsertWorker(
    id: string,
    reg: WorkerRegistration,
    token: string,
    now: number,
    transport?: TransportName,
    liveness?: InstanceLiveness,
  ): Promise<Worker>
  /** The token a registering worker must echo (undefined once verified). */
  workerToken(id: string): Promise<string | undefined>
  /** registering → online when `token` matches (the worker proved its channel works). */
  verifyWorker(id: string, token: string, now: number): Promise<boolean>
  /**
   * Records that the worker was heard from (poll, heartbeat); an offline worker is not revived. With
   * `poll`, also that its poll connection opened (clears `pollClosedAt`) or closed (sets it to `now`);
   * a close is not recorded over anything heard later (a poll opened since on another coordinator).
   */
  touchWorker(id: string, now: number, poll?: "open" | "closed"): Promise<void>
  /** With `instance`: only while that process (or one that sent none) serves the identity. */
  setWorkerStatus(id: string, status: WorkerStatus, now: number, instance?: string): Promise<boolean>
  getWorker(id: string): Promise<Worker | undefined>
  listWorkers(): Promise<Worker[]>
  /**
   * An administrator's drain (or undrain): sticky across the worker's re-registrations and restarts.
   * A draining worker keeps its running jobs and is given no new ones. Undefined for an unknown worker.
   */
  requestDrain(id: string, on: boolean, now: number): Promise<Worker | undefined>
  /** online/draining/registering workers not heard from since `before` become offline; returns their ids. */
  reapWorkers(before: number): Promise<string[]>

  createJob(job: NewJob, now: number): Promise<Job>
  /** The job `requester` submitted under `key` (NewJob.submission), if any. */
  jobBySubmission(requester: string, key: string): Promise<Job | undefined>
  /**
   * Creates a job already ended with a known answer (an info command answered from the coordinator's
   * cache): its output rows and exit code are stored and it is `completed` (code 0) or `failed` in one
   * transaction, never queued for a worker; `reason` goes in its timeline.
   */
  createAnswered(job: NewJob, answer: Answer, reason: string, now: number): Promise<Job>
  /**
   * Ends a queued job that was never assigned with a known answer, as `createAnswered` does (an info
   * command that waited for an identical one's answer). Undefined when it was assigned meanwhile (it then
   * runs as any job), or ended, or is unknown.
   */
  answerJob(id: string, answer: Answer, reason: string, now: number): Promise<Job | undefined>
  getJob(id: string): Promise<Job | undefined>
  /**
   * A failed detached job submitted again as the new job `fresh` (same command, requester and
   * placement, a new id and queue key), in one transaction: the new job's timeline says `retry of <id>`
   * and the old one's gains `retried as <new id>`. Undefined (nothing written) when the job is not
   * failed or not detached (another retry or a prune may have changed it), or is unknown.
   */
  retryJob(id: string, fresh: { id: string; queueKey: number }, by: string, now: number): Promise<Job | undefined>
  listJobs(filter: JobFilter): Promise<Job[]>
  /** How many of `requester`'s jobs are queued, assigned and running (submission quotas), counted by the database. */
  activeJobCounts(requester: string): Promise<ActiveCounts>
  /**
   * `listJobs` as bounded summaries: the database cuts the large columns before they are read, so a
   * page costs the same whether its jobs have ten arguments or megabytes of them.
   */
  listJobSummaries(filter: JobFilter, size?: ListingSize): Promise<JobListing[]>
  /** One job as a bounded summary (state, worker, exit, progress): for loops that re-read a job often. */
  getJobSummary(id: string, size?: ListingSize): Promise<JobListing | undefined>
  events(id: string): Promise<JobEvent[]>
  /**
   * Queued jobs in queue order (lowest `queueKey`, then id), of one lane when given, after `after` when
   * given (paging); as summaries without arguments (the scheduler reads them on every pass). An index on
   * (status, lane, queue_key, id) makes each page cost its size, whatever the queue's length.
   */
  queuedJobs(limit: number, after?: QueueCursor, lane?: Lane): Promise<JobListing[]>
  /**
   * Transcodes assigned or running, per worker id: the load against its `maxJobs` that views show
   * (probes have their own slots, `laneLoads`).
   */
  workerLoads(): Promise<Map<string, number>>
  /** Jobs assigned or running, per worker id and lane (probe slots are apart from transcode slots). */
  laneLoads(): Promise<Map<string, LaneLoad>>
  /** queued → assigned to `worker`, bumping the epoch. Undefined if the job was not queued. */
  assign(id: string, worker: string, now: number): Promise<Job | undefined>
  /** Jobs assigned to `worker` and not yet started (re-offered on every poll until started). */
  assignedTo(worker: string): Promise<Job[]>
  /**
   * What a worker's poll answers, in one read: `assigned` as `assignedTo`, and `downlink`, the worker's
   * running jobs whose downlink has something for it (input stored or a cancel requested) and that are
   * not in `following` (those whose downlink it already follows); none without `following` (a worker
   * that follows every downlink itself). `quiet`: how many of its running jobs are not followed and have
   * nothing on their downlink yet. Assignments in `holding` are left out (the worker has them).
   */
  pollFor(
    worker: string,
    following: readonly string[] | undefined,
    holding?: readonly string[],
  ): Promise<{ assigned: Job[]; downlink: DownlinkDue[]; quiet: number }>
  /**
   * assigned → running, only for the worker and epoch of the assignment. `reason`, when given, is what
   * the worker says of its start (its argument profile's rewrites) and goes in the timeline.
   */
  start(id: string, worker: string, epoch: number, now: number, reason?: string): Promise<Job | undefined>
  /**
   * A worker's heartbeat for the jobs it holds: refreshes the worker and each job that is still its
   * own at that epoch, and returns the ones that are not (the worker must stop them).
   */
  heartbeat(worker: string, held: HeldJob[], now: number, hostLoad?: HostLoad): Promise<HeldJob[]>
  /**
   * Appends output of one attempt (idempotent for repeated sequence numbers, refusing gaps) and, when
   * `exit` is given, ends the job in the same transaction, so a reader never sees the end before the
   * last byte. `progress`, when given, is stored with the job in the same transaction. With `bounds`,
   * an attached job's upload that would overfill its window is refused (`window-full`, nothing
   * stored), and a detached job's output past its cap is dropped: stdout counted in the marker row
   * (stderr, sequence 0 of the attempt) written where truncation began, stderr after it kept as its tail.
   */
  appendOutput(
    id: string,
    worker: string,
    epoch: number,
    chunks: OutputChunk[],
    exit: ExitReport | undefined,
    now: number,
    progress?: ProgressReport,
    bounds?: OutputBounds,
    /**
     * `retain`: the worker keeps what it sends until it is durable and re-sends it when asked, so an
     * attached job's stdout may be held in memory (store/held.ts) rather than stored.
     */
    opts?: { retain?: boolean },
  ): Promise<UploadResult>
  /**
   * The attached caller took the job's output up to `pos` (clamped to what is stored): its stdout up to
   * there is deleted, its stderr up to there kept only as the last `stderrTailBytes`. A detached job's
   * output is kept for later readers: nothing changes. Undefined for an unknown job; otherwise the
   * position acknowledged so far.
   */
  ackOutput(id: string, pos: number, stderrTailBytes: number): Promise<number | undefined>
  /**
   * A job's output after position `after`, at most `limit` rows, in order. Fewer than `limit`: nothing
   * more is readable as of this read (a follower that got a short page is caught up).
   */
  readOutput(id: string, after: number, limit: number): Promise<StreamRow[]>
  /** The last `limit` chunks of one of a job's streams, oldest first (log tails). */
  lastOutput(id: string, stream: "stdout" | "stderr", limit: number): Promise<StreamRow[]>
  /**
   * Like `lastOutput`, but never more than `maxBytes` in all: the oldest chunk kept may be cut to its
   * last bytes (`truncated`). Chunk sizes are read first, so nothing beyond the cap is loaded.
   */
  lastOutputBytes(
    id: string,
    stream: "stdout" | "stderr",
    limit: number,
    maxBytes: number,
  ): Promise<{ rows: StreamRow[]; truncated: boolean }>
  stats(): Promise<Stats>
  /** Jobs finished at or after `since`, counted per `bucketMs` (a whole number of ms) and outcome: one grouped read. */
  throughput(since: number, bucketMs: number): Promise<ThroughputRow[]>
  /**
   * Stores a one-time dashboard sign-in link for `user`: only the SHA-256 of its token (`hash`, hex), so
   * every coordinator on the database accepts it and a copy of the database cannot be used to sign in.
   * Links that expired by `now` are deleted at the same time.
   */
  addSignInLink(hash: string, user: string, expiresAt: number, now: number): Promise<void>
  /**
   * Uses up a sign-in link: deletes it and answers its user, once, when it exists and has not expired;
   * undefined otherwise (already used, expired, unknown). Of two racing uses only one gets the user.
   */
  takeSignInLink(hash: string, now: number): Promise<string | undefined>
  /** Appends to the job's downlink (idempotent by sequence number). False if the job is unknown. */
  appendInput(id: string, chunks: InputChunk[]): Promise<boolean>
  readInput(id: string, after: number, limit: number): Promise<InputRow[]>
  /** Stdin bytes stored for a job (without reading them) and the last sequence number of its downlink (0 when none). */
  inputBytes(id: string): Promise<{ bytes: number; lastSeq: number }>
  /** Ends a non-terminal job as failed with a reason; with `epoch`, only while still at that epoch. */
  failJob(id: string, reason: string, now: number, epoch?: number): Promise<Job | undefined>
  /**
   * Asks for a job to stop. A queued or assigned job is canceled at once; a running one is marked and
   * its worker stops it (then it ends `canceled`). Undefined if the job had already ended.
   */
  requestCancel(id: string, reason: string, now: number): Promise<Job | undefined>
  /**
   * A queued or assigned job whose caller was signaled before it started: canceled now with `code`, the
   * exit code a local process would have given that signal (null: its caller runs it itself, a local
   * fallback). Undefined once it runs or ended.
   */
  withdrawJob(id: string, reason: string, code: number | null, now: number): Promise<Job | undefined>
  /** A running job whose worker has been asked to cancel and is gone: canceled now. */
  forceCanceled(id: string, epoch: number, reason: string, now: number): Promise<Job | undefined>
  /**
   * assigned → queued (assignment timed out or refused), excluding that worker next time (a preference);
   * with `bar`, also barring it: it is never given this job again (an assignment that timed out).
   */
  unassign(id: string, epoch: number, reason: string, now: number, bar?: boolean): Promise<Job | undefined>
  /**
   * The worker of this attempt is lost: a detached job with retries left goes back to the queue
   * (its partial output dropped), any other is failed with `reason`.
   */
  loseJob(id: string, epoch: number, reason: string, now: number): Promise<LostResult>
  /** Refreshes the last time an attached caller was seen following the job. */
  touchClient(id: string, now: number): Promise<void>
  /**
   * Cancels an attached job whose caller's last stream on this coordinator closed at `closedAt`, as
   * `requestCancel` does, unless its caller was seen since (`clientSeenAt` >= `closedAt`: it re-opened a
   * stream, maybe through another coordinator). Read locked and decided in one transaction, so a
   * re-open that commits first keeps the job. Undefined when kept or when the machine refuses a cancel.
   */
  cancelIfCallerGone(id: string, closedAt: number, reason: string, now: number): Promise<Job | undefined>

  // Janitor selections (all compare against times this store's clock wrote), as summaries: their
  // arguments are cut as in listings (`truncated`), everything the janitor decides on is whole.
  runningWithoutHeartbeat(before: number): Promise<Job[]>
  assignedSince(before: number): Promise<Job[]>
  /** Queued jobs last changed before `before`, of one lane when given. */
  queuedSince(before: number, lane?: Lane): Promise<Job[]>
  /** Attached, non-terminal jobs whose caller was last seen before `before`. */
  abandoned(before: number): Promise<Job[]>
  /**
   * Deletes jobs (with output, input and timeline) finished before `before`, and workers offline since
   * then. Jobs go in batches of `batch` (default PRUNE_BATCH), one transaction each, until none is left:
   * a server database with a year of old jobs never holds one transaction over all of them.
   */
  prune(before: number, batch?: number): Promise<{ jobs: number; workers: number }>
}
