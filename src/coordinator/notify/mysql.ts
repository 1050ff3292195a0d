import { createConnection, type RowDataPacket } from "mysql2/promise"
import type { Logger } from "../../shared/log.ts"
import { pause } from "../../shared/pause.ts"
import { mysqlOptions } from "../../store/mysql/index.ts"
import type { ServerConnection } from "../../store/server/connection.ts"
import { carried, EVERY_TOPIC, type Link, type LinkEvents, RemoteNotifier, within } from "./remote.ts"

/** Rows one INSERT writes at most (of ≤ 128-byte topics: well within any `max_allowed_packet`). */
export const INSERT_ROWS = 1000
/** Rows one read takes at most; a full read is followed by the next at once. */
export const READ_ROWS = 1000
/** How long a row is kept: far longer than any coordinator lags behind while connected. */
export const RETENTION_MS = 60_000
/** Each coordinator prunes at most this often, at most `PRUNE_BATCHES` of `PRUNE_ROWS` rows at a time. */
export const PRUNE_EVERY_MS = 10_000
export const PRUNE_ROWS = 1000
export const PRUNE_BATCHES = 20
/**
 * An id skipped over (a gap below a row read) is looked for again for this long: InnoDB hands out
 * auto-increment ids when an INSERT runs, not when it commits, so a lower id may become visible after a
 * higher one. A gap is also an id never used (a rolled-back insert, `auto_increment_increment` > 1).
 */
export const GAP_MS = 5000
/** Gap ids looked for at most (the oldest are dropped); a jump over more ids than that is not tracked. */
export const MAX_GAPS = 1024

/** The database's clock, in ms (whole seconds: enough to prune by, and the same for every coordinator). */
const NOW_MS = "UNIX_TIMESTAMP() * 1000"

export interface MysqlNotifierOptions {
  connection: ServerConnection
  log?: Logger
  /** This process's tag (default: random). */
  origin?: string
  /** How often the change sequence is read (default: `database.notify_interval_ms`). */
  intervalMs?: number
}

/**
 * The ids a reader looks for: each one after the last it read, and the gaps below it that may still
 * fill (see `GAP_MS`). `take` says which rows of a read are new: a row is taken once, whether it came
 * after the last id or filled a gap.
 */
export class ChangeCursor {
  private gaps = new Map<number, number>()
  constructor(public last: number) {}

  /** The gap ids still worth reading again at `now`. */
  gapIds(now: number): number[] {
    for (const [id, at] of this.gaps) if (now - at > GAP_MS) this.gaps.delete(id)
    return [...this.gaps.keys()]
  }

  /** Whether the row `id` is new; rows come in id order. */
  take(id: number, now: number): boolean {
    if (id <= this.last) return this.gaps.delete(id)
    if (id - this.last - 1 <= MAX_GAPS) for (let g = this.last + 1; g < id; g++) this.gaps.set(g, now)
    this.last = id
    // Insertion order is id order: the first are the oldest.
    for (const g of this.gaps.keys()) {
      if (this.gaps.size <= MAX_GAPS) break
      this.gaps.delete(g)
    }
    return true
  }
}

/**
 * Wake-ups across the coordinators of one MySQL/MariaDB database, which has no LISTEN/NOTIFY: each
 * topic notified becomes a row of `changes` (one multi-row INSERT per tick), and every coordinator reads
 * the rows after the last id it read every `notify_interval_ms`, so a wake-up from another coordinator
 * waits half an interval on average (docs/operations.md has the figures). Rows are pruned after
 * `RETENTION_MS` by the database's clock. One connection of its own does all of it; a read that fails
 * or does not answer within the connect timeout drops it, and a new one starts from the newest row
 * (every local waiter re-reads: remote.ts).
 */
export class MysqlNotifier extends RemoteNotifier {
  readonly kind = "mysql"
  private readonly connection: ServerConnection
  private readonly intervalMs: number
  private lastPrune = 0

  constructor(opts: MysqlNotifierOptions) {
    super({ log: opts.log, origin: opts.origin, deadlineMs: Math.max(1000, opts.connection.connectTimeoutMs) })
    this.connection = opts.connection
    this.intervalMs = opts.intervalMs ?? opts.connection.notifyIntervalMs
  }

  protected async open(events: LinkEvents): Promise<Link> {
    const conn = await createConnection(mysqlOptions(this.connection))
    conn.on("error", (err) => events.lost(err))
    conn.on("end", () => events.lost(new Error("the connection ended")))
    const q = <T>(sql: string, values?: unknown[]) =>
      within(conn.query(sql, values) as Promise<[T, unknown]>, this.deadlineMs, "the change sequence").then(
        ([rows]) => rows,
      )
    let cursor: ChangeCursor
    try {
      // From the newest row: what came before is in the store, and every waiter re-reads it (the resync).
      const [row] = await q<RowDataPacket[]>("SELECT COALESCE(MAX(id), 0) AS last FROM changes")
      cursor = new ChangeCursor(Number(row?.last ?? 0))
    } catch (err) {
      conn.destroy()
      throw err
    }
    const stop = new AbortController()
    const read = async () => {
      while (!stop.signal.aborted) {
        const gaps = cursor.gapIds(Date.now())
        const rows = await q<RowDataPacket[]>(
          `SELECT id, topic, origin FROM changes WHERE id > ?${gaps.length ? " OR id IN (?)" : ""} ORDER BY id LIMIT ?`,
          gaps.length ? [cursor.last, gaps, READ_ROWS] : [cursor.last, READ_ROWS],
        )
        const now = Date.now()
        const topics: string[] = []
        for (const r of rows) {
          if (!cursor.take(Number(r.id), now) || r.origin === this.origin) continue
          const t = String(r.topic)
          if (t === EVERY_TOPIC || carried(t)) topics.push(t)
        }
        if (topics.length && !stop.signal.aborted) events.received(topics)
        await this.prune(q)
        if (rows.length < READ_ROWS) await pause(this.intervalMs, stop.signal)
      }
    }
    const reading = read().catch((err) => {
      if (!stop.signal.aborted) events.lost(err)
    })
    return {
      send: async (topics) => {
        for (let i = 0; i < topics.length; i += INSERT_ROWS) {
          const part = topics.slice(i, i + INSERT_ROWS)
          this.stats.statements++
          await q(
            `INSERT INTO changes (topic, origin, at) VALUES ${part.map(() => `(?, ?, ${NOW_MS})`).join(", ")}`,
            part.flatMap((t) => [t, this.origin]),
          )
        }
      },
      close: async () => {
        stop.abort()
        await reading
        await conn.end()
      },
      destroy: () => {
        stop.abort()
        conn.destroy()
      },
    }
  }

  /**
   * Deletes rows older than `RETENTION_MS`, at most every `PRUNE_EVERY_MS` and `PRUNE_BATCHES` batches a
   * time. Coordinators prune side by side; a batch that lost a lock to another's is left to the next run.
   */
  private async prune(q: <T>(sql: string, values?: unknown[]) => Promise<T>): Promise<void> {
    const now = Date.now()
    if (now - this.lastPrune < PRUNE_EVERY_MS) return
    this.lastPrune = now
    for (let i = 0; i < PRUNE_BATCHES; i++) {
      let n: number
      try {
        const r = await q<{ affectedRows: number }>(`DELETE FROM changes WHERE at < ${NOW_MS} - ? LIMIT ?`, [
          RETENTION_MS,
          PRUNE_ROWS,
        ])
        n = r.affectedRows
      } catch (err) {
        // A deadlock or a lock wait: not the connection's fault. Anything else is.
        const no = (err as { errno?: number }).errno
        if (no === 1213 || no === 1205) return
        throw err
      }
      if (n < PRUNE_ROWS) return
    }
  }
}
