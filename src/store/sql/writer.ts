import { sql, type ExpressionBuilder, type Insertable, type Kysely } from "kysely"
import { isTerminal, type Job } from "../../shared/protocol/schemas.ts"
import type { HeldOutput } from "../held.ts"
import {
  columnStep,
  reportedByWorker,
  step,
  storedStatus,
  type ColumnGuard,
  type JobEvent as MachineEvent,
  type Step,
} from "../machine.ts"
import type { Store, StoreChange } from "../types.ts"
import type { Database } from "./schema.ts"
import { stderrProblem, toJob, type JobRow, type JobUpdate, type Sql } from "./shared.ts"

/** What a transition the machine allowed writes besides the status: columns, and the timeline's reason. */
export interface Effects {
  set?: JobUpdate
  /** The whole row, for the one transition that creates it (submit). */
  insert?: Insertable<Database["jobs"]>
  reason?: string | null
  /** The attempt's epoch goes one up (written as `epoch + 1`, so the row need not be read first). */
  nextEpoch?: boolean
  /** Runs in the same transaction after the write (e.g. drop a lost attempt's output). */
  after?: (tx: Kysely<Database>, job: Job) => Promise<void>
}

/** The one writer of job transitions, and the reports of what committed (`Store.changes`). */
export interface Writer {
  changes: Store["changes"]
  txEmit: <T>(fn: (t: Kysely<Database>, out: StoreChange[]) => Promise<T>) => Promise<T>
  /**
   * The one writer of job transitions. `s` is what the machine allowed from `job` as read in this
   * transaction (undefined for a new job): the row is written guarded on that (status, epoch), the
   * timeline records it, and the change is queued for the listeners. Undefined when another writer
   * got there first.
   */
  apply(
    t: Kysely<Database>,
    out: StoreChange[],
    job: Job | undefined,
    s: Step,
    fx: Effects,
    now: number,
  ): Promise<Job | undefined>
  /**
   * A job transition on its own: read the job (locked), ask the machine whether `ev` applies to it as
   * it is now, and write it with `effects` in one transaction. Undefined when the machine refuses the
   * event or another writer got there first.
   */
  mutate(id: string, now: number, ev: MachineEvent, effects: (job: Job, s: Step) => Effects): Promise<Job | undefined>
  /**
   * A transition the machine decides from the event alone (`columnStep`: assign, start): one guarded
   * write in one transaction, without reading the row first; `effects` read nothing of the job
   * (`nextEpoch` is the one column they derive, in SQL). Undefined when the row does not match the
   * guard, i.e. when the machine would refuse the event (or for an event it cannot decide so).
   *
   * An assignment also takes a free slot of its worker in the job's lane, checked by the database in the
   * same transaction: undefined when the worker has `max_jobs` transcodes (`max_probe_jobs` probes)
   * assigned or running already, or is unknown, whatever another coordinator's scheduler believed.
   */
  claim(id: string, now: number, ev: MachineEvent, effects: Effects): Promise<Job | undefined>
  ended: (reason: string | null, now: number) => Effects
  lost: (job: Job, s: Step, reason: string, now: number) => Effects
  told: <T>(value: T, ...changes: (StoreChange | false | undefined)[]) => T
}

/**
 * `held`: the coordinator's in-memory stdout (store/held.ts). Every transition to an end writes what is
 * held for the job into its rows, in the transition's transaction, so a finished job's output that its
 * caller has not acknowledged is as durable as its end; the memory is released once that committed.
 */
export function createWriter(c: Sql, held?: HeldOutput): Writer {
  const { tx, dialect, fullJob, withArgs } = c
  const listeners = new Set<(c: StoreChange) => void>()
  /** Tells the listeners what committed. A failing listener is reported, never undoes nor fails the write. */
  const emit = (out: StoreChange[]) => {
    for (const change of out)
      for (const l of listeners) {
        try {
          l(change)
        } catch (err) {
          stderrProblem(`a store change listener failed: ${(err as Error).message}`)
        }
      }
  }
  /** A write transaction whose changes are reported once it has committed (and never if it rolls back). */
  const txEmit = async <T>(fn: (t: Kysely<Database>, out: StoreChange[]) => Promise<T>): Promise<T> => {
    const out: StoreChange[] = []
    const res = await tx((t) => fn(t, out))
    emit(out)
    return res
  }

  // apply and mutate: see Writer.
  const apply: Writer["apply"] = (t, out, job, s, fx, now) =>
    write(t, out, job ? { id: job.id, guard: { status: job.status, epoch: job.epoch }, job } : undefined, s, fx, now)

  /**
   * Writes the transition `s` to the row `at.id` guarded on `at.guard` (inserts when `at` is undefined),
   * records it in the timeline and queues the change. `at.job` is the row as read before, when it was.
   */
  const write = async (
    t: Kysely<Database>,
    out: StoreChange[],
    at: { id: string; guard: ColumnGuard; job?: Job; room?: string } | undefined,
    s: Step,
    fx: Effects,
    now: number,
  ): Promise<Job | undefined> => {
    const job = at?.job
    // With RETURNING the write answers the row it wrote; otherwise the row is read after it.
    let written: JobRow | undefined
    if (!at) {
      const q = t.insertInto("jobs").values({ ...fx.insert!, status: storedStatus(s.to) })
      if (dialect.returning) written = await q.returningAll().executeTakeFirstOrThrow()
      else await q.execute()
    } else {
      const g = at.guard
      let q = t
        .updateTable("jobs")
        .set((eb) => ({
          ...fx.set,
          ...(fx.nextEpoch ? { epoch: eb("epoch", "+", 1) } : {}),
          status: storedStatus(s.to),
          updated_at: now,
        }))
        .where("id", "=", at.id)
        .where("status", "=", g.status)
      if (g.epoch !== undefined) q = q.where("epoch", "=", g.epoch)
      if (g.workerId !== undefined) q = q.where("worker_id", "=", g.workerId)
      if (g.cancelRequested !== undefined) q = q.where("cancel_requested_at", g.cancelRequested ? "is not" : "is", null)
      if (at.room !== undefined && dialect.countsInUpdate) {
        const worker = at.room
        q = q.where((eb) => eb(loadOf(eb, worker), "<", slotsOf(eb, worker)))
      }
      if (dialect.returning) {
        written = await q.returningAll().executeTakeFirst()
        if (!written) return undefined
      } else if ((await q.executeTakeFirst()).numUpdatedRows === 0n) return undefined
    }
    const id = at?.id ?? fx.insert!.id
    // Writing what is held touches job_output only: the jobs row is as the write answered it.
    if (held && job && s.to !== "canceling" && isTerminal(s.to)) await storeHeld(t, held, job)
    const next = (written ? await withArgs(t, written) : await fullJob(t, id))!
    const reason = fx.reason ?? null
    const worker = next.workerId ?? job?.workerId ?? null
    await t
      .insertInto("job_events")
      .values({ job_id: id, at: now, status: s.to, epoch: next.epoch, worker_id: worker, reason })
      .execute()
    await fx.after?.(t, next)
    out.push({
      type: "job",
      job: next,
      from: s.from,
      to: s.to,
      epoch: next.epoch,
      reason,
      event: s.event.type,
      worker,
      byWorker: reportedByWorker(s.event),
    })
    return next
  }

  const mutate: Writer["mutate"] = (id, now, ev, effects) =>
    txEmit(async (t, out) => {
      let q = t.selectFrom("jobs").selectAll().where("id", "=", id)
      if (dialect.forUpdate) q = q.forUpdate()
      const row = await q.executeTakeFirst()
      if (!row) return undefined
      const job = toJob(row)
      const s = step(job, ev)
      if (!s) return undefined
      return apply(t, out, job, s, effects(job, s), now)
    })

  const claim: Writer["claim"] = async (id, now, ev, effects) => {
    const direct = columnStep(ev)
    if (!direct) return undefined
    const room = ev.type === "assign" ? ev.worker : undefined
    return txEmit(async (t, out) => {
      if (room !== undefined && !(await roomFor(t, id, room))) return undefined
      return write(t, out, { id, guard: direct.guard, room }, direct.step, effects, now)
    })
  }

  /**
   * The first half of an assignment's slot check (the second is in its guarded UPDATE, or here where the
   * engine cannot count in it): with row locks, the worker's row is locked first, so two coordinators'
   * assignments to one worker take turns, and the count the next one reads (a statement started after
   * the lock was granted: PostgreSQL's READ COMMITTED snapshot, InnoDB's first consistent read of the
   * transaction) includes what the one before committed. SQLite's write lock (BEGIN IMMEDIATE) already
   * serialises every writer, so it costs no statement there. Every path that writes both a worker row
   * and job rows (an assignment, a heartbeat) locks the worker's row first: one order, no deadlock.
   * False when the worker is unknown or has no free slot (the latter only checked here on engines
   * whose UPDATE cannot count: MySQL/MariaDB).
   */
  const roomFor = async (t: Kysely<Database>, id: string, worker: string): Promise<boolean> => {
    if (!dialect.forUpdate) return true
    const w = await t
      .selectFrom("workers")
      .select(["max_jobs", "max_probe_jobs"])
      .where("id", "=", worker)
      .forUpdate()
      .executeTakeFirst()
    if (!w) return false
    if (dialect.countsInUpdate) return true
    const job = await t
      .selectFrom("jobs")
      .select((eb) => ["lane", loadOf(eb, worker).as("n")])
      .where("id", "=", id)
      .executeTakeFirst()
    if (!job) return false
    return Number(job.n) < Number(job.lane === "probe" ? w.max_probe_jobs : w.max_jobs)
  }

  const ended = (reason: string | null, now: number): Effects => ({ set: { error: reason, finished_at: now }, reason })

  /** Effects of a lost attempt, for the outcome the machine chose: canceled, back to the queue, or failed. */
  const lost = (job: Job, s: Step, reason: string, now: number): Effects => {
    const excluded =
      job.workerId && !job.excluded.includes(job.workerId) ? [...job.excluded, job.workerId] : job.excluded
    if (s.to === "canceled") return ended(reason, now)
    if (s.to === "queued") {
      return {
        set: {
          worker_id: null,
          attempts: job.attempts + 1,
          excluded: JSON.stringify(excluded),
          heartbeat_at: null,
          started_at: null,
          assigned_at: null,
          out_seq: 0,
          progress: null,
          out_dropped: 0,
          trunc_pos: null,
        },
        reason: `${reason}; retry ${job.attempts + 1} of ${job.retries}`,
        // The caller replays output from the start: drop what the lost attempt wrote.
        after: async (t) => void (await t.deleteFrom("job_output").where("job_id", "=", job.id).execute()),
      }
    }
    return {
      set: { error: reason, finished_at: now, attempts: job.attempts + 1, excluded: JSON.stringify(excluded) },
      reason,
    }
  }

  /** Reports a change made outside a job transaction (workers, streams, identities). */
  const told = <T>(value: T, ...changes: (StoreChange | false | undefined)[]): T => {
    emit(changes.filter((c): c is StoreChange => !!c))
    return value
  }

  // Once an end (or a dropped attempt) committed, nothing held for the job is needed any more.
  if (held)
    listeners.add((ch) => {
      if (ch.type === "job" && ch.to !== "canceling" && (isTerminal(ch.to) || ch.to === "queued"))
        held.forget(ch.job.id)
    })

  const changes: Store["changes"] = (listener) => {
    listeners.add(listener)
    return () => void listeners.delete(listener)
  }
  return { changes, txEmit, apply, mutate, claim, ended, lost, told }
}

/** Jobs assigned to or running on `worker` in the lane of the `jobs` row at hand (the slots it takes). */
const loadOf = (eb: ExpressionBuilder<Database, "jobs">, worker: string) =>
  eb
    .selectFrom("jobs as k")
    .select(sql<number>`count(*)`.as("n"))
    .where("k.worker_id", "=", worker)
    .where("k.status", "in", ["assigned", "running"])
    .whereRef("k.lane", "=", "jobs.lane")

/** `worker`'s slots in the lane of the `jobs` row at hand: `max_probe_jobs` for a probe, else `max_jobs` (NULL when unknown). */
const slotsOf = (eb: ExpressionBuilder<Database, "jobs">, worker: string) =>
  eb
    .selectFrom("workers")
    .select((w) =>
      w
        .case()
        .when("jobs.lane", "=", "probe")
        .then(w.ref("workers.max_probe_jobs"))
        .else(w.ref("workers.max_jobs"))
        .end()
        .as("slots"),
    )
    .where("workers.id", "=", worker)

/** Writes the payloads held for the job's attempt into their rows (they stay in memory until the end committed). */
async function storeHeld(t: Kysely<Database>, held: HeldOutput, job: Job) {
  for (const [seq, data] of held.entries(job.id, job.epoch))
    await t
      .updateTable("job_output")
      .set({ data, held: 0 })
      .where("job_id", "=", job.id)
      .where("epoch", "=", job.epoch)
      .where("seq", "=", seq)
      .execute()
}
