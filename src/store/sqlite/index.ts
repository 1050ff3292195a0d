import { Database as Sqlite } from "bun:sqlite"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { Kysely } from "kysely"
import { BunSqliteDialect } from "kysely-bun-sqlite"
import type { Database } from "../sql/schema.ts"
import { createSqlStore } from "../sql/store.ts"
import type { Store } from "../types.ts"

export interface SqliteOptions {
  /** File path, or `:memory:`. */
  path: string
}

/**
 * SQLite in WAL mode with a busy timeout, so that `dffmpeg admin` can write while a coordinator runs.
 * One connection per process: bun:sqlite is synchronous and fast, and Kysely serialises its use.
 */
export function createSqliteStore(opts: SqliteOptions): Store {
  if (opts.path !== ":memory:") mkdirSync(dirname(opts.path), { recursive: true })
  const raw = new Sqlite(opts.path, { create: true, strict: true })
  raw.exec("PRAGMA journal_mode = WAL")
  raw.exec("PRAGMA busy_timeout = 5000")
  // NORMAL is durable across application crashes in WAL mode; only an OS crash may lose the last commits.
  raw.exec("PRAGMA synchronous = NORMAL")
  raw.exec("PRAGMA foreign_keys = ON")
  const db = new Kysely<Database>({ dialect: new BunSqliteDialect({ database: raw }) })
  return createSqlStore(db, "sqlite")
}
