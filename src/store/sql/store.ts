import { sql, type Kysely, type Selectable, type Updateable } from "kysely"
import {
  JobStatus as JobStatuses,
  type ExitReport,
  type Job,
  type JobEvent,
  type JobStatus,
  type ProgressReport,
  type Role,
  type User,
  type Worker,
  type WorkerRegistration,
  type WorkerStatus,
} from "../../shared/protocol/schemas.ts"
import { ConflictError } from "../../shared/errors.ts"
import type { Database } from "./schema.ts"
import { ARGS_HEAD_CHARS, migrate } from "./migrations.ts"
import type { SqlDialect } from "./dialect.ts"
import { writeTransaction } from "./tx.ts"
import { Kind } from "../../shared/protocol/frames.ts"
import { keyVault } from "./keys.ts"
import { memoryKeyring, type Keyring } from "../../shared/auth/keyring.ts"
import type {
  ActiveCounts,
  HeldJob,
  InputChunk,
  InputRow,
  JobFilter,
  JobListing,
  ListingSize,
  LostResult,
  NewJob,
  OutputChunk,
  Stats,
  Store,
  StreamRow,
  UploadResult,
} from "../types.ts"

const STREAM = { stdout: 1, stderr: 2 } as const

type JobRow = Selectable<Database["jobs"]>
type WorkerRow = Selectable<Database["workers"]>
type JobUpdate = Updateable<Database["jobs"]>

/** A decided transition: the columns to write and the timeline entry to record. */
interface Change {
  set: JobUpdate
  status: string
  reason?: string | null
  /** Runs in the same transaction after the update (e.g. drop a lost attempt's output). */
  after?: (tx: Kysely<Database>, job: Job) => Promise<void>
}

const ACTIVE: JobStatus[] = ["queued", "assigned", "running"]

function toJob(r: JobRow): Job {
  return {
    id: r.id,
    requester: r.requester,
    binary: r.binary,
    args: argsOf(r.args),
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
    attached: Number(r.attached) === 1,
    retries: Number(r.retries),
    attempts: Number(r.attempts),
    excluded: r.excluded ? JSON.parse(r.excluded) : [],
    heartbeatAt: num(r.heartbeat_at),
    clientSeenAt: num(r.client_seen_at),
    cancelRequestedAt: num(r.cancel_requested_at),
    progress: r.progress ? JSON.parse(r.progress) : null,
  }
}

/**
 * Characters of the error a summary reads. The other columns are bounded where they are written
 * (paths: 256 names, cwd: 4096 characters, excluded: the workers that exist; the row's `args` is a
 * head of ARGS_HEAD_CHARS) and are read whole, so a summary is as good as the job for scheduling and state.
 */
const SUMMARY_ERROR_CHARS = 2048
type SummaryRow = JobRow & { error_len: number | null }

/** The row's arguments: the whole JSON, or the whole leading arguments of a head (see `whole`). */
function argsOf(text: string): string[] {
  const all = whole(text)
  return all ?? stringsPrefix(text)
}

/** The arguments when `text` is all of their JSON (a proper prefix of a JSON array never parses). */
function whole(text: string): string[] | undefined {
  if (!text.endsWith("]")) return undefined
  try {
    return JSON.parse(text) as string[]
  } catch {
    return undefined
  }
}

/** A row's `args` for arguments whose JSON is `json`: all of it, or a head that does not split a surrogate pair. */
function argsHead(json: string): string {
  if (json.length <= ARGS_HEAD_CHARS) return json
  const cut = ARGS_HEAD_CHARS - (/[\uD800-\uDBFF]/.test(json[ARGS_HEAD_CHARS - 1]) ? 1 : 0)
  return json.slice(0, cut)
}

/**
 * The elements of a JSON array of strings that are whole in `text`, a prefix of that array's JSON
 * (what `substr` read). Work is bounded by the prefix, never by the full column.
 */
export function stringsPrefix(text: string | null): string[] {
  const out: string[] = []
  if (!text) return out
  let i = text.indexOf("[") + 1
  if (i === 0) return out
  for (;;) {
    while (text[i] === "," || text[i] === " ") i++
    if (text[i] !== '"') return out
    let j = i + 1
    while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1
    if (j >= text.length) return out
    out.push(JSON.parse(text.slice(i, j + 1)) as string)
    i = j + 1
  }
}

function toListing(r: SummaryRow, argsChars: number): JobListing {
  const head = r.args.length > argsChars ? r.args.slice(0, argsChars) : r.args
  const all = whole(head)
  return {
    ...toJob({ ...r, args: "[]" }),
    args: all ?? stringsPrefix(head),
    truncated: !all || (r.error_len !== null && Number(r.error_len) > SUMMARY_ERROR_CHARS),
    argsChars: Number(r.args_chars),
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
    status: r.status as WorkerStatus,
    registeredAt: Number(r.registered_at),
    lastSeen: Number(r.last_seen),
    drainRequested: Number(r.drain_requested) === 1,
  }
}

/** A listing's filter, newest first. */
// Kysely's builder types differ per selection; the filter only adds WHERE clauses on jobs' columns.
function filtered(q: any, f: JobFilter): { execute(): Promise<unknown[]> } {
  if (f.requester) q = q.where("requester", "=", f.requester)
  if (f.status) q = q.where("status", "=", f.status)
  if (f.statuses) q = f.statuses.length ? q.where("status", "in", f.statuses) : q.where(sql<boolean>`1 = 0`)
  if (f.worker) q = q.where("worker_id", "=", f.worker)
  if (f.since !== undefined) q = q.where("created_at", ">=", f.since)
  if (f.before) q = q.where("id", "<", f.before)
  return q.orderBy("id", "desc").limit(f.limit ?? 100)
}

const WORKER_STATES: WorkerStatus[] = ["registering", "online", "draining", "offline"]

const num = (x: number | string | null) => (x === null ? null : Number(x))
const bytes = (x: Uint8Array | Buffer) => (x instanceof Uint8Array ? x : new Uint8Array(x))

export interface SqlStoreOptions {
  /** The secrets stored keys are sealed under (default: a random one in memory, for `:memory:` and tests). */
  keys?: Keyring
  /** A stored key that cannot be used (wrong secret, altered row): the identity is refused and this says why. */
  onKeyProblem?: (message: string) => void
  onClose?: () => Promise<void>
}

const stderrProblem = (m: string) => void process.stderr.write(`dffmpeg: error: ${m}\n`)

/**
 * The one Store implementation, over any Kysely dialect. Per-engine differences are limited to
 * what the dialect object says (row locking, skipping duplicates, column types).
 */
export function createSqlStore(db: Kysely<Database>, dialect: SqlDialect, opts: SqlStoreOptions = {}): Store {
  const tx = <T>(fn: (tx: Kysely<Database>) => Promise<T>) => writeTransaction(db, dialect, fn)
  const vault = keyVault(db, dialect, opts.keys ?? memoryKeyring(), opts.onKeyProblem ?? stderrProblem)

  /** A job with its whole arguments: from its row, or from job_args when the row holds only their head. */
  const withArgs = async (q: Kysely<Database>, row: JobRow): Promise<Job> => {
    if (whole(row.args)) return toJob(row)
    const full = await q.selectFrom("job_args").select("args").where("job_id", "=", row.id).executeTakeFirst()
    return toJob(full ? { ...row, args: full.args } : row)
  }
  const fullJob = async (q: Kysely<Database>, id: string) => {
    const row = await q.selectFrom("jobs").selectAll().where("id", "=", id).executeTakeFirst()
    return row ? withArgs(q, row) : undefined
  }
  const jobById = (id: string) => fullJob(db, id)
  /** Every column of the row (whose `args` is at most a head), the error cut by the database. */
  const summaries = () =>
    db
      .selectFrom("jobs")
      .select([
        "id",
        "requester",
        "binary",
        "stdin",
        "status",
        "epoch",
        "worker_id",
        "out_seq",
        "exit_code",
        "exit_signal",
        "created_at",
        "updated_at",
        "assigned_at",
        "started_at",
        "finished_at",
        "attached",
        "retries",
        "attempts",
        "heartbeat_at",
        "client_seen_at",
        "cancel_requested_at",
        "progress",
        "paths",
        "excluded",
        "cwd",
        "args",
        "args_chars",
        sql<string | null>`substr(error, 1, ${SUMMARY_ERROR_CHARS})`.as("error"),
        sql<number | null>`length(error)`.as("error_len"),
      ])
  /** Janitor selections: summaries, since a queued job waiting for a slot is selected on every pass. */
  const summariesWhere = async (build: (q: any) => any, limit = 1000): Promise<JobListing[]> =>
    ((await build(summaries()).orderBy("id").limit(limit).execute()) as SummaryRow[]).map((r) =>
      toListing(r, ARGS_HEAD_CHARS),
    )
  const argsCharsOf = (size?: ListingSize) =>
    Math.min(ARGS_HEAD_CHARS, Math.max(2, Math.floor(size?.argsChars ?? ARGS_HEAD_CHARS)))

  const jobsWhere = async (build: (q: any) => any, limit = 1000) => {
    const rows = (await build(db.selectFrom("jobs").selectAll()).orderBy("id").limit(limit).execute()) as JobRow[]
    return Promise.all(rows.map((r) => withArgs(db, r)))
  }

  /**
   * The one way a job changes state: read it (locked), let `decide` pick the change from what is
   * there now, write it guarded on the (status, epoch) that was read, and record it in the timeline,
   * all in one transaction. Undefined when `decide` declines or another writer got there first.
   */
  const mutate = (id: string, now: number, decide: (job: Job) => Change | undefined): Promise<Job | undefined> =>
    tx(async (t) => {
      let q = t.selectFrom("jobs").selectAll().where("id", "=", id)
      if (dialect.forUpdate) q = q.forUpdate()
      const row = await q.executeTakeFirst()
      if (!row) return undefined
      const job = toJob(row)
      const c = decide(job)
      if (!c) return undefined
      const res = await t
        .updateTable("jobs")
        .set({ ...c.set, updated_at: now })
        .where("id", "=", id)
        .where("status", "=", job.status)
        .where("epoch", "=", job.epoch)
        .executeTakeFirst()
      if (res.numUpdatedRows === 0n) return undefined
      const next = (await fullJob(t, id))!
      await recordEvent(t, next, now, c.status, c.reason ?? null, next.workerId ?? job.workerId)
      await c.after?.(t, next)
      return next
    })

  const recordEvent = (
    t: Kysely<Database>,
    job: Job,
    now: number,
    status: string,
    reason: string | null,
    worker: string | null,
  ) =>
    t
      .insertInto("job_events")
      .values({ job_id: job.id, at: now, status, epoch: job.epoch, worker_id: worker, reason })
      .execute()

  const isActive = (j: Job) => ACTIVE.includes(j.status)
  const ended = (status: JobStatus, reason: string | null, now: number): Change => ({
    set: { status, error: reason, finished_at: now },
    status,
    reason,
  })

  /** A lost attempt: back to the queue when detached with retries left, failed otherwise. */
  const lost = (job: Job, reason: string, now: number): Change => {
    const excluded =
      job.workerId && !job.excluded.includes(job.workerId) ? [...job.excluded, job.workerId] : job.excluded
    if (job.cancelRequestedAt !== null) return ended("canceled", reason, now)
    if (!job.attached && job.attempts < job.retries) {
      return {
        set: {
          status: "queued",
          worker_id: null,
          attempts: job.attempts + 1,
          excluded: JSON.stringify(excluded),
          heartbeat_at: null,
          started_at: null,
          assigned_at: null,
          out_seq: 0,
          progress: null,
        },
        status: "queued",
        reason: `${reason}; retry ${job.attempts + 1} of ${job.retries}`,
        // The caller replays output from the start: drop what the lost attempt wrote.
        after: async (t) => void (await t.deleteFrom("job_output").where("job_id", "=", job.id).execute()),
      }
    }
    return {
      ...ended("failed", reason, now),
      set: {
        status: "failed",
        error: reason,
        finished_at: now,
        attempts: job.attempts + 1,
        excluded: JSON.stringify(excluded),
      },
    }
  }

  return {
    kind: dialect.name,
    async migrate() {
      await migrate(db, dialect)
      return vault.sealAll()
    },
    async ping() {
      await sql`select 1`.execute(db)
    },
    async close() {
      await db.destroy()
      await opts.onClose?.()
    },

    addUser: (name: string, role: Role, key: string, now: number): Promise<User> =>
      vault.write(name, key, async (t, sealed) => {
        const exists = await t.selectFrom("users").select("name").where("name", "=", name).executeTakeFirst()
        if (exists) throw new ConflictError(`user ${name} already exists`)
        await t.insertInto("users").values({ name, role, key: sealed, created_at: now }).execute()
        return { name, role, createdAt: now }
      }),
    async getCredential(name) {
      const r = await db.selectFrom("users").selectAll().where("name", "=", name).executeTakeFirst()
      const key = r && vault.read(r.name, r.key)
      return r && key !== undefined
        ? { name: r.name, role: r.role as Role, key, createdAt: Number(r.created_at) }
        : undefined
    },
    resealKeys: (next) => vault.reseal(next),
    async listUsers() {
      const rows = await db.selectFrom("users").select(["name", "role", "created_at"]).orderBy("name").execute()
      return rows.map((r) => ({ name: r.name, role: r.role as Role, createdAt: Number(r.created_at) }))
    },
    async removeUser(name) {
      const res = await db.deleteFrom("users").where("name", "=", name).executeTakeFirst()
      return res.numDeletedRows > 0n
    },
    async getUser(name) {
      const r = await db
        .selectFrom("users")
        .select(["name", "role", "created_at"])
        .where("name", "=", name)
        .executeTakeFirst()
      return r ? { name: r.name, role: r.role as Role, createdAt: Number(r.created_at) } : undefined
    },
    setUserKey: (name, key) =>
      vault.write(name, key, async (t, sealed) => {
        const res = await t.updateTable("users").set({ key: sealed }).where("name", "=", name).executeTakeFirst()
        return res.numUpdatedRows > 0n
      }),

    async upsertWorker(id: string, reg: WorkerRegistration, token: string, now: number) {
      const values = {
        binaries: JSON.stringify(reg.binaries),
        paths: JSON.stringify(reg.paths),
        max_jobs: reg.maxJobs,
        version: reg.version,
        capabilities: JSON.stringify(reg.capabilities ?? {}),
        last_seen: now,
        self_draining: reg.draining ? 1 : 0,
      }
      await tx(async (t) => {
        const cur = await t
          .selectFrom("workers")
          .select(["status", "drain_requested"])
          .where("id", "=", id)
          .executeTakeFirst()
        // A known, verified worker keeps its state (re-registration); a new or offline one must verify.
        const verified = cur && cur.status !== "offline" && cur.status !== "registering"
        // An administrator's drain outlives the worker's own view of itself (restarts included).
        const status = !verified
          ? "registering"
          : reg.draining || Number(cur.drain_requested) === 1
            ? "draining"
            : "online"
        if (cur)
          await t
            .updateTable("workers")
            .set({ ...values, status, ...(verified ? {} : { token }) })
            .where("id", "=", id)
            .execute()
        else
          await t
            .insertInto("workers")
            .values({ id, registered_at: now, ...values, status, token, drain_requested: 0 })
            .execute()
      })
      return (await this.getWorker(id))!
    },
    async workerToken(id) {
      const w = await db.selectFrom("workers").select("token").where("id", "=", id).executeTakeFirst()
      return w?.token ?? undefined
    },
    async verifyWorker(id, token, now) {
      const w = await db.selectFrom("workers").select(["status", "token"]).where("id", "=", id).executeTakeFirst()
      if (!w || w.status === "offline" || w.token !== token) return false
      if (w.status !== "registering") return true
      const res = await db
        .updateTable("workers")
        .set((eb) => ({
          status: eb.case().when("drain_requested", "=", 1).then("draining").else("online").end(),
          token: null,
          last_seen: now,
        }))
        .where("id", "=", id)
        .where("token", "=", token)
        .executeTakeFirst()
      return res.numUpdatedRows > 0n
    },
    async touchWorker(id, now) {
      await db
        .updateTable("workers")
        .set({ last_seen: now })
        .where("id", "=", id)
        .where("status", "!=", "offline")
        .execute()
    },
    async setWorkerStatus(id, status, now) {
      const res = await db
        .updateTable("workers")
        .set({ status, last_seen: now })
        .where("id", "=", id)
        .executeTakeFirst()
      return res.numUpdatedRows > 0n
    },
    async getWorker(id) {
      const r = await db.selectFrom("workers").selectAll().where("id", "=", id).executeTakeFirst()
      return r ? toWorker(r) : undefined
    },
    async listWorkers() {
      const rows = await db.selectFrom("workers").selectAll().orderBy("id").execute()
      return rows.map(toWorker)
    },
    async requestDrain(id, on, now) {
      const done = await tx(async (t) => {
        const cur = await t
          .selectFrom("workers")
          .select(["status", "self_draining"])
          .where("id", "=", id)
          .executeTakeFirst()
        if (!cur) return false
        // Only a serving worker changes state now; a registering or offline one picks the flag up when
        // it is verified. An undrain never revives a worker that is draining because it is stopping.
        const serving = cur.status === "online" || cur.status === "draining"
        const status = serving ? (on || Number(cur.self_draining) === 1 ? "draining" : "online") : cur.status
        await t
          .updateTable("workers")
          .set({ drain_requested: on ? 1 : 0, status })
          .where("id", "=", id)
          .execute()
        return true
      })
      return done ? this.getWorker(id) : undefined
    },
    async reapWorkers(before) {
      const stale = await db
        .selectFrom("workers")
        .select("id")
        .where("status", "!=", "offline")
        .where("last_seen", "<", before)
        .execute()
      const out: string[] = []
      for (const w of stale) {
        const res = await db
          .updateTable("workers")
          .set({ status: "offline" })
          .where("id", "=", w.id)
          .where("status", "!=", "offline")
          .where("last_seen", "<", before)
          .executeTakeFirst()
        if (res.numUpdatedRows > 0n) out.push(w.id)
      }
      return out
    },

    async createJob(j: NewJob, now: number) {
      const args = JSON.stringify(j.args)
      const head = argsHead(args)
      return tx(async (t) => {
        if (head !== args) await t.insertInto("job_args").values({ job_id: j.id, args }).execute()
        await t
          .insertInto("jobs")
          .values({
            id: j.id,
            requester: j.requester,
            binary: j.binary,
            args: head,
            args_chars: args.length,
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
            attached: j.attached ? 1 : 0,
            retries: j.retries,
            attempts: 0,
            excluded: null,
            heartbeat_at: null,
            client_seen_at: j.attached ? now : null,
            cancel_requested_at: null,
            progress: null,
          })
          .execute()
        const job = {
          ...toJob((await t.selectFrom("jobs").selectAll().where("id", "=", j.id).executeTakeFirst())!),
          args: j.args,
        }
        await recordEvent(t, job, now, "queued", null, null)
        return job
      })
    },
    getJob: jobById,
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
    async queuedJobs(limit, after) {
      let q = summaries().where("status", "=", "queued")
      if (after) q = q.where("id", ">", after)
      const rows = await q.orderBy("id").limit(limit).execute()
      return (rows as SummaryRow[]).map((r) => toListing(r, 2))
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
    // The guard on status makes a double assignment impossible, whatever races with it.
    assign: (id, worker, now) =>
      mutate(id, now, (j) =>
        j.status === "queued"
          ? {
              set: {
                status: "assigned",
                worker_id: worker,
                epoch: j.epoch + 1,
                out_seq: 0,
                assigned_at: now,
                heartbeat_at: null,
                progress: null,
              },
              status: "assigned",
            }
          : undefined,
      ),
    assignedTo: (worker) => jobsWhere((q) => q.where("worker_id", "=", worker).where("status", "=", "assigned")),
    start: (id, worker, epoch, now) =>
      mutate(id, now, (j) =>
        j.status === "assigned" && j.workerId === worker && j.epoch === epoch && j.cancelRequestedAt === null
          ? { set: { status: "running", started_at: now, heartbeat_at: now }, status: "running" }
          : undefined,
      ),
    async heartbeat(worker, held, now) {
      const stale: HeldJob[] = []
      await tx(async (t) => {
        await t
          .updateTable("workers")
          .set({ last_seen: now })
          .where("id", "=", worker)
          .where("status", "!=", "offline")
          .execute()
        for (const h of held) {
          const res = await t
            .updateTable("jobs")
            .set({ heartbeat_at: now })
            .where("id", "=", h.id)
            .where("worker_id", "=", worker)
            .where("epoch", "=", h.epoch)
            .where("status", "in", ["assigned", "running"])
            .executeTakeFirst()
          if (res.numUpdatedRows === 0n) stale.push(h)
        }
      })
      return stale
    },
    async appendOutput(
      id,
      worker,
      epoch,
      chunks: OutputChunk[],
      exit: ExitReport | undefined,
      now,
      report?: ProgressReport,
    ): Promise<UploadResult> {
      const progress = report ? JSON.stringify({ ...report, at: now }) : undefined
      return tx(async (tx): Promise<UploadResult> => {
        let q = tx.selectFrom("jobs").selectAll().where("id", "=", id)
        if (dialect.forUpdate) q = q.forUpdate()
        const row = await q.executeTakeFirst()
        if (!row) return { ok: false, reason: "not-found" }
        const job = toJob(row)
        if (job.workerId !== worker || job.epoch !== epoch) return { ok: false, reason: "stale", job }
        if (job.status !== "running") {
          // A retried final upload after the job already ended is a success, not a conflict.
          if (job.finishedAt !== null && chunks.every((c) => c.seq <= Number(row.out_seq)))
            return { ok: true, job, finished: true }
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
          if (fresh.length || progress)
            await tx
              .updateTable("jobs")
              .set({ out_seq: last, heartbeat_at: now, updated_at: now, ...(progress ? { progress } : {}) })
              .where("id", "=", id)
              .execute()
          return { ok: true, job, finished: false }
        }
        let change: Change
        if (exit.abandoned) change = lost(job, exit.abandoned, now)
        else {
          const status: JobStatus =
            job.cancelRequestedAt !== null
              ? "canceled"
              : exit.code === 0 && !exit.signal && !exit.error
                ? "completed"
                : "failed"
          const reason = status === "canceled" ? (job.error ?? "canceled") : (exit.error ?? null)
          change = {
            set: { status, exit_code: exit.code, exit_signal: exit.signal, error: reason, finished_at: now },
            status,
            reason,
          }
        }
        const requeued = change.set.status === "queued"
        await tx
          .updateTable("jobs")
          .set({
            ...change.set,
            out_seq: requeued ? 0 : last,
            updated_at: now,
            ...(requeued ? { progress: null } : progress ? { progress } : {}),
          })
          .where("id", "=", id)
          .execute()
        const next = (await fullJob(tx, id))!
        await recordEvent(tx, next, now, change.status, change.reason ?? null, worker)
        await change.after?.(tx, next)
        return { ok: true, job: next, finished: true, ended: true }
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
      return rows.map((r) => ({
        pos: Number(r.pos),
        stream: r.stream === STREAM.stdout ? "stdout" : "stderr",
        data: bytes(r.data),
      }))
    },
    async lastOutput(id, stream, limit): Promise<StreamRow[]> {
      const rows = await db
        .selectFrom("job_output")
        .select(["pos", "data"])
        .where("job_id", "=", id)
        .where("stream", "=", STREAM[stream])
        .orderBy("pos", "desc")
        .limit(limit)
        .execute()
      return rows.reverse().map((r) => ({ pos: Number(r.pos), stream, data: bytes(r.data) }))
    },
    async lastOutputBytes(id, stream, limit, maxBytes) {
      const sizes = await db
        .selectFrom("job_output")
        .select(["pos", sql<number>`length(data)`.as("n")])
        .where("job_id", "=", id)
        .where("stream", "=", STREAM[stream])
        .orderBy("pos", "desc")
        .limit(limit)
        .execute()
      // Newest first: whole chunks while they fit, then the last bytes of the one that does not.
      let total = 0
      let kept = 0
      let cut: { pos: number; keep: number } | undefined
      for (const r of sizes) {
        const n = Number(r.n)
        if (total + n > maxBytes) {
          if (maxBytes > total) cut = { pos: Number(r.pos), keep: maxBytes - total }
          break
        }
        total += n
        kept++
      }
      const truncated = kept < sizes.length
      const rows: StreamRow[] = []
      if (cut) {
        // substr() of a blob counts bytes; a negative start counts from the end.
        const r = await db
          .selectFrom("job_output")
          .select(sql<Uint8Array>`substr(data, ${-cut.keep})`.as("tail"))
          .where("job_id", "=", id)
          .where("pos", "=", cut.pos)
          .executeTakeFirst()
        if (r) rows.push({ pos: cut.pos, stream, data: bytes(r.tail) })
      }
      if (kept) {
        const oldest = Number(sizes[kept - 1].pos)
        const full = await db
          .selectFrom("job_output")
          .select(["pos", "data"])
          .where("job_id", "=", id)
          .where("stream", "=", STREAM[stream])
          .where("pos", ">=", oldest)
          .where("pos", "<=", Number(sizes[0].pos))
          .orderBy("pos")
          .execute()
        for (const r of full) rows.push({ pos: Number(r.pos), stream, data: bytes(r.data) })
      }
      return { rows, truncated }
    },
    async stats(): Promise<Stats> {
      const jobs = Object.fromEntries(JobStatuses.options.map((s) => [s, 0])) as Record<JobStatus, number>
      for (const r of await db
        .selectFrom("jobs")
        .select(["status", sql<number>`count(*)`.as("n")])
        .groupBy("status")
        .execute()) {
        if (r.status in jobs) jobs[r.status as JobStatus] = Number(r.n)
      }
      const oldest = await db
        .selectFrom("jobs")
        .select(sql<number | null>`min(created_at)`.as("t"))
        .where("status", "=", "queued")
        .executeTakeFirst()
      const workers = Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<WorkerStatus, number>
      for (const r of await db
        .selectFrom("workers")
        .select(["status", sql<number>`count(*)`.as("n")])
        .groupBy("status")
        .execute()) {
        if (r.status in workers) workers[r.status as WorkerStatus] = Number(r.n)
      }
      const total = await db
        .selectFrom("workers")
        .select(sql<number | null>`sum(max_jobs)`.as("n"))
        .where("status", "in", ["online", "draining"])
        .executeTakeFirst()
      const used = await db
        .selectFrom("jobs")
        .select(sql<number>`count(*)`.as("n"))
        .where("status", "in", ["assigned", "running"])
        .executeTakeFirst()
      return {
        jobs,
        oldestQueuedAt: oldest?.t === null || oldest?.t === undefined ? null : Number(oldest.t),
        workers,
        slots: { used: Number(used?.n ?? 0), total: Number(total?.n ?? 0) },
      }
    },
    async appendInput(id, chunks: InputChunk[]) {
      const job = await db.selectFrom("jobs").select("id").where("id", "=", id).executeTakeFirst()
      if (!job) return false
      if (!chunks.length) return true
      const q = db
        .insertInto("job_input")
        .values(chunks.map((c) => ({ job_id: id, seq: c.seq, kind: c.kind, data: c.data })))
      await dialect.insertIgnore(q, ["job_id", "seq"]).execute()
      return true
    },
    async readInput(id, after, limit): Promise<InputRow[]> {
      const rows = await db
        .selectFrom("job_input")
        .select(["seq", "kind", "data"])
        .where("job_id", "=", id)
        .where("seq", ">", after)
        .orderBy("seq")
        .limit(limit)
        .execute()
      return rows.map((r) => ({
        seq: Number(r.seq),
        kind: Number(r.kind),
        data: r.data === null ? new Uint8Array(0) : bytes(r.data),
      }))
    },
    async inputBytes(id) {
      // length() of a blob is read from the record header: the data itself is not loaded.
      const r = await db
        .selectFrom("job_input")
        .select([
          sql<number | null>`sum(case when kind = ${Kind.stdin} then length(data) else 0 end)`.as("bytes"),
          sql<number | null>`max(seq)`.as("last"),
        ])
        .where("job_id", "=", id)
        .executeTakeFirst()
      return { bytes: Number(r?.bytes ?? 0), lastSeq: Number(r?.last ?? 0) }
    },
    failJob: (id, reason, now, epoch) =>
      mutate(id, now, (j) =>
        isActive(j) && (epoch === undefined || j.epoch === epoch) ? ended("failed", reason, now) : undefined,
      ),
    requestCancel: (id, reason, now) =>
      mutate(id, now, (j) => {
        if (j.status === "queued" || j.status === "assigned") return ended("canceled", reason, now)
        if (j.status === "running" && j.cancelRequestedAt === null)
          return { set: { cancel_requested_at: now, error: reason }, status: "canceling", reason }
        return undefined
      }),
    forceCanceled: (id, epoch, reason, now) =>
      mutate(id, now, (j) =>
        j.status === "running" && j.epoch === epoch ? ended("canceled", reason, now) : undefined,
      ),
    unassign: (id, epoch, reason, now) =>
      mutate(id, now, (j) => {
        if (j.status !== "assigned" || j.epoch !== epoch) return undefined
        const excluded = j.workerId && !j.excluded.includes(j.workerId) ? [...j.excluded, j.workerId] : j.excluded
        return {
          set: { status: "queued", worker_id: null, assigned_at: null, excluded: JSON.stringify(excluded) },
          status: "queued",
          reason,
        }
      }),
    async loseJob(id, epoch, reason, now): Promise<LostResult> {
      const job = await mutate(id, now, (j) =>
        (j.status === "running" || j.status === "assigned") && j.epoch === epoch ? lost(j, reason, now) : undefined,
      )
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
    queuedSince: (before) => summariesWhere((q) => q.where("status", "=", "queued").where("updated_at", "<", before)),
    abandoned: (before) =>
      summariesWhere((q) =>
        q
          .where("attached", "=", 1)
          .where("status", "in", ACTIVE)
          .where("cancel_requested_at", "is", null)
          .where("client_seen_at", "<", before),
      ),
    async prune(before) {
      return tx(async (t) => {
        const old = t.selectFrom("jobs").select("id").where("finished_at", "<", before)
        await t.deleteFrom("job_output").where("job_id", "in", old).execute()
        await t.deleteFrom("job_input").where("job_id", "in", old).execute()
        await t.deleteFrom("job_args").where("job_id", "in", old).execute()
        await t.deleteFrom("job_events").where("job_id", "in", old).execute()
        const jobs = await t.deleteFrom("jobs").where("finished_at", "<", before).executeTakeFirst()
        const workers = await t
          .deleteFrom("workers")
          .where("status", "=", "offline")
          .where("last_seen", "<", before)
          .executeTakeFirst()
        return { jobs: Number(jobs.numDeletedRows), workers: Number(workers.numDeletedRows) }
      })
    },
  }
}
