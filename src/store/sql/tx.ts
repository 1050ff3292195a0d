import { sql, type Kysely } from "kysely"
import type { SqlDialect } from "./dialect.ts"
import { DEADLOCK_ATTEMPTS, deadlockPause, isDeadlock } from "../server/deadlock.ts"

/**
 * A read-then-write transaction. SQLite's default deferred BEGIN takes the write lock only at the
 * first write, and a reader that then tries to upgrade while another process (`dffmpeg admin`)
 * writes gets SQLITE_BUSY at once, without the busy timeout; BEGIN IMMEDIATE takes the lock up
 * front and waits for it. Dialects with row locks lock what they read with SELECT ... FOR UPDATE instead,
 * and a transaction the database rolled back to break a deadlock is run again (up to DEADLOCK_ATTEMPTS).
 */
export async function writeTransaction<DB, T>(
  db: Kysely<DB>,
  dialect: SqlDialect,
  fn: (tx: Kysely<DB>) => Promise<T>,
): Promise<T> {
  if (dialect.forUpdate) {
    // A deadlock's victim was rolled back whole by the database: run it again from the start.
    for (let n = 1; ; n++) {
      try {
        return await db.transaction().execute(fn)
      } catch (err) {
        if (!isDeadlock(err) || n >= DEADLOCK_ATTEMPTS) throw err
        await deadlockPause(n)
      }
    }
  }
  return db.connection().execute(async (conn) => {
    await sql`begin immediate`.execute(conn)
    try {
      const result = await fn(conn)
      await sql`commit`.execute(conn)
      return result
    } catch (err) {
      await sql`rollback`.execute(conn)
      throw err
    }
  })
}
