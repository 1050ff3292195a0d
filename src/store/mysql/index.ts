import { MysqlDialect } from "kysely"
import { createPool, type PoolOptions } from "mysql2"
import { mysqlDialect } from "../sql/dialect.ts"
import { createSqlStore } from "../sql/store.ts"
import type { ServerConnection } from "../server/connection.ts"
import { deadlockRetryingPool } from "../server/deadlock.ts"
import { serverKysely, type ServerStoreOptions } from "../server/kysely.ts"
import type { Store } from "../types.ts"

export type MysqlOptions = ServerStoreOptions

/** mysql2's options for one connection or pool. */
export function mysqlOptions(c: ServerConnection): PoolOptions {
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password,
    database: c.database,
    ...(c.ssl ? { ssl: { rejectUnauthorized: c.ssl.rejectUnauthorized, ...(c.ssl.ca ? { ca: c.ssl.ca } : {}) } } : {}),
    connectTimeout: c.connectTimeoutMs,
    // sum() answers DECIMAL: a number, as on the other engines (every value is far below 2^53).
    decimalNumbers: true,
    // Times are integers in milliseconds; nothing is a DATETIME, but keep the session's zone out of it.
    timezone: "Z",
    charset: "utf8mb4",
    enableKeepAlive: true,
  }
}

/**
 * MySQL and MariaDB through Kysely's MysqlDialect over a `mysql2` pool. Tables are InnoDB with a binary
 * collation (dialect.ts), so ids and names compare byte for byte as on the other engines.
 */
export function createMysqlStore(opts: MysqlOptions): Store {
  const pool = createPool({ ...mysqlOptions(opts.connection), connectionLimit: opts.connection.poolSize })
  // A connection the server closed is dropped by the pool; the next query opens a fresh one.
  pool.on("connection", (conn) => conn.on("error", () => {}))
  // InnoDB picks deadlock victims among single-row UPDATEs too: they run again (deadlock.ts).
  const db = serverKysely(new MysqlDialect({ pool: deadlockRetryingPool(pool) }), opts.onStatement)
  return createSqlStore(db, mysqlDialect, { keys: opts.keys, onKeyProblem: opts.onKeyProblem, held: opts.held })
}
