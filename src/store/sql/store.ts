import { sql, type Insertable, type Kysely, type Selectable, type Updateable } from "kysely"
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
import { writeTransaction } from "./tx.ts"
import { Kind } from "../../shared/protocol/frames.ts"
import { keyVault } from "./keys.ts"
import { step, storedStatus, type JobEvent as MachineEvent, type Step } from "../machine.ts"
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
  StoreChange,
  StoreKind,
  StreamRow,
  UploadResult,
} from "../types.ts"

const STREAM = { stdout: 1, stderr: 2 } as const

type JobRow = Selectable<Database["jobs"]>
type WorkerRow = Selectable<Database["workers"]>
type JobUpdate = Updateable<Database["jobs"]>

/** What a transition the machine allowed writes besides the status: columns, and the timeline's reason. */
interface Effects {
  set?: JobUpdate
  /** The whole row, for the one transition that creates it (submit). */
  insert?: Insertable<Database["jobs"]>
  reason?: string | null
  /** Runs in the same transaction after the write (e.g. drop a lost attempt's output). */
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
 * The one Store implementation, over any Kysely dialect. Per-dialect differences are limited to
 * what `kind` switches on (RETURNING support, row locking).
 */
export function createSqlStore(db: Kysely<Database>, kind: StoreKind, opts: SqlStoreOptions = {}): Store {
  const tx = <T>(fn: (tx: Kysely<Database>) => Promise<T>) => writeTransaction(db, kind, fn)
  const vault = keyVault(db, kind, opts.keys ?? memoryKeyring(), opts.onKeyProblem ?? stderrProblem)

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

  const listeners = new Set<(c: StoreChange) => void>()
  /** Tells the listeners what committed. A failing listener is reported, never undoes nor fails the write. */
  const emit = (out: StoreChange[]) => {
    for (const c of out)
      for (const l of listeners) {
        try {
          l(c)
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

  /**
   * The one writer of job transitions. `s` is what the machine allowed from `job` as read in this
   * transaction (undefined for a new job): the row is written guarded on that (status, epoch), the
   * timeline records it, and the change is queued for the listeners. Undefined when another writer
   * got there first.
   */
  const apply = async (
    t: Kysely<Database>,
    out: StoreChange[],
    job: Job | undefined,
    s: Step,
    fx: Effects,
    now: number,
  ): Promise<Job | undefined> => {
    if (!job)
      await t
        .insertInto("jobs")
        .values({ ...fx.insert!, status: storedStatus(s.to) })
        .execute()
    else {
      const res = await t
        .updateTable("jobs")
        .set({ ...fx.set, status: storedStatus(s.to), updated_at: now })
        .where("id", "=", job.id)
        .where("status", "=", job.status)
        .where("epoch", "=", job.epoch)
        .executeTakeFirst()
      if (res.numUpdatedRows === 0n) return undefined
    }
    const id = job?.id ?? fx.insert!.id
    const next = (await fullJob(t, id))!
    const reason = fx.reason ?? null
    const worker = next.workerId ?? job?.workerId ?? null
    await t
      .insertInto("job_events")
      .values({ job_id: id, at: now, status: s.to, epoch: next.epoch, worker_id: worker, reason })
      .execute()
    await fx.after?.(t, next)
    out.push({ type: "job", job: next, from: s.from, to: s.to, epoch: next.epoch, reason, event: s.event.type, worker })
    return next
  }

  /**
   * A job transition on its own: read the job (locked), ask the machine whether `ev` applies to it as it
   * is now, and write it with `effects` in one transaction. Undefined when the machine refuses the event
   * or another writer got there first.
   */
  const mutate = (
    id: string,
    now: number,
    ev: MachineEvent,
    effects: (job: Job, s: Step) => Effects,
  ): Promise<Job | undefined> =>
    txEmit(async (t, out) => {
      let q = t.selectFrom("jobs").selectAll().where("id", "=", id)
      if (kind !== "sqlite") q = q.forUpdate()
      const row = await q.executeTakeFirst()
      if (!row) return undefined
      const job = toJob(row)
      const s = step(job, ev)
      if (!s) return undefined
      return apply(t, out, job, s, effects(job, s), now)
    })

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

  return {
    kind,
    async migrate() {
      await migrate(db, kind)
      return vault.sealAll()
    },
    async close() {
      await db.destroy()
      await opts.onClose?.()
    },
    changes(listener) {
      listeners.add(listener)
      return () => void listeners.delete(listener)
    },

    addUser: async (name: string, role: Role, key: string, now: number): Promise<User> =>
      told(
        await vault.write(name, key, async (t, sealed) => {
          const exists = await t.selectFrom("users").select("name").where("name", "=", name).executeTakeFirst()
          if (exists) throw new ConflictError(`user ${name} already exists`)
          await t.insertInto("users").values({ name, role, key: sealed, created_at: now }).execute()
          return { name, role, createdAt: now }
        }),
        { type: "user", name },
      ),
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
      const removed = res.numDeletedRows > 0n
      return told(removed, removed && { type: "user", name })
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
      return told((await this.getWorker(id))!, { type: "worker", worker: id, what: "registered" })
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
      const verified = res.numUpdatedRows > 0n
      return told(verified, verified && { type: "worker", worker: id, what: "verified" })
    },
    async touchWorker(id, now) {
      const res = await db
        .updateTable("workers")
        .set({ last_seen: now })
        .where("id", "=", id)
        .where("status", "!=", "offline")
        .executeTakeFirst()
      told(undefined, res.numUpdatedRows > 0n && { type: "worker", worker: id, what: "seen" })
    },
    async setWorkerStatus(id, status, now) {
      const res = await db
        .updateTable("workers")
        .set({ status, last_seen: now })
        .where("id", "=", id)
        .executeTakeFirst()
      const set = res.numUpdatedRows > 0n
      return told(set, set && { type: "worker", worker: id, what: "status" })
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
      if (!done) return undefined
      return told(await this.getWorker(id), { type: "worker", worker: id, what: "drain" })
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
      return told(out, ...out.map((worker): StoreChange => ({ type: "worker", worker, what: "reaped" })))
    },

    async createJob(j: NewJob, now: number) {
      const args = JSON.stringify(j.args)
      const head = argsHead(args)
      return txEmit(async (t, out) => {
        if (head !== args) await t.insertInto("job_args").values({ job_id: j.id, args }).execute()
        const insert: Insertable<Database["jobs"]> = {
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
        }
        return (await apply(t, out, undefined, step(undefined, { type: "submit" })!, { insert }, now))!
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
      mutate(id, now, { type: "assign", worker }, (j) => ({
        set: {
          worker_id: worker,
          epoch: j.epoch + 1,
          out_seq: 0,
          assigned_at: now,
          heartbeat_at: null,
          progress: null,
        },
      })),
    assignedTo: (worker) => jobsWhere((q) => q.where("worker_id", "=", worker).where("status", "=", "assigned")),
    start: (id, worker, epoch, now) =>
      mutate(id, now, { type: "start", worker, epoch }, () => ({ set: { started_at: now, heartbeat_at: now } })),
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
      return txEmit(async (tx, out): Promise<UploadResult> => {
        let q = tx.selectFrom("jobs").selectAll().where("id", "=", id)
        if (kind !== "sqlite") q = q.forUpdate()
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
        if (fresh.length || progress) out.push({ type: "output", job: id })
        if (!exit) {
          if (fresh.length || progress)
            await tx
              .updateTable("jobs")
              .set({ out_seq: last, heartbeat_at: now, updated_at: now, ...(progress ? { progress } : {}) })
              .where("id", "=", id)
              .execute()
          return { ok: true, job, finished: false }
        }
        // The end goes through the machine like every transition, in this transaction: a reader never
        // sees the job ended before its last bytes.
        const ev: MachineEvent = exit.abandoned
          ? { type: "lose", epoch, worker }
          : { type: "exit", worker, epoch, code: exit.code, signal: exit.signal, error: exit.error }
        const s = step(job, ev)
        if (!s) return { ok: false, reason: "stale", job }
        let fx: Effects
        if (exit.abandoned) fx = lost(job, s, exit.abandoned, now)
        else {
          const reason = s.to === "canceled" ? (job.error ?? "canceled") : (exit.error ?? null)
          fx = { set: { exit_code: exit.code, exit_signal: exit.signal, error: reason, finished_at: now }, reason }
        }
        // A re-queued attempt starts its output and progress again (its effects say so); an end keeps them.
        if (s.to !== "queued") fx.set = { ...fx.set, out_seq: last, ...(progress ? { progress } : {}) }
        const next = await apply(tx, out, job, s, fx, now)
        if (!next) return { ok: false, reason: "stale", job }
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
      let q = db
        .insertInto("job_input")
        .values(chunks.map((c) => ({ job_id: id, seq: c.seq, kind: c.kind, data: c.data })))
      q = kind === "mysql" ? q.ignore() : q.onConflict((oc) => oc.columns(["job_id", "seq"]).doNothing())
      await q.execute()
      return told(true, { type: "input", job: id })
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
    failJob: (id, reason, now, epoch) => mutate(id, now, { type: "fail", epoch }, () => ended(reason, now)),
    requestCancel: (id, reason, now) =>
      mutate(id, now, { type: "cancel" }, (_, s) =>
        s.to === "canceling" ? { set: { cancel_requested_at: now, error: reason }, reason } : ended(reason, now),
      ),
    forceCanceled: (id, epoch, reason, now) =>
      mutate(id, now, { type: "forceCancel", epoch }, () => ended(reason, now)),
    unassign: (id, epoch, reason, now) =>
      mutate(id, now, { type: "unassign", epoch }, (j) => {
        const excluded = j.workerId && !j.excluded.includes(j.workerId) ? [...j.excluded, j.workerId] : j.excluded
        return { set: { worker_id: null, assigned_at: null, excluded: JSON.stringify(excluded) }, reason }
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
      const pruned = await tx(async (t) => {
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
      return told(pruned, (pruned.jobs > 0 || pruned.workers > 0) && { type: "pruned", ...pruned })
    },
  }
}
