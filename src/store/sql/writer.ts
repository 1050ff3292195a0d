import type { Insertable, Kysely } from "kysely"
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
    at: { id: string; guard: ColumnGuard; job?: Job } | undefined,
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
    return txEmit((t, out) => write(t, out, { id, guard: direct.guard }, direct.step, effects, now))
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
