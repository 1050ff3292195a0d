import type { Job, JobStatus } from "../shared/protocol/schemas.ts"

/**
 * The job state machine: every state a job can be in, every event that moves it, and the guard each
 * move needs. Pure (no SQL): the store asks `step` which transition applies to the job as it read it,
 * writes it guarded on the (status, epoch) it read, and reports it; a refused event changes nothing.
 *
 * `canceling` is not a stored state: it is a running job whose worker has been asked to stop (its
 * `cancelRequestedAt` is set). It appears in the timeline and in changes, so it is a target here.
 */
export type JobTarget = JobStatus | "canceling"

/** What happened to a job, with what the guards compare it against. */
export type JobEvent =
  /** A caller submitted it (the only transition from no job). */
  | { type: "submit" }
  /** The scheduler gives it to a worker. */
  | { type: "assign"; worker: string }
  /** The worker of that assignment starts it. */
  | { type: "start"; worker: string; epoch: number }
  /** The worker of that attempt reports the process's end. */
  | { type: "exit"; worker: string; epoch: number; code: number | null; signal: string | null; error?: string }
  /** That attempt's worker is gone, or gave the job up: re-run if detached with retries left, else ended. */
  | { type: "lose"; epoch: number; worker?: string }
  /** The job cannot go on (no worker can run it): failed; with `epoch`, only while still at that epoch. */
  | { type: "fail"; epoch?: number }
  /** Someone asked it to stop: at once if it has not started, through its worker if it runs. */
  | { type: "cancel" }
  /**
   * Its caller was signaled before it started: canceled now, never started (a running job takes the
   * signal itself, so this is refused once it runs).
   */
  | { type: "withdraw" }
  /** A running job asked to cancel whose worker is gone: canceled now. */
  | { type: "forceCancel"; epoch: number }
  /** The assignment timed out or the worker refused it: back to the queue. */
  | { type: "unassign"; epoch: number }
  /**
   * An info command answered from the coordinator's cache of a worker's byte-exact output (issue 12):
   * ended at once with that exit code, never assigned. Only a job just submitted (epoch 0).
   */
  | { type: "answer"; code: number }

export type JobEventType = JobEvent["type"]

/** One allowed transition: from `from` on an event of `event`, to `to`, when `when` holds. */
export interface Rule<E extends JobEventType = JobEventType> {
  from: JobStatus | null
  event: E
  to: JobTarget
  /** The guard, in words (documentation and test names). */
  guard: string
  when: (job: Job, ev: Extract<JobEvent, { type: E }>) => boolean
}

const ofAttempt = (j: Job, ev: { epoch: number; worker?: string }) =>
  j.epoch === ev.epoch && (ev.worker === undefined || j.workerId === ev.worker)
const cancelAsked = (j: Job) => j.cancelRequestedAt !== null
const retriesLeft = (j: Job) => !j.attached && j.attempts < j.retries
const clean = (ev: { code: number | null; signal: string | null; error?: string }) =>
  ev.code === 0 && !ev.signal && !ev.error

const rule = <E extends JobEventType>(r: Rule<E>): Rule => r as unknown as Rule

/** The lost-attempt outcome from `from` (a lost worker while assigned or running, or an abandoned run). */
const lost = (from: JobStatus): Rule[] => [
  rule({
    from,
    event: "lose",
    to: "canceled",
    guard: "same epoch, cancel requested",
    when: (j, e) => ofAttempt(j, e) && cancelAsked(j),
  }),
  rule({
    from,
    event: "lose",
    to: "queued",
    guard: "same epoch, detached with retries left",
    when: (j, e) => ofAttempt(j, e) && !cancelAsked(j) && retriesLeft(j),
  }),
  rule({
    from,
    event: "lose",
    to: "failed",
    guard: "same epoch, attached or no retries left",
    when: (j, e) => ofAttempt(j, e) && !cancelAsked(j) && !retriesLeft(j),
  }),
]

/**
 * Every allowed transition; for one (from, event) the first rule whose guard holds wins. Anything not
 * listed is refused: in particular nothing leaves a terminal state.
 */
export const RULES: readonly Rule[] = [
  rule({ from: null, event: "submit", to: "queued", guard: "none", when: () => true }),
  rule({ from: "queued", event: "assign", to: "assigned", guard: "none", when: () => true }),
  rule({
    from: "assigned",
    event: "start",
    to: "running",
    guard: "same worker and epoch, no cancel requested",
    when: (j, e) => ofAttempt(j, e) && !cancelAsked(j),
  }),
  rule({
    from: "running",
    event: "exit",
    to: "canceled",
    guard: "same worker and epoch, cancel requested",
    when: (j, e) => ofAttempt(j, e) && cancelAsked(j),
  }),
  rule({
    from: "running",
    event: "exit",
    to: "completed",
    guard: "same worker and epoch, exit code 0 without signal or error",
    when: (j, e) => ofAttempt(j, e) && !cancelAsked(j) && clean(e),
  }),
  rule({
    from: "running",
    event: "exit",
    to: "failed",
    guard: "same worker and epoch, any other exit",
    when: (j, e) => ofAttempt(j, e) && !cancelAsked(j) && !clean(e),
  }),
  ...lost("assigned"),
  ...lost("running"),
  ...(["queued", "assigned", "running"] as const).map((from) =>
    rule({
      from,
      event: "fail",
      to: "failed",
      guard: "same epoch when one is given",
      when: (j, e) => e.epoch === undefined || j.epoch === e.epoch,
    }),
  ),
  rule({ from: "queued", event: "cancel", to: "canceled", guard: "none", when: () => true }),
  rule({ from: "assigned", event: "cancel", to: "canceled", guard: "none", when: () => true }),
  rule({
    from: "running",
    event: "cancel",
    to: "canceling",
    guard: "no cancel requested yet",
    when: (j) => !cancelAsked(j),
  }),
  rule({ from: "queued", event: "withdraw", to: "canceled", guard: "none", when: () => true }),
  rule({ from: "assigned", event: "withdraw", to: "canceled", guard: "none", when: () => true }),
  rule({
    from: "running",
    event: "forceCancel",
    to: "canceled",
    guard: "same epoch",
    when: (j, e) => j.epoch === e.epoch,
  }),
  rule({ from: "assigned", event: "unassign", to: "queued", guard: "same epoch", when: (j, e) => j.epoch === e.epoch }),
  rule({
    from: "queued",
    event: "answer",
    to: "completed",
    guard: "never assigned, exit code 0",
    when: (j, e) => j.epoch === 0 && e.code === 0,
  }),
  rule({
    from: "queued",
    event: "answer",
    to: "failed",
    guard: "never assigned, any other exit code",
    when: (j, e) => j.epoch === 0 && e.code !== 0,
  }),
]

/** A transition the machine allowed. */
export interface Step {
  from: JobStatus | null
  to: JobTarget
  event: JobEvent
}

/** The transition `ev` makes from `job` (undefined for a new job), or undefined when the machine refuses it. */
export function step(job: Job | undefined, ev: JobEvent): Step | undefined {
  const from = job?.status ?? null
  for (const r of RULES) {
    if (r.event !== ev.type || r.from !== from) continue
    // A rule from a state always has a job; only `submit` runs without one.
    if (r.when(job as Job, ev as never)) return { from, to: r.to, event: ev }
  }
  return undefined
}

/**
 * Whether the attempt's own worker reported `ev` (its start, its exit, or its giving the job up), rather
 * than the scheduler, the janitor, a caller or an administrator deciding it: a `lose` carries the worker
 * only when that worker reported it.
 */
export const reportedByWorker = (ev: JobEvent): boolean =>
  ev.type === "start" || ev.type === "exit" || (ev.type === "lose" && ev.worker !== undefined)

/** The stored status a target means: `canceling` is a running job with its cancel requested. */
export const storedStatus = (to: JobTarget): JobStatus => (to === "canceling" ? "running" : to)

/** The stored columns a guarded write compares, for a transition decided from the event alone. */
export interface ColumnGuard {
  status: JobStatus
  epoch?: number
  workerId?: string
  /** Whether `cancelRequestedAt` is set. */
  cancelRequested?: boolean
}

/**
 * The transition `ev` makes, decided from the event alone, with the columns the write must be guarded
 * on: for events that only one rule can take and whose guard reads stored columns only (the scheduler's
 * assignment, the worker's start claim), so the store writes it without reading the row first. A job
 * that does not match the guard is one the machine refuses for that event, exactly as `step` would
 * (machine.test.ts compares the two over every combination). Undefined for every other event: those
 * read the job and ask `step`.
 */
export function columnStep(ev: JobEvent): { step: Step; guard: ColumnGuard } | undefined {
  if (ev.type === "assign") return { step: { from: "queued", to: "assigned", event: ev }, guard: { status: "queued" } }
  if (ev.type === "start")
    return {
      step: { from: "assigned", to: "running", event: ev },
      guard: { status: "assigned", epoch: ev.epoch, workerId: ev.worker, cancelRequested: false },
    }
  return undefined
}
