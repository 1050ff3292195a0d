import { sql, type CreateTableBuilder, type Kysely } from "kysely"
import type { StoreKind } from "../types.ts"
import { writeTransaction } from "./tx.ts"

/**
 * Migrations in code, written once with Kysely's schema builder so that each database is a dialect,
 * not a rewrite. The applied version lives in `meta.schema_version`; each step runs in a transaction.
 */
type Step = (db: Kysely<any>, kind: StoreKind) => Promise<void>

const blob = (kind: StoreKind) => (kind === "postgres" ? sql`bytea` : kind === "mysql" ? sql`longblob` : sql`blob`)
const str = (kind: StoreKind, n = 255) => (kind === "mysql" ? sql.raw(`varchar(${n})`) : sql`text`)
const big = (kind: StoreKind) => (kind === "sqlite" ? sql`integer` : sql`bigint`)

/** An auto-incrementing 64-bit primary key, in each dialect's own words. */
const serialKey = (t: CreateTableBuilder<any, any>, col: string, kind: StoreKind) =>
  kind === "postgres"
    ? t.addColumn(col, "bigserial", (c) => c.primaryKey())
    : kind === "mysql"
      ? t.addColumn(col, "bigint", (c) => c.primaryKey().autoIncrement())
      : t.addColumn(col, "integer", (c) => c.primaryKey().autoIncrement())

/**
 * Characters of a job's arguments (their JSON) kept in its row. Longer arguments live whole in
 * `job_args`: SQLite reads a row's columns in order through its overflow pages, so megabytes of
 * arguments in the row would make every read of the job's state (streams, listings, the scheduler)
 * read those megabytes too.
 */
export const ARGS_HEAD_CHARS = 2048

const steps: Step[] = [
  async (db, kind) => {
    await db.schema
      .createTable("users")
      .addColumn("name", str(kind, 64), (c) => c.primaryKey())
      .addColumn("role", str(kind, 16), (c) => c.notNull())
      .addColumn("key", str(kind, 128), (c) => c.notNull())
      .addColumn("created_at", big(kind), (c) => c.notNull())
      .execute()
    await db.schema
      .createTable("workers")
      .addColumn("id", str(kind, 64), (c) => c.primaryKey())
      .addColumn("binaries", sql`text`, (c) => c.notNull())
      .addColumn("paths", sql`text`, (c) => c.notNull())
      .addColumn("max_jobs", "integer", (c) => c.notNull())
      .addColumn("version", str(kind, 64), (c) => c.notNull())
      .addColumn("capabilities", sql`text`, (c) => c.notNull())
      .addColumn("registered_at", big(kind), (c) => c.notNull())
      .addColumn("last_seen", big(kind), (c) => c.notNull())
      .execute()
    await db.schema
      .createTable("jobs")
      .addColumn("id", str(kind, 26), (c) => c.primaryKey())
      .addColumn("requester", str(kind, 64), (c) => c.notNull())
      .addColumn("binary", str(kind, 64), (c) => c.notNull())
      .addColumn("args", sql`text`, (c) => c.notNull())
      .addColumn("paths", sql`text`, (c) => c.notNull())
      .addColumn("cwd", sql`text`)
      .addColumn("stdin", "integer", (c) => c.notNull().defaultTo(1))
      .addColumn("status", str(kind, 16), (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull().defaultTo(0))
      .addColumn("worker_id", str(kind, 64))
      .addColumn("out_seq", big(kind), (c) => c.notNull().defaultTo(0))
      .addColumn("exit_code", "integer")
      .addColumn("exit_signal", str(kind, 16))
      .addColumn("error", sql`text`)
      .addColumn("created_at", big(kind), (c) => c.notNull())
      .addColumn("updated_at", big(kind), (c) => c.notNull())
      .addColumn("assigned_at", big(kind))
      .addColumn("started_at", big(kind))
      .addColumn("finished_at", big(kind))
      .execute()
    await db.schema.createIndex("jobs_status_id").on("jobs").columns(["status", "id"]).execute()
    await db.schema.createIndex("jobs_worker_status").on("jobs").columns(["worker_id", "status"]).execute()
    await db.schema.createIndex("jobs_requester_id").on("jobs").columns(["requester", "id"]).execute()
    await serialKey(db.schema.createTable("job_output"), "pos", kind)
      .addColumn("job_id", str(kind, 26), (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull())
      .addColumn("seq", big(kind), (c) => c.notNull())
      .addColumn("stream", "integer", (c) => c.notNull())
      .addColumn("data", blob(kind), (c) => c.notNull())
      .addUniqueConstraint("job_output_attempt_seq", ["job_id", "epoch", "seq"])
      .execute()
    await db.schema.createIndex("job_output_job_pos").on("job_output").columns(["job_id", "pos"]).execute()
    await db.schema
      .createTable("job_input")
      .addColumn("job_id", str(kind, 26), (c) => c.notNull())
      .addColumn("seq", big(kind), (c) => c.notNull())
      .addColumn("data", blob(kind))
      .addPrimaryKeyConstraint("job_input_pk", ["job_id", "seq"])
      .execute()
  },
  // Lifecycle: liveness, retries, cancellation, the transition log, worker states.
  async (db, kind) => {
    const add = (table: string, col: string, type: any, build: (c: any) => any = (c) => c) =>
      db.schema.alterTable(table).addColumn(col, type, build).execute()
    await add("jobs", "attached", "integer", (c) => c.notNull().defaultTo(0))
    await add("jobs", "retries", "integer", (c) => c.notNull().defaultTo(0))
    await add("jobs", "attempts", "integer", (c) => c.notNull().defaultTo(0))
    await add("jobs", "excluded", sql`text`)
    await add("jobs", "heartbeat_at", big(kind))
    await add("jobs", "client_seen_at", big(kind))
    await add("jobs", "cancel_requested_at", big(kind))
    await add("workers", "status", str(kind, 16), (c) => c.notNull().defaultTo("online"))
    await add("workers", "token", str(kind, 64))
    // Rows of job_input are the job's downlink: stdin bytes, end of stdin, signals (frame kinds).
    await add("job_input", "kind", "integer", (c) => c.notNull().defaultTo(3))
    // Version 1 marked the end of stdin with NULL data; jobs in flight had no heartbeat column yet.
    await db.updateTable("job_input").set({ kind: 4 }).where("data", "is", null).execute()
    await db
      .updateTable("jobs")
      .set((eb: any) => ({ heartbeat_at: eb.fn.coalesce("started_at", "updated_at") }))
      .where("status", "in", ["assigned", "running"])
      .execute()
    await db.schema.createIndex("jobs_status_updated").on("jobs").columns(["status", "updated_at"]).execute()
    await db.schema.createIndex("jobs_finished").on("jobs").columns(["finished_at"]).execute()
    await serialKey(db.schema.createTable("job_events"), "id", kind)
      .addColumn("job_id", str(kind, 26), (c) => c.notNull())
      .addColumn("at", big(kind), (c) => c.notNull())
      .addColumn("status", str(kind, 16), (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull())
      .addColumn("worker_id", str(kind, 64))
      .addColumn("reason", sql`text`)
      .execute()
    await db.schema.createIndex("job_events_job").on("job_events").columns(["job_id", "id"]).execute()
  },
  // Operator surface: progress of running jobs, drain requested by an administrator.
  async (db) => {
    await db.schema.alterTable("jobs").addColumn("progress", sql`text`).execute()
    await db.schema
      .alterTable("workers")
      .addColumn("drain_requested", "integer", (c) => c.notNull().defaultTo(0))
      .execute()
    // The worker's own wish to drain (shutting down), kept apart from the administrator's.
    await db.schema
      .alterTable("workers")
      .addColumn("self_draining", "integer", (c) => c.notNull().defaultTo(0))
      .execute()
    await db.schema.createIndex("job_output_job_stream").on("job_output").columns(["job_id", "stream", "pos"]).execute()
  },
  // Bounded rows: long arguments move out of the jobs row into job_args (issue 9, bounded memory).
  async (db, kind) => {
    await db.schema
      .createTable("job_args")
      .addColumn("job_id", str(kind, 26), (c) => c.primaryKey())
      .addColumn("args", sql`text`, (c) => c.notNull())
      .execute()
    await db.schema
      .alterTable("jobs")
      .addColumn("args_chars", big(kind), (c) => c.notNull().defaultTo(0))
      .execute()
    await db.updateTable("jobs").set({ args_chars: sql`length(args)` }).execute()
    await sql`INSERT INTO job_args (job_id, args) SELECT id, args FROM jobs WHERE length(args) > ${ARGS_HEAD_CHARS}`.execute(
      db,
    )
    await db
      .updateTable("jobs")
      .set({ args: sql`substr(args, 1, ${ARGS_HEAD_CHARS})` })
      .where(sql`length(args)`, ">", ARGS_HEAD_CHARS)
      .execute()
  },
]

export async function migrate(db: Kysely<any>, kind: StoreKind): Promise<void> {
  await db.schema
    .createTable("meta")
    .ifNotExists()
    .addColumn("key", str(kind, 64), (c) => c.primaryKey())
    .addColumn("value", sql`text`, (c) => c.notNull())
    .execute()
  for (;;) {
    const current = async () =>
      Number(
        (await db.selectFrom("meta").select("value").where("key", "=", "schema_version").executeTakeFirst())?.value ??
          0,
      )
    const before = await current()
    if (before === steps.length) return
    const done = await writeTransaction(db, kind, async (tx) => {
      const row = await tx.selectFrom("meta").select("value").where("key", "=", "schema_version").executeTakeFirst()
      const version = row ? Number(row.value) : 0
      if (version > steps.length)
        throw new Error(
          `database schema version ${version} is newer than this dffmpeg (${steps.length}); upgrade dffmpeg`,
        )
      if (version === steps.length) return true
      await steps[version](tx, kind)
      if (row)
        await tx
          .updateTable("meta")
          .set({ value: String(version + 1) })
          .where("key", "=", "schema_version")
          .execute()
      else
        await tx
          .insertInto("meta")
          .values({ key: "schema_version", value: String(version + 1) })
          .execute()
      return false
    }).catch(async (err) => {
      // Another process (a second coordinator, or `dffmpeg admin`) may have applied the same step first.
      if ((await current()) > before) return false
      throw err
    })
    if (done) return
  }
}

export const SCHEMA_VERSION = steps.length
