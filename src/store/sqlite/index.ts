import { Database as Sqlite } from "bun:sqlite"
import type { HeldOutput } from "../held.ts"
import { chmodSync, chownSync, closeSync, existsSync, fchmodSync, mkdirSync, openSync, statSync } from "node:fs"
import { dirname } from "node:path"
import { Kysely } from "kysely"
import { BunSqliteDialect } from "kysely-bun-sqlite"
import { fileKeyring, octal } from "../../shared/auth/secret-file.ts"
import type { Keyring } from "../../shared/auth/keyring.ts"
import { ConfigError } from "../../shared/errors.ts"
import { accessProblem, adoptFd, ownerFor } from "../../shared/owner.ts"
import type { Database } from "../sql/schema.ts"
import { sqliteDialect } from "../sql/dialect.ts"
import { createSqlStore } from "../sql/store.ts"
import type { Store } from "../types.ts"

export interface SqliteOptions {
  /** File path, or `:memory:`. */
  path: string
  /** The secrets stored keys are sealed under. Default: the file `secretFile`, else `<path>.secret` (memory for `:memory:`). */
  keys?: Keyring
  secretFile?: string
  onKeyProblem?: (message: string) => void
  held?: HeldOutput
  /** Told the SQL of every statement the store runs, as it runs (bench:coordinator counts them). */
  onStatement?: (sql: string) => void
}

/** Mode of a database file dffmpeg creates: private to its user, whatever the umask. */
export const DB_MODE = 0o600

/**
 * Creates the database file 0600 before SQLite opens it: SQLite would create it 0644 minus the umask,
 * and it gives `-wal` and `-shm` the main file's mode when it creates them. As root it takes its
 * folder's owner (`sudo dffmpeg admin …` before the service's first start leaves a database the service
 * can write: shared/owner.ts).
 */
function createPrivate(path: string): void {
  if (existsSync(path)) return
  mkdirSync(dirname(path), { recursive: true })
  try {
    const fd = openSync(path, "wx", DB_MODE)
    adoptFd(fd, ownerFor(path))
    fchmodSync(fd, DB_MODE)
    closeSync(fd)
  } catch (err) {
    // Another process created it first: it is theirs to have made private.
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err
  }
}

/**
 * `-wal` and `-shm` never get more than the main file's owner and group bits (an existing database
 * keeps the mode its operator gave it; a world-readable one is reported by the coordinator), and as root
 * they get the main file's owner and group (SQLite does so when it creates them; this also mends older ones).
 */
function restrictSidecars(path: string): void {
  const main = statSync(path)
  const mode = main.mode & 0o660
  const root = process.getuid?.() === 0
  for (const f of [`${path}-wal`, `${path}-shm`]) {
    try {
      const st = statSync(f)
      if (root && (st.uid !== main.uid || st.gid !== main.gid)) chownSync(f, main.uid, main.gid)
      if ((st.mode & 0o777) !== mode) chmodSync(f, mode)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err
    }
  }
}

/**
 * Why the database file is not private, if it is not: readable by every user (an existing database
 * keeps the mode its operator gave it; dffmpeg never widens it).
 */
export function exposure(path: string): string | undefined {
  if (path === ":memory:") return undefined
  const mode = statSync(path).mode & 0o777
  if (!(mode & 0o004)) return undefined
  return `database ${path} is readable by every user (mode ${octal(mode)}); make it private: chmod 600 ${path}`
}

/**
 * SQLite in WAL mode with a busy timeout, so that `dffmpeg admin` can write while a coordinator runs.
 * One connection per process: bun:sqlite is synchronous and fast, and Kysely serialises its use.
 */
export function createSqliteStore(opts: SqliteOptions): Store {
  const memory = opts.path === ":memory:"
  if (!memory) {
    usable(opts.path)
    createPrivate(opts.path)
  }
  const keys =
    opts.keys ?? (memory && !opts.secretFile ? undefined : fileKeyring(opts.secretFile ?? `${opts.path}.secret`))
  const raw = open(opts.path)
  if (!memory) restrictSidecars(opts.path)
  const db = new Kysely<Database>({
    dialect: new BunSqliteDialect({ database: cachingStatements(raw, opts.onStatement) }),
  })
  return createSqlStore(db, sqliteDialect, { keys, onKeyProblem: opts.onKeyProblem, held: opts.held })
}

/**
 * Refuses, as one line with the fix, a database this process cannot write: the file, its -wal and -shm,
 * and the folder SQLite creates them in (e.g. one created by root for a service that runs as dffmpeg).
 */
function usable(path: string): void {
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    if (f !== path && !existsSync(f)) continue
    const problem = accessProblem(f, "database", "write")
    if (problem) throw new ConfigError(problem)
  }
}

function setUp(raw: Sqlite): void {
  // Output rows are ~64 KiB blobs written once, read once and deleted: 64 KiB pages move each in one or
  // two pages rather than a chain of sixteen 4 KiB overflow pages (the relay's stdout: 65 → 90 MB/s, see
  // docs/performance.md). It takes effect only on a new database (before WAL; an existing one keeps its size).
  raw.exec("PRAGMA page_size = 65536")
  raw.exec("PRAGMA journal_mode = WAL")
  // Output passes through the WAL: after a checkpoint it shrinks back to this size rather than staying as
  // large as its largest burst.
  raw.exec("PRAGMA journal_size_limit = 67108864")
  raw.exec("PRAGMA busy_timeout = 5000")
  // NORMAL is durable across application crashes in WAL mode; only an OS crash may lose the last commits.
  raw.exec("PRAGMA synchronous = NORMAL")
  raw.exec("PRAGMA foreign_keys = ON")
  // Temporary tables and sort spills stay in memory (ours are small and bounded by the listing limits):
  // a host or container with no writable temp folder (/tmp read-only, no TMPDIR) otherwise fails
  // statements with a misleading "cannot rollback - no transaction is active".
  raw.exec("PRAGMA temp_store = MEMORY")
}

/** SQLite's codes for a file it may not open or write: reported like `usable` (a check raced, or ACLs it cannot see). */
const ACCESS_CODES = /^SQLITE_(CANTOPEN|READONLY|PERM|AUTH)/

/** Opens the file and sets it up; a file SQLite refuses to open or write is a config error, not a crash. */
function open(path: string): Sqlite {
  let raw: Sqlite | undefined
  try {
    raw = new Sqlite(path, { create: true, strict: true })
    setUp(raw)
    // A write that changes nothing: SQLite opens a file it may not write read-only, and says so only at the
    // first write (a database already in WAL mode passes the pragmas above).
    const { user_version } = raw.query("PRAGMA user_version").get() as { user_version: number }
    raw.exec(`PRAGMA user_version = ${Number(user_version)}`)
    return raw
  } catch (err) {
    raw?.close()
    if (existsSync(path) && statSync(path).isDirectory())
      throw new ConfigError(`database.path ${path} is a directory; name a file in it (e.g. ${path}/dffmpeg.db)`)
    const code = String((err as { code?: unknown }).code ?? "")
    if (!ACCESS_CODES.test(code)) throw err
    throw new ConfigError(
      accessProblem(path, "database", "write") ??
        `database ${path} cannot be opened for writing: ${(err as Error).message} (${code})`,
    )
  }
}

/** Statements kept compiled; the store's queries are a few dozen shapes (multi-row inserts vary by row count). */
const STATEMENT_CACHE = 256

/**
 * The database as the Kysely dialect sees it, with `prepare` reusing compiled statements: the dialect
 * prepares every query anew. Least recently used statements are dropped past STATEMENT_CACHE (and
 * finalized by the garbage collector, as every statement was before). The dialect runs one query at a
 * time on its single connection, so a statement is never used twice at once.
 */
export function cachingStatements(raw: Sqlite, onStatement?: (sql: string) => void): Sqlite {
  const cache = new Map<string, ReturnType<Sqlite["prepare"]>>()
  const prepare = (sql: string) => {
    // The dialect prepares once per query it runs.
    onStatement?.(sql)
    let stmt = cache.get(sql)
    if (stmt) cache.delete(sql)
    else {
      stmt = raw.prepare(sql)
      if (cache.size >= STATEMENT_CACHE) cache.delete(cache.keys().next().value!)
    }
    cache.set(sql, stmt)
    return stmt
  }
  return new Proxy(raw, {
    get(target, key) {
      if (key === "prepare") return prepare
      const v = Reflect.get(target, key, target)
      // Methods run on the database itself (its private fields are not the proxy's).
      return typeof v === "function" ? v.bind(target) : v
    },
  })
}
