import type { Pool, PoolConnection } from "mysql2"

/** Attempts of a statement or transaction that the database chose as a deadlock's victim. */
export const DEADLOCK_ATTEMPTS = 5

/**
 * Whether the database rolled the statement (and its transaction) back to break a deadlock or a
 * serialisation conflict: safe to run again from the start. InnoDB picks victims even between two
 * single-row UPDATEs that lock secondary index entries in different orders; PostgreSQL between
 * transactions that lock rows in different orders.
 */
export function isDeadlock(err: unknown): boolean {
  const e = err as { code?: string; errno?: number } | undefined
  return e?.errno === 1213 || e?.code === "ER_LOCK_DEADLOCK" || e?.code === "40P01" || e?.code === "40001"
}

/** A short, jittered pause before attempt `n` (1-based) of a deadlock's victim: 2-40 ms. */
export const deadlockPause = (n: number) =>
  new Promise<void>((r) => setTimeout(r, Math.min(40, 2 ** n) * (0.5 + Math.random() / 2)))

type Callback = (err: unknown, ...rest: unknown[]) => void

/**
 * mysql2's pool with each connection's statements outside a transaction run again when InnoDB makes
 * them a deadlock's victim (it rolled the statement back, nothing else). Inside a transaction the
 * whole transaction was rolled back: the caller retries it (sql/tx.ts), never one statement.
 */
export function deadlockRetryingPool(pool: Pool): Pool {
  const wrapped = new WeakMap<PoolConnection, PoolConnection>()
  const wrap = (conn: PoolConnection): PoolConnection => {
    const known = wrapped.get(conn)
    if (known) return known
    let inTransaction = false
    const query = (sql: string, params: unknown, cb: Callback) => {
      const verb = typeof sql === "string" ? sql.trimStart().slice(0, 8).toLowerCase() : ""
      if (verb.startsWith("begin") || verb.startsWith("start")) inTransaction = true
      else if (verb.startsWith("commit") || verb.startsWith("rollback")) inTransaction = false
      const attempt = (n: number) =>
        conn.query(sql, params as never, (err: unknown, ...rest: unknown[]) => {
          if (err && !inTransaction && isDeadlock(err) && n < DEADLOCK_ATTEMPTS)
            return void deadlockPause(n).then(() => attempt(n + 1))
          cb(err, ...rest)
        })
      attempt(1)
    }
    const proxy = new Proxy(conn, {
      get(target, key) {
        if (key === "query") return query
        const v = Reflect.get(target, key, target)
        return typeof v === "function" ? v.bind(target) : v
      },
    })
    wrapped.set(conn, proxy)
    return proxy
  }
  return new Proxy(pool, {
    get(target, key) {
      if (key === "getConnection")
        return (cb: (err: unknown, conn?: PoolConnection) => void) =>
          target.getConnection((err, conn) => cb(err, conn && wrap(conn)))
      const v = Reflect.get(target, key, target)
      return typeof v === "function" ? v.bind(target) : v
    },
  })
}
