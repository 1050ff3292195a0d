import { sql, type Kysely, type Selectable, type Updateable } from "kysely"
import { NO_NEEDS, type Lane, type Priority } from "../../shared/protocol/capabilities.ts"
import type { Job, JobStatus, Worker, WorkerStatus } from "../../shared/protocol/schemas.ts"
import type { BrokerKind } from "../../shared/protocol/transports.ts"
import type { JobFilter, JobListing, ListingSize } from "../types.ts"
import type { SqlDialect } from "./dialect.ts"
import { ARGS_HEAD_CHARS } from "./migrations.ts"
import type { Database } from "./schema.ts"
import { writeTransaction } from "./tx.ts"
import { SUMMARY_ERROR_CHARS } from "../summary.ts"

// Rows and their mapping to domain objects, and the reads every family of the SQL store shares.

export const STREAM = { stdout: 1, stderr: 2 } as const

export type JobRow = Selectable<Database["jobs"]>
export type WorkerRow = Selectable<Database["workers"]>
export type JobUpdate = Updateable<Database["jobs"]>

export const ACTIVE: JobStatus[] = ["queued", "assigned", "running"]

export function toJob(r: JobRow): Job {
  return {
    id: r.id,
    requester: r.requester,
    binary: r.binary,
    args: argsOf(r.args),
    paths: JSON.parse(r.paths),
    cwd: r.cwd,
    env: r.env ? JSON.parse(r.env) : {},
    files: [],
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
    pathTokens: Number(r.path_tokens) === 1,
    retries: Number(r.retries),
    attempts: Number(r.attempts),
    excluded: r.excluded ? JSON.parse(r.excluded) : [],
    heartbeatAt: num(r.heartbeat_at),
    clientSeenAt: num(r.client_seen_at),
    cancelRequestedAt: num(r.cancel_requested_at),
    progress: r.progress ? JSON.parse(r.progress) : null,
    lane: r.lane as Lane,
    priority: r.priority as Priority,
    needs: r.needs ? { ...NO_NEEDS, ...JSON.parse(r.needs) } : NO_NEEDS,
    pin: r.pin,
    queueKey: Number(r.queue_key),
    barred: r.barred ? JSON.parse(r.barred) : [],
  }
}

/*
 * A summary reads SUMMARY_ERROR_CHARS of the error (store/summary.ts). The other columns are bounded where
 * they are written (paths: 256 names, cwd: 4096 characters, env: within the argument budget, excluded: the workers that exist; the row's `args` is a
 * head of ARGS_HEAD_CHARS) and are read whole, so a summary is as good as the job for scheduling and state.
 */
export type SummaryRow = JobRow & { error_len: number | null }

/** The row's arguments: the whole JSON, or the whole leading arguments of a head (see `whole`). */
function argsOf(text: string): string[] {
  const all = whole(text)
  return all ?? stringsPrefix(text)
}

/** The arguments when `text` is all of their JSON (a proper prefix of a JSON array never parses). */
export function whole(text: string): string[] | undefined {
  if (!text.endsWith("]")) return undefined
  try {
    return JSON.parse(text) as string[]
  } catch {
    return undefined
  }
}

/** A row's `args` for arguments whose JSON is `json`: all of it, or a head that does not split a surrogate pair. */
export function argsHead(json: string): string {
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

export function toListing(r: SummaryRow, argsChars: number): JobListing {
  const head = r.args.length > argsChars ? r.args.slice(0, argsChars) : r.args
  const all = whole(head)
  return {
    ...toJob({ ...r, args: "[]" }),
    args: all ?? stringsPrefix(head),
    truncated: !all || (r.error_len !== null && Number(r.error_len) > SUMMARY_ERROR_CHARS),
    argsChars: Number(r.args_chars),
  }
}

/** Deep-freezes `o`: parsed tools are shared by every reader (workers.ts), none may change them. */
export const deepFreeze = <T>(o: T): T => {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}

/** A worker row without its tools (read apart, see workers.ts), and the tools to give it. */
export function toWorker(r: Omit<WorkerRow, "tools">, tools: Worker["tools"]): Worker {
  return {
    id: r.id,
    binaries: JSON.parse(r.binaries),
    paths: JSON.parse(r.paths),
    maxJobs: Number(r.max_jobs),
    version: r.version,
    capabilities: JSON.parse(r.capabilities),
    tools,
    labels: JSON.parse(r.labels),
    weight: Number(r.weight),
    maxProbeJobs: Number(r.max_probe_jobs),
    pollClosedAt: num(r.poll_closed_at),
    status: r.status as WorkerStatus,
    registeredAt: Number(r.registered_at),
    lastSeen: Number(r.last_seen),
    drainRequested: Number(r.drain_requested) === 1,
    ...(r.transport && r.transport !== "http_polling" ? { transport: r.transport as BrokerKind } : {}),
    instance: r.instance ? JSON.parse(r.instance) : null,
    hostLoad: r.host_load ? JSON.parse(r.host_load) : null,
  }
}

/** A listing's filter, newest first. */
// Kysely's builder types differ per selection; the filter only adds WHERE clauses on jobs' columns.
export function filtered(q: any, f: JobFilter): { execute(): Promise<unknown[]> } {
  if (f.requester) q = q.where("requester", "=", f.requester)
  if (f.status) q = q.where("status", "=", f.status)
  if (f.statuses) q = f.statuses.length ? q.where("status", "in", f.statuses) : q.where(sql<boolean>`1 = 0`)
  if (f.worker) q = q.where("worker_id", "=", f.worker)
  if (f.since !== undefined) q = q.where("created_at", ">=", f.since)
  if (f.before) q = q.where("id", "<", f.before)
  // Both sides lowered by the database itself, so each engine is consistent with itself: SQLite's
  // lower() folds ASCII letters only, PostgreSQL's and MySQL's every letter.
  if (f.text) q = q.where(sql<boolean>`lower(args) like lower(${likePattern(f.text)}) escape '!'`)
  return q.orderBy("id", "desc").limit(f.limit ?? 100)
}

/**
 * A LIKE pattern for `text` anywhere in a row's arguments: the text as it appears in their JSON (quotes
 * and backslashes escaped as the row stores them), with LIKE's own `%`, `_` and the escape character
 * `!` escaped, so the text is never a wildcard. `!` rather than a backslash: MySQL reads a backslash in
 * a string literal as an escape of its own.
 */
export function likePattern(text: string): string {
  const json = JSON.stringify(text).slice(1, -1)
  return `%${json.replace(/[!%_]/g, (ch) => `!${ch}`)}%`
}

export const WORKER_STATES: WorkerStatus[] = ["registering", "online", "draining", "offline"]

export const num = (x: number | string | null) => (x === null ? null : Number(x))
export const bytes = (x: Uint8Array | Buffer) => (x instanceof Uint8Array ? x : new Uint8Array(x))

export const stderrProblem = (m: string) => void process.stderr.write(`dffmpeg: error: ${m}\n`)

/** The database and the reads the store's families share (store/sql/{jobs,workers,users,streams}.ts). */
export interface Sql {
  db: Kysely<Database>
  /** What this engine does differently (dialect.ts). */
  dialect: SqlDialect
  /** A read-then-write transaction (see tx.ts). */
  tx: <T>(fn: (tx: Kysely<Database>) => Promise<T>) => Promise<T>
  withArgs: (q: Kysely<Database>, row: JobRow) => Promise<Job>
  fullJob: (q: Kysely<Database>, id: string) => Promise<Job | undefined>
  jobById: (id: string) => Promise<Job | undefined>
  // Kysely's builder type for this selection is not worth spelling out; callers only add clauses.
  summaries: () => any
  summariesWhere: (build: (q: any) => any, limit?: number) => Promise<JobListing[]>
  argsCharsOf: (size?: ListingSize) => number
  jobsWhere: (build: (q: any) => any, limit?: number) => Promise<Job[]>
}

/** A job's concat lists and filter scripts (job_files). */
async function filesOf(q: Kysely<Database>, id: string): Promise<Job["files"]> {
  const row = await q.selectFrom("job_files").select("files").where("job_id", "=", id).executeTakeFirst()
  return row ? JSON.parse(row.files) : []
}

export function sqlContext(db: Kysely<Database>, dialect: SqlDialect): Sql {
  const tx = <T>(fn: (tx: Kysely<Database>) => Promise<T>) => writeTransaction(db, dialect, fn)

  /** A job with its whole arguments: from its row, or from job_args when the row holds only their head. */
  const withArgs = async (q: Kysely<Database>, row: JobRow): Promise<Job> => {
    const files = Number(row.files) > 0 ? await filesOf(q, row.id) : []
    if (whole(row.args)) return { ...toJob(row), files }
    const full = await q.selectFrom("job_args").select("args").where("job_id", "=", row.id).executeTakeFirst()
    return { ...toJob(full ? { ...row, args: full.args } : row), files }
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
        "path_tokens",
        "retries",
        "attempts",
        "heartbeat_at",
        "client_seen_at",
        "cancel_requested_at",
        "progress",
        "lane",
        "priority",
        "needs",
        "pin",
        "queue_key",
        "barred",
        "paths",
        "excluded",
        "cwd",
        "env",
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

  return { db, dialect, tx, withArgs, fullJob, jobById, summaries, summariesWhere, argsCharsOf, jobsWhere }
}
