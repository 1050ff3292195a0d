import { sql, type Kysely, type Selectable } from "kysely"
import type { ExitReport, Job, JobStatus, Role, User, Worker, WorkerRegistration } from "../../shared/protocol/schemas.ts"
import { ConflictError } from "../../shared/errors.ts"
import type { Database } from "./schema.ts"
import { migrate } from "./migrations.ts"
import { writeTransaction } from "./tx.ts"
import type { InputChunk, InputRow, JobFilter, NewJob, OutputChunk, Store, StoreKind, StreamRow, UploadResult } from "../types.ts"

const STREAM = { stdout: 1, stderr: 2 } as const

type JobRow = Selectable<Database["jobs"]>
type WorkerRow = Selectable<Database["workers"]>

function toJob(r: JobRow): Job {
  return {
    id: r.id,
    requester: r.requester,
    binary: r.binary,
    args: JSON.parse(r.args),
    paths: JSON.parse(r.paths),
    cwd: r.cwd,
    stdin: Number(r.stdin) === 1,
    status: r.status as JobStatus,
    epoch: Number(r.epoch),
    workerId: r.worker_id,
    exitCode: r.exit_code === null ? null : Number(r.exit_code),
    exitSignal: r.exit_signal,
    error: r.error,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    assignedAt: num(r.assigned_at),
    startedAt: num(r.started_at),
    finishedAt: num(r.finished_at),
  }
}

function toWorker(r: WorkerRow): Worker {
  return {
    id: r.id,
    binaries: JSON.parse(r.binaries),
    paths: JSON.parse(r.paths),
    maxJobs: Number(r.max_jobs),
    version: r.version,
    capabilities: JSON.parse(r.capabilities),
    status: "online",
    registeredAt: Number(r.registered_at),
    lastSeen: Number(r.last_seen),
  }
}

const num = (x: number | string | null) => (x === null ? null : Number(x))
const bytes = (x: Uint8Array | Buffer) => (x instanceof Uint8Array ? x : new Uint8Array(x))

/**
 * The one Store implementation, over any Kysely dialect. Per-dialect differences are limited to
 * what `kind` switches on (RETURNING support, row locking).
 */
export function createSqlStore(db: Kysely<Database>, kind: StoreKind, onClose: () => Promise<void> = async () => {}): Store {
  const tx = <T>(fn: (tx: Kysely<Database>) => Promise<T>) => writeTransaction(db, kind, fn)

  const jobById = async (id: string) => {
    const row = await db.selectFrom("jobs").selectAll().where("id", "=", id).executeTakeFirst()
    return row ? toJob(row) : undefined
  }

  /** Runs a guarded UPDATE and returns the row it changed, or undefined when the guard failed. */
  const guarded = async (id: string, run: (q: Kysely<Database>) => Promise<{ numUpdatedRows: bigint }>): Promise<Job | undefined> => {
    const res = await run(db)
    if (res.numUpdatedRows === 0n) return undefined
    return jobById(id)
  }

  return {
    kind,
    migrate: () => migrate(db, kind),
    async close() {
      await db.destroy()
      await onClose()
    },

    async addUser(name: string, role: Role, key: string, now: number): Promise<User> {
      const exists = await db.selectFrom("users").select("name").where("name", "=", name).executeTakeFirst()
      if (exists) throw new ConflictError(`user ${name} already exists`)
      await db.insertInto("users").values({ name, role, key, created_at: now }).execute()
      return { name, role, createdAt: now }
    },
    async getCredential(name) {
      const r = await db.selectFrom("users").selectAll().where("name", "=", name).executeTakeFirst()
      return r ? { name: r.name, role: r.role as Role, key: r.key, createdAt: Number(r.created_at) } : undefined
    },
    async listUsers() {
      const rows = await db.selectFrom("users").select(["name", "role", "created_at"]).orderBy("name").execute()
      return rows.map((r) => ({ name: r.name, role: r.role as Role, createdAt: Number(r.created_at) }))
    },
    async removeUser(name) {
      const res = await db.deleteFrom("users").where("name", "=", name).executeTakeFirst()
      return res.numDeletedRows > 0n
    },

    async upsertWorker(id: string, reg: WorkerRegistration, now: number) {
      const values = {
        binaries: JSON.stringify(reg.binaries),
        paths: JSON.stringify(reg.paths),
        max_jobs: reg.maxJobs,
        version: reg.version,
        capabilities: JSON.stringify(reg.capabilities ?? {}),
        last_seen: now,
      }
      const res = await db.updateTable("workers").set(values).where("id", "=", id).executeTakeFirst()
      if (res.numUpdatedRows === 0n) await db.insertInto("workers").values({ id, registered_at: now, ...values }).execute()
      return (await this.getWorker(id))!
    },
    async touchWorker(id, now) {
      await db.updateTable("workers").set({ last_seen: now }).where("id", "=", id).execute()
    },
    async getWorker(id) {
      const r = await db.selectFrom("workers").selectAll().where("id", "=", id).executeTakeFirst()
      return r ? toWorker(r) : undefined
    },
    async listWorkers() {
      const rows = await db.selectFrom("workers").selectAll().orderBy("id").execute()
      return rows.map(toWorker)
    },

    async createJob(j: NewJob, now: number) {
      await db
        .insertInto("jobs")
        .values({
          id: j.id,
          requester: j.requester,
          binary: j.binary,
          args: JSON.stringify(j.args),
          paths: JSON.stringify(j.paths),
          cwd: j.cwd,
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
        })
        .execute()
      return (await jobById(j.id))!
    },
    getJob: jobById,
    async listJobs(f: JobFilter) {
      let q = db.selectFrom("jobs").selectAll()
      if (f.requester) q = q.where("requester", "=", f.requester)
      if (f.status) q = q.where("status", "=", f.status)
      if (f.worker) q = q.where("worker_id", "=", f.worker)
      const rows = await q.orderBy("id", "desc").limit(f.limit ?? 100).execute()
      return rows.map(toJob)
    },
    async queuedJobs(limit) {
      const rows = await db.selectFrom("jobs").selectAll().where("status", "=", "queued").orderBy("id").limit(limit).execute()
      return rows.map(toJob)
    },
    async workerLoads() {
      const rows = await db
        .selectFrom("jobs")
        .select(["worker_id", sql<number>`count(*)`.as("n")])
        .where("status", "in", ["assigned", "running"])
        .groupBy("worker_id")
        .execute()
      return new Map(rows.filter((r) => r.worker_id).map((r) => [r.worker_id!, Number(r.n)]))
    },
    assign(id, worker, now) {
      // The guard on status makes a double assignment impossible, whatever races with it.
      return guarded(id, (q) =>
        q
          .updateTable("jobs")
          .set((eb) => ({ status: "assigned", worker_id: worker, epoch: eb("epoch", "+", 1), out_seq: 0, assigned_at: now, updated_at: now }))
          .where("id", "=", id)
          .where("status", "=", "queued")
          .executeTakeFirst(),
      )
    },
    async assignedTo(worker) {
      const rows = await db.selectFrom("jobs").selectAll().where("worker_id", "=", worker).where("status", "=", "assigned").orderBy("id").execute()
      return rows.map(toJob)
    },
    start(id, worker, epoch, now) {
      return guarded(id, (q) =>
        q
          .updateTable("jobs")
          .set({ status: "running", started_at: now, updated_at: now })
          .where("id", "=", id)
          .where("status", "=", "assigned")
          .where("worker_id", "=", worker)
          .where("epoch", "=", epoch)
          .executeTakeFirst(),
      )
    },
    async appendOutput(id, worker, epoch, chunks: OutputChunk[], exit: ExitReport | undefined, now): Promise<UploadResult> {
      return tx(async (tx): Promise<UploadResult> => {
        let q = tx.selectFrom("jobs").selectAll().where("id", "=", id)
        if (kind !== "sqlite") q = q.forUpdate()
        const row = await q.executeTakeFirst()
        if (!row) return { ok: false, reason: "not-found" }
        const job = toJob(row)
        if (job.workerId !== worker || job.epoch !== epoch) return { ok: false, reason: "stale", job }
        if (job.status !== "running") {
          // A retried final upload after the job already ended is a success, not a conflict.
          if (job.finishedAt !== null && job.status !== "canceled" && chunks.every((c) => c.seq <= Number(row.out_seq))) return { ok: true, job, finished: true }
          return { ok: false, reason: "stale", job }
        }
        let last = Number(row.out_seq)
        const fresh: OutputChunk[] = []
        for (const c of chunks) {
          if (c.seq <= last) continue
          if (c.seq !== last + 1) return { ok: false, reason: "gap", job, expected: last + 1 }
          fresh.push(c)
          last = c.seq
        }
        if (fresh.length) {
          await tx
            .insertInto("job_output")
            .values(fresh.map((c) => ({ job_id: id, epoch, seq: c.seq, stream: STREAM[c.stream], data: c.data })))
            .execute()
        }
        if (!exit) {
          if (fresh.length) await tx.updateTable("jobs").set({ out_seq: last, updated_at: now }).where("id", "=", id).execute()
          return { ok: true, job, finished: false }
        }
        const status: JobStatus = exit.code === 0 && !exit.signal && !exit.error ? "completed" : "failed"
        await tx
          .updateTable("jobs")
          .set({
            out_seq: last,
            status,
            exit_code: exit.code,
            exit_signal: exit.signal,
            error: exit.error ?? null,
            finished_at: now,
            updated_at: now,
          })
          .where("id", "=", id)
          .execute()
        return { ok: true, job: { ...job, status, exitCode: exit.code, exitSignal: exit.signal, error: exit.error ?? null, finishedAt: now, updatedAt: now }, finished: true }
      })
    },
    async readOutput(id, after, limit): Promise<StreamRow[]> {
      const rows = await db
        .selectFrom("job_output")
        .select(["pos", "stream", "data"])
        .where("job_id", "=", id)
        .where("pos", ">", after)
        .orderBy("pos")
        .limit(limit)
        .execute()
      return rows.map((r) => ({ pos: Number(r.pos), stream: r.stream === STREAM.stdout ? "stdout" : "stderr", data: bytes(r.data) }))
    },
    async appendInput(id, chunks: InputChunk[]) {
      const job = await db.selectFrom("jobs").select("id").where("id", "=", id).executeTakeFirst()
      if (!job) return false
      if (!chunks.length) return true
      let q = db.insertInto("job_input").values(chunks.map((c) => ({ job_id: id, seq: c.seq, data: c.data ?? null })))
      q = kind === "mysql" ? q.ignore() : q.onConflict((oc) => oc.columns(["job_id", "seq"]).doNothing())
      await q.execute()
      return true
    },
    async readInput(id, after, limit): Promise<InputRow[]> {
      const rows = await db.selectFrom("job_input").select(["seq", "data"]).where("job_id", "=", id).where("seq", ">", after).orderBy("seq").limit(limit).execute()
      return rows.map((r) => ({ seq: Number(r.seq), data: r.data === null ? null : bytes(r.data) }))
    },
    failJob(id, reason, now) {
      return guarded(id, (q) =>
        q
          .updateTable("jobs")
          .set({ status: "failed", error: reason, finished_at: now, updated_at: now })
          .where("id", "=", id)
          .where("status", "in", ["queued", "assigned", "running"])
          .executeTakeFirst(),
      )
    },
  }
}

