import { PostgresDialect } from "kysely"
import pg from "pg"
import { postgresDialect } from "../sql/dialect.ts"
import { createSqlStore } from "../sql/store.ts"
import type { ServerConnection } from "../server/connection.ts"
import { serverKysely, type ServerStoreOptions } from "../server/kysely.ts"
import type { Store } from "../types.ts"

export type PostgresOptions = ServerStoreOptions

const INT8 = 20
const NUMERIC = 1700

/**
 * 64-bit integers (times in milliseconds, positions, `count(*)`) and `sum()`'s numeric come back as
 * numbers, as SQLite gives them: every value the store keeps is far below 2^53.
 */
const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8 || oid === NUMERIC) return (v: string) => Number(v)
    return pg.types.getTypeParser(oid, format as "text")
  },
}

/** pg's options for one connection (the pool's, and the notifier's own listening connection). */
export function pgOptions(c: ServerConnection): pg.ClientConfig {
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password,
    database: c.database,
    ssl: c.ssl ? { rejectUnauthorized: c.ssl.rejectUnauthorized, ...(c.ssl.ca ? { ca: c.ssl.ca } : {}) } : false,
    connectionTimeoutMillis: c.connectTimeoutMs,
    application_name: "dffmpeg",
    types,
    keepAlive: true,
  }
}

/**
 * PostgreSQL through Kysely's PostgresDialect over a `pg` pool. Row locks (SELECT ... FOR UPDATE)
 * serialise transitions between coordinators; a connection the server drops is replaced by the pool
 * on the next query, so a restarted database is reconnected to by itself.
 */
export function createPostgresStore(opts: PostgresOptions): Store {
  const pool = new pg.Pool({ ...pgOptions(opts.connection), max: opts.connection.poolSize, idleTimeoutMillis: 30_000 })
  // An idle connection the server closed (restart, failover) is an event here, not an unhandled error:
  // the pool drops it and the next query opens a fresh one.
  pool.on("error", () => {})
  const db = serverKysely(new PostgresDialect({ pool }), opts.onStatement)
  return createSqlStore(db, postgresDialect, { keys: opts.keys, onKeyProblem: opts.onKeyProblem, held: opts.held })
}
