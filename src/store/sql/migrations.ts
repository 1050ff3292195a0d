import { sql, type Kysely } from "kysely"
import type { SqlDialect } from "./dialect.ts"
import { ConfigError } from "../../shared/errors.ts"
import { writeTransaction } from "./tx.ts"

/**
 * Migrations in code, written once with Kysely's schema builder so that each database is a dialect,
 * not a rewrite. The applied version lives in `meta.schema_version`; each step runs in a transaction.
 */
type Step = (db: Kysely<any>, d: SqlDialect) => Promise<void>

/** CREATE TABLE with what the engine needs after the columns (MySQL: InnoDB, a byte-exact collation). */
const table = (db: Kysely<any>, d: SqlDialect, name: string) => {
  const t = db.schema.createTable(name)
  return d.tableOptions ? t.modifyEnd(d.tableOptions) : t
}

/**
 * Characters of a job's arguments (their JSON) kept in its row. Longer arguments live whole in
 * `job_args`: SQLite reads a row's columns in order through its overflow pages, so megabytes of
 * arguments in the row would make every read of the job's state (streams, listings, the scheduler)
 * read those megabytes too.
 */
export const ARGS_HEAD_CHARS = 2048

const steps: Step[] = [
  async (db, d) => {
    await table(db, d, "users")
      .addColumn("name", d.str(64), (c) => c.primaryKey())
      .addColumn("role", d.str(16), (c) => c.notNull())
      .addColumn("key", d.str(128), (c) => c.notNull())
      .addColumn("created_at", d.big(), (c) => c.notNull())
      .execute()
    await table(db, d, "workers")
      .addColumn("id", d.str(64), (c) => c.primaryKey())
      .addColumn("binaries", sql`text`, (c) => c.notNull())
      .addColumn("paths", sql`text`, (c) => c.notNull())
      .addColumn("max_jobs", "integer", (c) => c.notNull())
      .addColumn("version", d.str(64), (c) => c.notNull())
      .addColumn("capabilities", sql`text`, (c) => c.notNull())
      .addColumn("registered_at", d.big(), (c) => c.notNull())
      .addColumn("last_seen", d.big(), (c) => c.notNull())
      .execute()
    await table(db, d, "jobs")
      .addColumn("id", d.str(26), (c) => c.primaryKey())
      .addColumn("requester", d.str(64), (c) => c.notNull())
      .addColumn("binary", d.str(64), (c) => c.notNull())
      .addColumn("args", sql`text`, (c) => c.notNull())
      .addColumn("paths", sql`text`, (c) => c.notNull())
      .addColumn("cwd", sql`text`)
      .addColumn("stdin", "integer", (c) => c.notNull().defaultTo(1))
      .addColumn("status", d.str(16), (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull().defaultTo(0))
      .addColumn("worker_id", d.str(64))
      .addColumn("out_seq", d.big(), (c) => c.notNull().defaultTo(0))
      .addColumn("exit_code", "integer")
      .addColumn("exit_signal", d.str(16))
      .addColumn("error", sql`text`)
      .addColumn("created_at", d.big(), (c) => c.notNull())
      .addColumn("updated_at", d.big(), (c) => c.notNull())
      .addColumn("assigned_at", d.big())
      .addColumn("started_at", d.big())
      .addColumn("finished_at", d.big())
      .execute()
    await db.schema.createIndex("jobs_status_id").on("jobs").columns(["status", "id"]).execute()
    await db.schema.createIndex("jobs_worker_status").on("jobs").columns(["worker_id", "status"]).execute()
    await db.schema.createIndex("jobs_requester_id").on("jobs").columns(["requester", "id"]).execute()
    await d
      .serialKey(table(db, d, "job_output"), "pos")
      .addColumn("job_id", d.str(26), (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull())
      .addColumn("seq", d.big(), (c) => c.notNull())
      .addColumn("stream", "integer", (c) => c.notNull())
      .addColumn("data", d.blob(), (c) => c.notNull())
      .addUniqueConstraint("job_output_attempt_seq", ["job_id", "epoch", "seq"])
      .execute()
    await db.schema.createIndex("job_output_job_pos").on("job_output").columns(["job_id", "pos"]).execute()
    await table(db, d, "job_input")
      .addColumn("job_id", d.str(26), (c) => c.notNull())
      .addColumn("seq", d.big(), (c) => c.notNull())
      .addColumn("data", d.blob())
      .addPrimaryKeyConstraint("job_input_pk", ["job_id", "seq"])
      .execute()
  },
  // Lifecycle: liveness, retries, cancellation, the transition log, worker states.
  async (db, d) => {
    const add = (table: string, col: string, type: any, build: (c: any) => any = (c) => c) =>
      db.schema.alterTable(table).addColumn(col, type, build).execute()
    await add("jobs", "attached", "integer", (c) => c.notNull().defaultTo(0))
    await add("jobs", "retries", "integer", (c) => c.notNull().defaultTo(0))
    await add("jobs", "attempts", "integer", (c) => c.notNull().defaultTo(0))
    await add("jobs", "excluded", sql`text`)
    await add("jobs", "heartbeat_at", d.big())
    await add("jobs", "client_seen_at", d.big())
    await add("jobs", "cancel_requested_at", d.big())
    await add("workers", "status", d.str(16), (c) => c.notNull().defaultTo("online"))
    await add("workers", "token", d.str(64))
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
    await d
      .serialKey(table(db, d, "job_events"), "id")
      .addColumn("job_id", d.str(26), (c) => c.notNull())
      .addColumn("at", d.big(), (c) => c.notNull())
      .addColumn("status", d.str(16), (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull())
      .addColumn("worker_id", d.str(64))
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
  async (db, d) => {
    await table(db, d, "job_args")
      .addColumn("job_id", d.str(26), (c) => c.primaryKey())
      .addColumn("args", sql`text`, (c) => c.notNull())
      .execute()
    await db.schema
      .alterTable("jobs")
      .addColumn("args_chars", d.big(), (c) => c.notNull().defaultTo(0))
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
  // The caller's environment ffmpeg reads (issue 11): FFREPORT, AV_LOG_FORCE_*, TZ, LANG, LC_*.
  async (db) => {
    await db.schema
      .alterTable("jobs")
      .addColumn("env", sql`text`, (c) => c.notNull().defaultTo("{}"))
      .execute()
  },
  // Whether the caller decodes path tokens in the output (issue 11); jobs from before never did.
  async (db) => {
    await db.schema
      .alterTable("jobs")
      .addColumn("path_tokens", "integer", (c) => c.notNull().defaultTo(0))
      .execute()
  },
  // Concat lists and filter scripts in $Var form (issue 11): up to 4 MiB a job, so out of the jobs row
  // (like job_args) and read only with the whole job; `files` counts them.
  async (db, d) => {
    await table(db, d, "job_files")
      .addColumn("job_id", d.str(26), (c) => c.primaryKey())
      .addColumn("files", sql`text`, (c) => c.notNull())
      .execute()
    await db.schema
      .alterTable("jobs")
      .addColumn("files", "integer", (c) => c.notNull().defaultTo(0))
      .execute()
  },
  // Bounded output (issue 11 item 6): what the caller acknowledged, and a detached job's truncation.
  async (db, d) => {
    const add = (col: string, build: (c: any) => any) =>
      db.schema.alterTable("jobs").addColumn(col, d.big(), build).execute()
    await add("acked_pos", (c) => c.notNull().defaultTo(0))
    await add("out_dropped", (c) => c.notNull().defaultTo(0))
    await add("trunc_pos", (c) => c)
  },
  // Scheduling that fits a media farm (issue 12): a worker's tools, labels, weight and probe slots; a
  // job's lane, priority, needs (JSON, computed at submission) and the one worker it may be pinned to.
  async (db, d) => {
    const workers = (col: string, type: any, build: (c: any) => any) =>
      db.schema.alterTable("workers").addColumn(col, type, build).execute()
    await workers("tools", sql`text`, (c) => c.notNull().defaultTo("{}"))
    await workers("labels", sql`text`, (c) => c.notNull().defaultTo("{}"))
    await workers("weight", "real", (c) => c.notNull().defaultTo(1))
    await workers("max_probe_jobs", "integer", (c) => c.notNull().defaultTo(4))
    const jobs = (col: string, type: any, build: (c: any) => any) =>
      db.schema.alterTable("jobs").addColumn(col, type, build).execute()
    await jobs("lane", d.str(16), (c) => c.notNull().defaultTo("transcode"))
    await jobs("priority", d.str(16), (c) => c.notNull().defaultTo("normal"))
    await jobs("needs", sql`text`, (c) => c)
    await jobs("pin", d.str(64), (c) => c)
  },
  // Issue 12's queue order and fast failure: a job's place in its lane's queue (submission time minus
  // its priority's head start, so aging is an ORDER BY on an index), the workers it must never be given
  // again (an assignment that timed out), and when a worker's last poll connection closed.
  async (db, d) => {
    await db.schema
      .alterTable("jobs")
      .addColumn("queue_key", d.big(), (c) => c.notNull().defaultTo(0))
      .execute()
    await db.updateTable("jobs").set({ queue_key: sql`created_at` }).execute()
    await db.schema
      .alterTable("jobs")
      .addColumn("barred", sql`text`, (c) => c)
      .execute()
    await db.schema
      .alterTable("workers")
      .addColumn("poll_closed_at", d.big(), (c) => c)
      .execute()
    await db.schema.createIndex("jobs_queue").on("jobs").columns(["status", "lane", "queue_key", "id"]).execute()
  },
  // Held output (the in-memory relay): an attached job's stdout row whose payload the coordinator keeps
  // in memory stores its size here and an empty blob.
  async (db, d) => {
    await db.schema
      .alterTable("job_output")
      .addColumn("held", d.big(), (c) => c.notNull().defaultTo(0))
      .execute()
  },
  // Workers' tools read only when they changed (issue 13): a revision beside the ~35 KB of JSON.
  async (db) => {
    await db.schema
      .alterTable("workers")
      .addColumn("tools_rev", "integer", (c) => c.notNull().defaultTo(0))
      .execute()
  },
  // Several coordinators on one database (issue 14): nonces every coordinator checks, the coordinators
  // seen, the change sequence of engines without LISTEN/NOTIFY, and the submitter's key of a submission
  // (one job per requester and key, whichever coordinator a repeated submission reaches; NULLs are
  // distinct in a unique index on every engine, so keyless jobs never collide).
  async (db, d) => {
    await db.schema
      .alterTable("jobs")
      .addColumn("submission", d.str(64), (c) => c)
      .execute()
    await db.schema.createIndex("jobs_submission").unique().on("jobs").columns(["requester", "submission"]).execute()
    await table(db, d, "nonces")
      .addColumn("client_id", d.str(64), (c) => c.notNull())
      .addColumn("nonce", d.str(64), (c) => c.notNull())
      .addColumn("at", d.big(), (c) => c.notNull())
      .addPrimaryKeyConstraint("nonces_pk", ["client_id", "nonce"])
      .execute()
    await db.schema.createIndex("nonces_at").on("nonces").columns(["at"]).execute()
    await table(db, d, "coordinators")
      .addColumn("id", d.str(64), (c) => c.primaryKey())
      .addColumn("host", d.str(255), (c) => c.notNull())
      .addColumn("pid", "integer", (c) => c.notNull())
      .addColumn("version", d.str(64), (c) => c.notNull())
      .addColumn("url", d.str(255))
      .addColumn("started_at", d.big(), (c) => c.notNull())
      .addColumn("seen_at", d.big(), (c) => c.notNull())
      .execute()
    // One row per topic a coordinator notified (coordinator/notify/mysql.ts); `origin` is the notifier's
    // tag, so that it skips its own rows; `at` is the database's clock (ms), for pruning.
    await d
      .serialKey(table(db, d, "changes"), "id")
      .addColumn("topic", d.str(128), (c) => c.notNull())
      .addColumn("origin", d.str(32), (c) => c.notNull())
      .addColumn("at", d.big(), (c) => c.notNull())
      .execute()
    await db.schema.createIndex("changes_at").on("changes").columns(["at"]).execute()
  },
  // Unbounded text on MySQL/MariaDB: the steps above made these columns `text`, which holds 64 KiB
  // there, while a job's arguments may take limits.max_args_bytes (up to 64 MiB), its concat lists
  // 4 MiB and a worker's tools some hundreds of KiB. The other engines' text has no limit.
  async (db, d) => {
    const type = d.longText
    if (!type) return
    for (const [name, columns] of Object.entries(TEXT_COLUMNS)) {
      const [first, ...rest] = Object.entries(columns)
      const modify = (t: any, [col, spec]: [string, TextColumn]) =>
        t.modifyColumn(col, type, (c: any) => {
          const required = spec === "nullable" ? c : c.notNull()
          return typeof spec === "object" ? required.defaultTo(spec.default) : required
        })
      await rest.reduce(modify, modify(db.schema.alterTable(name), first!)).execute()
    }
  },
  // Broker transports (issue 15): the transport each worker negotiated at its last registration; its
  // polls must come that way (a worker whose broker link broke registers again instead of looking online).
  async (db, d) => {
    await db.schema
      .alterTable("workers")
      .addColumn("transport", d.str(16), (c) => c.notNull().defaultTo("http_polling"))
      .execute()
  },
  // The dashboard as a console (issue 16 item 7): one-time sign-in links, stored as their token's
  // SHA-256 so that every coordinator on the database takes them.
  async (db, d) => {
    await table(db, d, "sign_in_links")
      .addColumn("token_hash", d.str(64), (c) => c.primaryKey())
      .addColumn("user_name", d.str(64), (c) => c.notNull())
      .addColumn("expires_at", d.big(), (c) => c.notNull())
      .addColumn("created_at", d.big(), (c) => c.notNull())
      .execute()
  },
  // Issue 16: the worker process serving each identity (one identity, one worker) and its host's load
  // from its heartbeats; both small JSON (an instance is < 400 bytes, a load with 16 GPUs < 3 KiB).
  async (db, d) => {
    await db.schema.alterTable("workers").addColumn("instance", d.str(512)).execute()
    await db.schema.alterTable("workers").addColumn("host_load", d.str(4096)).execute()
  },
]

/** An unbounded text column as the steps created it: NOT NULL (with a default) or nullable. */
type TextColumn = "required" | "nullable" | { default: string }

/** Every column the steps created as `text`, table by table. */
const TEXT_COLUMNS: Record<string, Record<string, TextColumn>> = {
  meta: { value: "required" },
  workers: {
    binaries: "required",
    paths: "required",
    capabilities: "required",
    tools: { default: "{}" },
    labels: { default: "{}" },
  },
  jobs: {
    args: "required",
    paths: "required",
    cwd: "nullable",
    error: "nullable",
    excluded: "nullable",
    progress: "nullable",
    env: { default: "{}" },
    needs: "nullable",
    barred: "nullable",
  },
  job_events: { reason: "nullable" },
  job_args: { args: "required" },
  job_files: { files: "required" },
}

/** meta's key for a step begun where DDL cannot be rolled back (MySQL): set while it runs. */
const MIGRATING = "migrating_to"

const version = async (db: Kysely<any>, key = "schema_version") => {
  const row = await db.selectFrom("meta").select("value").where("key", "=", key).executeTakeFirst()
  return row ? Number(row.value) : undefined
}

const setMeta = async (db: Kysely<any>, key: string, value: string) => {
  const n = await db.updateTable("meta").set({ value }).where("key", "=", key).executeTakeFirst()
  if (Number(n.numUpdatedRows) === 0) await db.insertInto("meta").values({ key, value }).execute()
}

const createMeta = (db: Kysely<any>, d: SqlDialect) =>
  table(db, d, "meta")
    .ifNotExists()
    .addColumn("key", d.str(64), (c) => c.primaryKey())
    .addColumn("value", sql`text`, (c) => c.notNull())
    .execute()

/** A database a newer dffmpeg migrated: this build does not know its tables (exit 3, nothing changed). */
const tooNew = (v: number) =>
  new ConfigError(`database schema version ${v} is newer than this dffmpeg (${steps.length}); upgrade dffmpeg`)

/**
 * Brings the schema to this build's version. Several coordinators (and `dffmpeg admin`) may start at
 * once: on server databases one of them migrates under the engine's lock (PostgreSQL's advisory lock,
 * MySQL's GET_LOCK) while the others wait for it and then find nothing to do. SQLite serialises each
 * step by its write lock. Each step runs in a transaction where DDL is transactional; on MySQL, whose
 * DDL commits by itself, a step that died half-way is recorded and refused at the next start instead of
 * being run again over what it already changed.
 */
export async function migrate(db: Kysely<any>, d: SqlDialect): Promise<void> {
  if (!d.migrationLock) return migrateUnlocked(db, d)
  const lock = d.migrationLock
  await db.connection().execute(async (conn) => {
    const got = (await lock.acquire.execute(conn)).rows[0] as { locked: unknown } | undefined
    if (got && Number(got.locked) !== 1)
      throw new Error("another dffmpeg has been migrating this database for over 60 s; try again once it is done")
    try {
      await createMeta(conn, d)
      for (;;) {
        const at = (await version(conn)) ?? 0
        if (at > steps.length) throw tooNew(at)
        if (at === steps.length) return
        const half = await version(conn, MIGRATING)
        if (half !== undefined)
          throw new Error(
            `the migration of this database to schema version ${half} was interrupted (the ${d.name} engine cannot roll back schema changes); restore the backup taken before the upgrade, or finish it by hand and delete meta key ${MIGRATING}`,
          )
        if (d.transactionalDdl)
          await conn.transaction().execute(async (tx) => {
            await steps[at](tx, d)
            await setMeta(tx, "schema_version", String(at + 1))
          })
        else {
          await setMeta(conn, MIGRATING, String(at + 1))
          await steps[at](conn, d)
          await conn.transaction().execute(async (tx) => {
            await setMeta(tx, "schema_version", String(at + 1))
            await tx.deleteFrom("meta").where("key", "=", MIGRATING).execute()
          })
        }
      }
    } finally {
      await lock.release.execute(conn)
    }
  })
}

async function migrateUnlocked(db: Kysely<any>, d: SqlDialect): Promise<void> {
  await createMeta(db, d)
  for (;;) {
    const before = (await version(db)) ?? 0
    if (before === steps.length) return
    const done = await writeTransaction(db, d, async (tx) => {
      const at = (await version(tx)) ?? 0
      if (at > steps.length) throw tooNew(at)
      if (at === steps.length) return true
      await steps[at](tx, d)
      await setMeta(tx, "schema_version", String(at + 1))
      return false
    }).catch(async (err) => {
      // Another process (a second coordinator, or `dffmpeg admin`) may have applied the same step first.
      if (((await version(db)) ?? 0) > before) return false
      throw err
    })
    if (done) return
  }
}

/**
 * The schema version the database is at (0 before any migration: no `meta` table yet), for `dffmpeg
 * admin db status`. A database that does not answer throws: it is not taken for an empty one.
 */
export async function schemaVersion(db: Kysely<any>): Promise<number> {
  await sql`select 1`.execute(db)
  try {
    return (await version(db)) ?? 0
  } catch (err) {
    const tables = await db.introspection.getTables()
    if (tables.some((t) => t.name === "meta")) throw err
    return 0
  }
}

export const SCHEMA_VERSION = steps.length
