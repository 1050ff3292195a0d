import { sql, type Kysely } from "kysely"
import { JobStatus as JobStatuses, type JobStatus, type WorkerStatus } from "../../shared/protocol/schemas.ts"
import { memoryKeyring, type Keyring } from "../../shared/auth/keyring.ts"
import type { Stats, Store, ThroughputRow } from "../types.ts"
import type { SqlDialect } from "./dialect.ts"
import { jobMethods } from "./jobs.ts"
import { keyVault } from "./keys.ts"
import { coordinatorMethods } from "./coordinators.ts"
import { migrate, schemaVersion } from "./migrations.ts"
import type { Database } from "./schema.ts"
import { WORKER_STATES, sqlContext, stderrProblem } from "./shared.ts"
import { streamMethods } from "./streams.ts"
import { userMethods } from "./users.ts"
import { workerMethods } from "./workers.ts"
import { createWriter } from "./writer.ts"
import type { HeldOutput } from "../held.ts"

export { stringsPrefix } from "./shared.ts"

/** Jobs `prune` deletes per transaction (with their output, input, arguments, files and timeline). */
export const PRUNE_BATCH = 500

export interface SqlStoreOptions {
  /** The secrets stored keys are sealed under (default: a random one in memory, for `:memory:` and tests). */
  keys?: Keyring
  /** A stored key that cannot be used (wrong secret, altered row): the identity is refused and this says why. */
  onKeyProblem?: (message: string) => void
  onClose?: () => Promise<void>
  /** The coordinator's in-memory stdout (store/held.ts); without it nothing is held, and held rows are read as not there yet. */
  held?: HeldOutput
}

/**
 * The one Store implementation, over any Kysely dialect. Per-engine differences are limited to
 * what the dialect object says (row locking, skipping duplicates, column types). One module per family of rows (jobs,
 * workers, users, streams), over the shared reads (shared.ts) and the one writer of job transitions
 * (writer.ts); statistics and retention span them all and live here.
 */
export function createSqlStore(db: Kysely<Database>, dialect: SqlDialect, opts: SqlStoreOptions = {}): Store {
  const c = sqlContext(db, dialect)
  const w = createWriter(c, opts.held)
  const { tx } = c
  const { told } = w
  const vault = keyVault(db, dialect, opts.keys ?? memoryKeyring(), opts.onKeyProblem ?? stderrProblem)

  /** Rows of `table` counted by the database per status; every state listed, 0 when it has none. */
  const byStatus = async <S extends JobStatus | WorkerStatus>(table: "jobs" | "workers", states: readonly S[]) => {
    const out = Object.fromEntries(states.map((s) => [s, 0])) as Record<S, number>
    const rows = await db
      .selectFrom(table)
      .select(["status", sql<number>`count(*)`.as("n")])
      .groupBy("status")
      .execute()
    for (const r of rows) if (r.status in out) out[r.status as S] = Number(r.n)
    return out
  }

  return {
    kind: dialect.name,
    shared: dialect.shared,
    async migrate() {
      await migrate(db, dialect)
      return vault.sealAll()
    },
    async ping() {
      await sql`select 1`.execute(db)
    },
    async clock() {
      if (!dialect.clock) return Date.now()
      const row = (await dialect.clock.execute(db)).rows[0]
      return Number(row?.t)
    },
    async rememberNonce(client, nonce, at) {
      // One statement: the insert skips a pair already there, and the rows it wrote say which it was.
      const r = await dialect
        .insertIgnore(db.insertInto("nonces").values({ client_id: client, nonce, at }), ["client_id", "nonce"])
        .executeTakeFirst()
      return Number(r.numInsertedOrUpdatedRows ?? 0n) > 0
    },
    async pruneNonces(before, limit) {
      // By key, oldest first: neither PostgreSQL nor SQLite (as built) has DELETE ... LIMIT.
      const rows = await db
        .selectFrom("nonces")
        .select(["client_id", "nonce"])
        .where("at", "<", before)
        .orderBy("at")
        .limit(limit)
        .execute()
      if (rows.length === 0) return 0
      const r = await db
        .deleteFrom("nonces")
        .where(({ eb, refTuple, tuple }) =>
          eb(
            refTuple("client_id", "nonce"),
            "in",
            rows.map((n) => tuple(n.client_id, n.nonce)),
          ),
        )
        .executeTakeFirst()
      return Number(r.numDeletedRows)
    },
    async close() {
      await db.destroy()
      await opts.onClose?.()
    },
    schemaVersion: () => schemaVersion(db),
    changes: w.changes,
    ...coordinatorMethods(c),
    ...userMethods(c, w, vault),
    ...workerMethods(c, w),
    ...jobMethods(c, w),
    ...streamMethods(c, w, opts.held),
    async stats(): Promise<Stats> {
      const jobs = await byStatus("jobs", JobStatuses.options)
      const oldest = await db
        .selectFrom("jobs")
        .select(sql<number | null>`min(created_at)`.as("t"))
        .where("status", "=", "queued")
        .executeTakeFirst()
      const workers = await byStatus("workers", WORKER_STATES)
      const total = await db
        .selectFrom("workers")
        .select(sql<number | null>`sum(max_jobs)`.as("n"))
        .where("status", "in", ["online", "draining"])
        .executeTakeFirst()
      const used = await db
        .selectFrom("jobs")
        .select(sql<number>`count(*)`.as("n"))
        .where("status", "in", ["assigned", "running"])
        .where("lane", "=", "transcode")
        .executeTakeFirst()
      return {
        jobs,
        oldestQueuedAt: oldest?.t === null || oldest?.t === undefined ? null : Number(oldest.t),
        workers,
        slots: { used: Number(used?.n ?? 0), total: Number(total?.n ?? 0) },
      }
    },
    async throughput(since, bucketMs) {
      // A literal (a whole number, checked): the same expression in the select and the group by, and
      // PostgreSQL would not take two parameters as the same expression.
      const size = sql.lit(Math.max(1, Math.floor(bucketMs)))
      const rows = await db
        .selectFrom("jobs")
        .select([
          sql<number>`finished_at - (finished_at % ${size})`.as("bucket"),
          "status",
          sql<number>`count(*)`.as("n"),
        ])
        .where("finished_at", ">=", since)
        .where("status", "in", ["completed", "failed", "canceled"])
        .groupBy([sql`finished_at - (finished_at % ${size})`, "status"])
        .execute()
      return rows
        .map((r) => ({ at: Number(r.bucket), status: r.status as ThroughputRow["status"], count: Number(r.n) }))
        .sort((a, b) => a.at - b.at || a.status.localeCompare(b.status))
    },
    async addSignInLink(hash, user, expiresAt, now) {
      await db.deleteFrom("sign_in_links").where("expires_at", "<=", now).execute()
      await db
        .insertInto("sign_in_links")
        .values({ token_hash: hash, user_name: user, expires_at: expiresAt, created_at: now })
        .execute()
    },
    async takeSignInLink(hash, now) {
      const row = await db
        .selectFrom("sign_in_links")
        .select(["user_name", "expires_at"])
        .where("token_hash", "=", hash)
        .executeTakeFirst()
      if (!row) return undefined
      // The delete decides: of two uses racing (two coordinators, two tabs) only one deletes the row.
      const r = await db.deleteFrom("sign_in_links").where("token_hash", "=", hash).executeTakeFirst()
      if (Number(r.numDeletedRows) !== 1 || Number(row.expires_at) <= now) return undefined
      return row.user_name
    },
    async prune(before, batch = PRUNE_BATCH) {
      let jobs = 0
      for (;;) {
        // One batch of ids per transaction; the next batch reads again (a job pruned by another
        // coordinator meanwhile is simply not there).
        const n = await tx(async (t) => {
          const ids = (
            await t
              .selectFrom("jobs")
              .select("id")
              .where("finished_at", "<", before)
              .orderBy("id")
              .limit(batch)
              .execute()
          ).map((r) => r.id)
          if (ids.length === 0) return 0
          await t.deleteFrom("job_output").where("job_id", "in", ids).execute()
          await t.deleteFrom("job_input").where("job_id", "in", ids).execute()
          await t.deleteFrom("job_args").where("job_id", "in", ids).execute()
          await t.deleteFrom("job_files").where("job_id", "in", ids).execute()
          await t.deleteFrom("job_events").where("job_id", "in", ids).execute()
          const r = await t.deleteFrom("jobs").where("id", "in", ids).executeTakeFirst()
          return Number(r.numDeletedRows)
        })
        jobs += n
        if (n < batch) break
      }
      const w = await db
        .deleteFrom("workers")
        .where("status", "=", "offline")
        .where("last_seen", "<", before)
        .executeTakeFirst()
      const pruned = { jobs, workers: Number(w.numDeletedRows) }
      return told(pruned, (pruned.jobs > 0 || pruned.workers > 0) && { type: "pruned", ...pruned })
    },
  }
}
