import type { ExitReport, Job, JobStatus, Role, User, Worker, WorkerRegistration } from "../shared/protocol/schemas.ts"

export type StoreKind = "sqlite" | "postgres" | "mysql"

export interface NewJob {
  id: string
  requester: string
  binary: string
  args: string[]
  paths: string[]
  cwd: string | null
  stdin: boolean
}

export interface OutputChunk {
  /** Worker-side sequence number within one epoch (1, 2, 3...). */
  seq: number
  stream: "stdout" | "stderr"
  data: Uint8Array
}

export interface StreamRow {
  /** Coordinator-wide position: strictly increasing within a job; the client's resume cursor. */
  pos: number
  stream: "stdout" | "stderr"
  data: Uint8Array
}

export interface InputChunk {
  seq: number
  /** `undefined` data marks the end of stdin. */
  data?: Uint8Array
}

export interface InputRow {
  seq: number
  data: Uint8Array | null
}

export interface JobFilter {
  requester?: string
  status?: JobStatus
  worker?: string
  limit?: number
}

export type UploadResult =
  | { ok: true; job: Job; finished: boolean }
  | { ok: false; reason: "not-found" | "stale" | "gap"; job?: Job; expected?: number }

/**
 * Domain-level persistence. Every state change is one guarded statement (or one transaction): when
 * the guard does not match, another actor won the race and the method returns `undefined`/`false`
 * rather than throwing. Time is passed in (`now`, ms since the epoch) so that callers and tests own
 * the clock.
 */
export interface Store {
  readonly kind: StoreKind
  migrate(): Promise<void>
  close(): Promise<void>

  addUser(name: string, role: Role, key: string, now: number): Promise<User>
  /** The user with its key, for request verification. */
  getCredential(name: string): Promise<(User & { key: string }) | undefined>
  listUsers(): Promise<User[]>
  removeUser(name: string): Promise<boolean>

  upsertWorker(id: string, reg: WorkerRegistration, now: number): Promise<Worker>
  touchWorker(id: string, now: number): Promise<void>
  getWorker(id: string): Promise<Worker | undefined>
  listWorkers(): Promise<Worker[]>

  createJob(job: NewJob, now: number): Promise<Job>
  getJob(id: string): Promise<Job | undefined>
  listJobs(filter: JobFilter): Promise<Job[]>
  /** Oldest queued jobs first. */
  queuedJobs(limit: number): Promise<Job[]>
  /** Jobs assigned or running, per worker id. */
  workerLoads(): Promise<Map<string, number>>
  /** queued → assigned to `worker`, bumping the epoch. Undefined if the job was not queued. */
  assign(id: string, worker: string, now: number): Promise<Job | undefined>
  /** Jobs assigned to `worker` and not yet started (re-offered on every poll until started). */
  assignedTo(worker: string): Promise<Job[]>
  /** assigned → running, only for the worker and epoch of the assignment. */
  start(id: string, worker: string, epoch: number, now: number): Promise<Job | undefined>
  /**
   * Appends output of one attempt (idempotent for repeated sequence numbers, refusing gaps) and, when
   * `exit` is given, ends the job in the same transaction, so a reader never sees the end before the
   * last byte.
   */
  appendOutput(id: string, worker: string, epoch: number, chunks: OutputChunk[], exit: ExitReport | undefined, now: number): Promise<UploadResult>
  readOutput(id: string, after: number, limit: number): Promise<StreamRow[]>
  /** Appends caller stdin (idempotent by sequence number). Returns false if the job is unknown. */
  appendInput(id: string, chunks: InputChunk[]): Promise<boolean>
  readInput(id: string, after: number, limit: number): Promise<InputRow[]>
  /** Ends a non-terminal job as failed with a reason (worker refused it, ...). */
  failJob(id: string, reason: string, now: number): Promise<Job | undefined>
}
