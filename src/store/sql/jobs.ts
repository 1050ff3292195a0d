import { sql, type ExpressionBuilder, type Insertable, type Kysely } from "kysely"
import type { Job, JobEvent } from "../../shared/protocol/schemas.ts"
import { step, type Step } from "../machine.ts"
import type { ActiveCounts, Answer, JobFilter, LaneLoad, LostResult, NewJob, Store, StoreChange } from "../types.ts"
import type { Database } from "./schema.ts"
import {
  ACTIVE,
  argsHead,
  filtered,
  STREAM,
  toJob,
  toListing,
  type JobRow,
  type JobUpdate,
  type Sql,
  type SummaryRow,
} from "./shared.ts"
import type { Effects, Writer } from "./writer.ts"

/** Jobs: submission, reads and listings, the transitions other than the end of a run (streams.ts), the janitor's selections. */
export function jobMethods(
  c: Sql,
  w: Writer,
): Pick<
  Store,
  | "createJob"
  | "createAnswered"
  | "jobBySubmission"
  | "answerJob"
  | "getJob"
  | "retryJob"
  | "listJobs"
  | "listJobSummaries"
  | "getJobSummary"
  | "activeJobCounts"
  | "events"
  | "queuedJobs"
  | "workerLoads"
  | "laneLoads"
  | "assign"
  | "assignedTo"
  | "pollFor"
  | "start"
  | "failJob"
  | "requestCancel"
  | "withdrawJob"
  | "forceCanceled"
  | "unassign"
  | "loseJob"
  | "touchClient"
  | "cancelIfCallerGone"
  | "runningWithoutHeartbeat"
  | "assignedSince"
  | "queuedSince"
  | "abandoned"
> {
  const { db, jobById, withArgs, summaries, summariesWhere, argsCharsOf, jobsWhere } = c
  const { txEmit, apply, mutate, claim, ended, lost } = w
  /** Inserts a new job (queued) in transaction `t`, with its long arguments and files. */
  const insertJob = async (
    t: Kysely<Database>,
    out: StoreChange[],
    j: NewJob,
    now: number,
    reason?: string,
  ): Promise<Job> => {
    const args = JSON.stringify(j.args)
    const head = argsHead(args)
    if (head !== args) await t.insertInto("job_args").values({ job_id: j.id, args }).execute()
    const files = j.files ?? []
    if (files.length)
      await t
        .insertInto("job_files")
        .values({ job_id: j.id, files: JSON.stringify(files) })
        .execute()
    const insert: Insertable<Database["jobs"]> = {
      id: j.id,
      requester: j.requester,
      binary: j.binary,
      args: head,
      args_chars: args.length,
      paths: JSON.stringify(j.paths),
      cwd: j.cwd,
      env: JSON.stringify(j.env ?? {}),
      files: files.length,
      stdin: j.stdin ? 1 : 0,
      status: "queued",
      epoch: 0,
      worker_id: null,
      out_seq: 0,
      exit_code: null,
      exit_signal: null,
      error: null,
      created_at: now,
      updated_at: now,
      assigned_at: null,
      started_at: null,
      finished_at: null,
      attached: j.attached ? 1 : 0,
      path_tokens: j.pathTokens ? 1 : 0,
      retries: j.retries,
      attempts: 0,
      excluded: null,
      heartbeat_at: null,
      client_seen_at: j.attached ? now : null,
      cancel_requested_at: null,
      progress: null,
      lane: j.lane ?? "transcode",
      priority: j.priority ?? "normal",
      needs: j.needs ? JSON.stringify(j.needs) : null,
      pin: j.pin ?? null,
      queue_key: j.queueKey ?? now,
      barred: null,
      submission: j.submission ?? null,
      acked_pos: 0,
      out_dropped: 0,
      trunc_pos: null,
    }
    return (await apply(t, out, undefined, step(undefined, { type: "submit" })!, { insert, reason }, now))!
  }
  /** Ends `job` (queued, never assigned) with `answer` in transaction `t`: undefined when the machine refuses it. */
  const answerIn = async (
    t: Kysely<Database>,
    out: StoreChange[],
    job: Job,
    answer: Answer,
    reason: string,
    now: number,
  ): Promise<Job | undefined> => {
    const s = step(job, { type: "answer", code: answer.code })
    if (!s) return undefined
    const rows = answer.rows.filter((r) => r.data.length)
    const set = { exit_code: answer.code, exit_signal: null, error: null, finished_at: now, out_seq: rows.length }
    const done = await apply(t, out, job, s, { set, reason }, now)
    if (!done) return undefined
    if (rows.length) {
      await t
        .insertInto("job_output")
        .values(rows.map((r, i) => ({ job_id: job.id, epoch: 0, seq: i + 1, stream: STREAM[r.stream], data: r.data })))
        .execute()
      out.push({ type: "output", job: job.id })
    }
    return done
  }
  const laneLoads = async () => {
    const rows = await db
      .selectFrom("jobs")
      .select(["worker_id", "lane", sql<number>`count(*)`.as("n")])
      .where("status", "in", ["assigned", "running"])
      .groupBy(["worker_id", "lane"])
      .execute()
    const loads = new Map<string, LaneLoad>()
    for (const r of rows) {
      if (!r.worker_id) continue
      const l = loads.get(r.worker_id) ?? { probe: 0, transcode: 0 }
      l[r.lane === "probe" ? "probe" : "transcode"] += Number(r.n)
      loads.set(r.worker_id, l)
    }
    return loads
  }
  /** A cancel's effects: marked while it runs (its worker stops it), ended at once before. */
  const cancelEffects = (s: Step, reason: string, now: number): Effects =>
    s.to === "canceling" ? { set: { cancel_requested_at: now, error: reason }, reason } : ended(reason, now)
  return {
    createJob: (j, now) => txEmit((t, out) => insertJob(t, out, j, now)),
    createAnswered: (j: NewJob, answer: Answer, reason: string, now: number) =>
      txEmit(async (t, out) => {
        const done = await answerIn(t, out, await insertJob(t, out, j, now), answer, reason, now)
        if (!done) throw new Error(`job ${j.id} cannot be answered`)
        return done
      }),
    answerJob: (id: string, answer: Answer, reason: string, now: number) =>
      txEmit(async (t, out) => {
        let q = t.selectFrom("jobs").selectAll().where("id", "=", id)
        if (c.dialect.forUpdate) q = q.forUpdate()
        const row = await q.executeTakeFirst()
        return row ? answerIn(t, out, toJob(row), answer, reason, now) : undefined
      }),
    async jobBySubmission(requester, key) {
      const row = await db
        .selectFrom("jobs")
        .select("id")
        .where("requester", "=", requester)
        .where("submission", "=", key)
        .executeTakeFirst()
      return row ? jobById(row.id) : undefined
    },
    getJob: jobById,
    retryJob: (id, fresh, by, now) =>
      txEmit(async (t, out) => {
        let q = t.selectFrom("jobs").selectAll().where("id", "=", id)
        if (c.dialect.forUpdate) q = q.forUpdate()
        const row = await q.executeTakeFirst()
        // Read again under the lock: only a failed detached job is submitted again.
        if (!row || row.status !== "failed" || Number(row.attached) === 1) return undefined
        const old = await withArgs(t, row)
        const next: NewJob = {
          id: fresh.id,
          requester: old.requester,
          binary: old.binary,
          args: old.args,
          paths: old.paths,
          cwd: old.cwd,
          env: old.env,
          files: old.files,
          stdin: old.stdin,
          attached: false,
          pathTokens: old.pathTokens,
          retries: old.retries,
          lane: old.lane,
          priority: old.priority,
          needs: old.needs,
          queueKey: fresh.queueKey,
        }
        const job = await insertJob(t, out, next, now, `retry of ${id} (by ${by})`)
        await t
          .insertInto("job_events")
          .values({
            job_id: id,
            at: now,
            status: "failed",
            epoch: old.epoch,
            worker_id: old.workerId,
            reason: `retried as ${fresh.id} (by ${by})`,
          })
          .execute()
        return job
      }),
    async listJobs(f: JobFilter) {
      const rows = await filtered(db.selectFrom("jobs").selectAll(), f).execute()
      return Promise.all((rows as JobRow[]).map((r) => withArgs(db, r)))
    },
    async listJobSummaries(f, size) {
      const chars = argsCharsOf(size)
      const rows = await filtered(summaries(), f).execute()
      return (rows as SummaryRow[]).map((r) => toListing(r, chars))
    },
    async getJobSummary(id, size) {
      const chars = argsCharsOf(size)
      const row = await summaries().where("id", "=", id).executeTakeFirst()
      return row ? toListing(row as SummaryRow, chars) : undefined
    },
    async activeJobCounts(requester) {
      const counts: ActiveCounts = { queued: 0, assigned: 0, running: 0 }
      const rows = await db
        .selectFrom("jobs")
        .select(["status", sql<number>`count(*)`.as("n")])
        .where("requester", "=", requester)
        .where("status", "in", ["queued", "assigned", "running"])
        .groupBy("status")
        .execute()
      for (const r of rows) if (r.status in counts) counts[r.status as keyof ActiveCounts] = Number(r.n)
      return counts
    },
    async events(id) {
      const rows = await db.selectFrom("job_events").selectAll().where("job_id", "=", id).orderBy("id").execute()
      return rows.map(
        (r): JobEvent => ({
          at: Number(r.at),
          status: r.status,
          epoch: Number(r.epoch),
          workerId: r.worker_id,
          reason: r.reason,
        }),
      )
    },
    async queuedJobs(limit, after, lane) {
      let q = summaries().where("status", "=", "queued")
      if (lane) q = q.where("lane", "=", lane)
      if (after)
        q = q.where((eb: ExpressionBuilder<Database, "jobs">) =>
          eb.or([eb("queue_key", ">", after.key), eb.and([eb("queue_key", "=", after.key), eb("id", ">", after.id)])]),
        )
      const rows = await q.orderBy("queue_key").orderBy("id").limit(limit).execute()
      return (rows as SummaryRow[]).map((r) => toListing(r, 2))
    },
    laneLoads,
    async workerLoads() {
      const lanes = await laneLoads()
      return new Map([...lanes].filter(([, l]) => l.transcode > 0).map(([w, l]) => [w, l.transcode]))
    },
    // The guard on status makes a double assignment impossible, whatever races with it.
    // Decided by the machine from the event alone: one guarded write each, the row is not read first.
    assign: (id, worker, now) =>
      claim(
        id,
        now,
        { type: "assign", worker },
        {
          nextEpoch: true,
          set: {
            worker_id: worker,
            out_seq: 0,
            assigned_at: now,
            heartbeat_at: null,
            progress: null,
          },
        },
      ),
    assignedTo: (worker) => jobsWhere((q) => q.where("worker_id", "=", worker).where("status", "=", "assigned")),
    async pollFor(worker, following, holding = []) {
      // One statement for both halves of a poll's answer, with the running jobs not followed whose downlink
      // is still quiet; EXISTS and NOT IN are plain SQL on every dialect.
      const rows = (await db
        .selectFrom("jobs")
        .selectAll()
        .select((eb) =>
          eb
            .exists(eb.selectFrom("job_input").select("seq").whereRef("job_input.job_id", "=", "jobs.id"))
            .as("has_input"),
        )
        .where("worker_id", "=", worker)
        .where((eb) =>
          eb.or([
            eb.and([eb("status", "=", "assigned"), ...(holding.length ? [eb("id", "not in", [...holding])] : [])]),
            ...(following === undefined
              ? []
              : [
                  eb.and([
                    eb("status", "=", "running"),
                    ...(following.length ? [eb("id", "not in", [...following])] : []),
                  ]),
                ]),
          ]),
        )
        .orderBy("id")
        .limit(1000)
        .execute()) as (JobRow & { has_input: unknown })[]
      const assigned = await Promise.all(rows.filter((r) => r.status === "assigned").map((r) => withArgs(db, r)))
      const unfollowed = rows.filter((r) => r.status === "running")
      const due = unfollowed.filter((r) => r.cancel_requested_at !== null || Boolean(Number(r.has_input)))
      return {
        assigned,
        downlink: due.map((r) => ({ id: r.id, epoch: Number(r.epoch) })),
        quiet: unfollowed.length - due.length,
      }
    },
    start: (id, worker, epoch, now, reason) =>
      claim(
        id,
        now,
        { type: "start", worker, epoch },
        { set: { started_at: now, heartbeat_at: now }, reason: reason ?? null },
      ),
    failJob: (id, reason, now, epoch) => mutate(id, now, { type: "fail", epoch }, () => ended(reason, now)),
    requestCancel: (id, reason, now) => mutate(id, now, { type: "cancel" }, (_, s) => cancelEffects(s, reason, now)),
    cancelIfCallerGone: (id, closedAt, reason, now) =>
      txEmit(async (t, out) => {
        let q = t.selectFrom("jobs").selectAll().where("id", "=", id)
        if (c.dialect.forUpdate) q = q.forUpdate()
        const row = await q.executeTakeFirst()
        if (!row) return undefined
        const job = toJob(row)
        // Seen since that stream closed: a stream of its caller is open (here or on another coordinator).
        if (job.clientSeenAt !== null && job.clientSeenAt >= closedAt) return undefined
        const s = step(job, { type: "cancel" })
        return s ? apply(t, out, job, s, cancelEffects(s, reason, now), now) : undefined
      }),
    withdrawJob: (id, reason, code, now) =>
      mutate(id, now, { type: "withdraw" }, () => {
        const e = ended(reason, now)
        return { ...e, set: { ...e.set, exit_code: code } }
      }),
    forceCanceled: (id, epoch, reason, now) =>
      mutate(id, now, { type: "forceCancel", epoch }, () => ended(reason, now)),
    unassign: (id, epoch, reason, now, bar) =>
      mutate(id, now, { type: "unassign", epoch }, (j) => {
        const add = (list: string[]) => (j.workerId && !list.includes(j.workerId) ? [...list, j.workerId] : list)
        const set: JobUpdate = { worker_id: null, assigned_at: null, excluded: JSON.stringify(add(j.excluded)) }
        if (bar) set.barred = JSON.stringify(add(j.barred))
        return { set, reason }
      }),
    async loseJob(id, epoch, reason, now): Promise<LostResult> {
      const job = await mutate(id, now, { type: "lose", epoch }, (j, s) => lost(j, s, reason, now))
      return job ? { job, requeued: job.status === "queued" } : undefined
    },
    async touchClient(id, now) {
      await db
        .updateTable("jobs")
        .set({ client_seen_at: now })
        .where("id", "=", id)
        .where("status", "in", ACTIVE)
        .execute()
    },
    runningWithoutHeartbeat: (before) =>
      summariesWhere((q) => q.where("status", "=", "running").where("heartbeat_at", "<", before)),
    assignedSince: (before) =>
      summariesWhere((q) => q.where("status", "=", "assigned").where("assigned_at", "<", before)),
    queuedSince: (before, lane) =>
      summariesWhere((q) => {
        const queued = q.where("status", "=", "queued").where("updated_at", "<", before)
        return lane ? queued.where("lane", "=", lane) : queued
      }),
    abandoned: (before) =>
      summariesWhere((q) =>
        q
          .where("attached", "=", 1)
          .where("status", "in", ACTIVE)
          .where("cancel_requested_at", "is", null)
          .where("client_seen_at", "<", before),
      ),
  }
}
