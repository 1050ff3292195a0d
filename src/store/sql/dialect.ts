import { sql, type CreateTableBuilder, type InsertQueryBuilder, type RawBuilder } from "kysely"
import type { StoreKind } from "../types.ts"

/**
 * What one database engine does differently under the shared SQL store: its column types, how it
 * locks, how it skips a duplicate row and whether replaced bytes need wiping. Query sites ask the
 * dialect instead of testing the engine's name, so a new engine is one more object here.
 */
export interface SqlDialect {
  /** The engine, also the store's public `kind`. */
  readonly name: StoreKind
  /**
   * Whether read-then-write transactions lock the rows they read (`SELECT ... FOR UPDATE`). Without
   * row locks (SQLite) a write transaction takes the database's write lock up front (tx.ts).
   */
  readonly forUpdate: boolean
  /**
   * Whether a replaced secret must be wiped from the files by hand: SQLite keeps freed bytes in its
   * pages and old pages in the WAL (keys.ts); server databases manage their own storage.
   */
  readonly wipeOnReplace: boolean
  /**
   * A statement answering one number that changes whenever another connection (another process on the
   * database: `dffmpeg admin --local`, a second coordinator) has committed since this connection last
   * asked; undefined when the engine has none. The credential cache (users.ts) lives on it.
   */
  /** Whether INSERT and UPDATE can answer the rows they wrote (`RETURNING`), saving a read after each transition. */
  readonly returning: boolean
  readonly othersCommitted?: RawBuilder<{ data_version: number }>
  /** `insert` that skips rows whose `columns` (a unique key) already exist. */
  insertIgnore<DB, TB extends keyof DB, O>(
    q: InsertQueryBuilder<DB, TB, O>,
    columns: readonly (keyof DB[TB] & string)[],
  ): InsertQueryBuilder<DB, TB, O>
  /** Column types, for migrations. */
  blob(): RawBuilder<unknown>
  /** A string column of at most `n` characters (MySQL cannot index unbounded text). */
  str(n?: number): RawBuilder<unknown>
  /** A 64-bit integer column. */
  big(): RawBuilder<unknown>
  /** An auto-incrementing 64-bit primary key, in the engine's own words. */
  serialKey<T extends CreateTableBuilder<any, any>>(t: T, col: string): T
}

/** SQLite: one writer at a time (BEGIN IMMEDIATE), no row locks, freed bytes kept in its files. */
export const sqliteDialect: SqlDialect = {
  name: "sqlite",
  forUpdate: false,
  wipeOnReplace: true,
  // Since SQLite 3.35 (2021).
  returning: true,
  // Per connection: unchanged by this connection's own commits, changed by anyone else's.
  othersCommitted: sql<{ data_version: number }>`PRAGMA data_version`,
  // ON CONFLICT (...) DO NOTHING, which PostgreSQL shares.
  insertIgnore: (q, columns) => q.onConflict((oc) => oc.columns(columns as never).doNothing()),
  blob: () => sql`blob`,
  str: () => sql`text`,
  big: () => sql`integer`,
  serialKey: (t, col) => t.addColumn(col, "integer", (c) => c.primaryKey().autoIncrement()) as typeof t,
}

/** PostgreSQL (planned): row locks, storage of its own, and three column types of its own. */
export const postgresDialect: SqlDialect = {
  ...sqliteDialect,
  name: "postgres",
  forUpdate: true,
  wipeOnReplace: false,
  othersCommitted: undefined,
  blob: () => sql`bytea`,
  big: () => sql`bigint`,
  serialKey: (t, col) => t.addColumn(col, "bigserial", (c) => c.primaryKey()) as typeof t,
}

/** MySQL and MariaDB (planned): as PostgreSQL, but INSERT IGNORE, longblob and bounded varchar keys. */
export const mysqlDialect: SqlDialect = {
  ...postgresDialect,
  name: "mysql",
  returning: false,
  insertIgnore: (q) => q.ignore(),
  blob: () => sql`longblob`,
  str: (n = 255) => sql.raw(`varchar(${n})`),
  serialKey: (t, col) => t.addColumn(col, "bigint", (c) => c.primaryKey().autoIncrement()) as typeof t,
}
