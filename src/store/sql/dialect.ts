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
  /** Whether several coordinators may share the database (the store's `shared`). */
  readonly shared: boolean
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
  /** The last `n` bytes of a blob column (the whole value when shorter). */
  tailBytes(column: string, n: number): RawBuilder<Uint8Array>
  /**
   * The lock migrations take across processes on a server database, on one connection: `acquire`
   * answers `locked` = 1 once held. SQLite has none: each step holds its write lock.
   */
  readonly migrationLock?: { acquire: RawBuilder<{ locked: number }>; release: RawBuilder<unknown> }
  /** Whether schema changes roll back with their transaction (not on MySQL: DDL commits by itself). */
  readonly transactionalDdl: boolean
  /** What a CREATE TABLE needs after its columns (MySQL: the engine and a byte-exact collation). */
  tableOptions?: RawBuilder<unknown>
  /** An auto-incrementing 64-bit primary key, in the engine's own words. */
  serialKey<T extends CreateTableBuilder<any, any>>(t: T, col: string): T
  /**
   * The database server's clock in milliseconds since the epoch (`t`), read as the statement runs (not
   * the transaction's start); undefined when the database has no clock of its own (SQLite: the host's).
   */
  readonly clock?: RawBuilder<{ t: number }>
}

/** SQLite: one writer at a time (BEGIN IMMEDIATE), no row locks, freed bytes kept in its files. */
export const sqliteDialect: SqlDialect = {
  name: "sqlite",
  shared: false,
  forUpdate: false,
  transactionalDdl: true,
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
  // substr() of a blob counts bytes; a negative start counts from the end (MySQL too).
  tailBytes: (column, n) => sql<Uint8Array>`substr(${sql.ref(column)}, ${-n})`,
  serialKey: (t, col) => t.addColumn(col, "integer", (c) => c.primaryKey().autoIncrement()) as typeof t,
}

/** PostgreSQL: row locks, storage of its own, and three column types of its own. */
export const postgresDialect: SqlDialect = {
  ...sqliteDialect,
  name: "postgres",
  shared: true,
  forUpdate: true,
  // Held by the session, per database; a crashed holder's connection ends and frees it.
  migrationLock: {
    acquire: sql<{ locked: number }>`select 1 as locked, pg_advisory_lock(hashtext('dffmpeg.migrate'))`,
    release: sql`select pg_advisory_unlock(hashtext('dffmpeg.migrate'))`,
  },
  wipeOnReplace: false,
  othersCommitted: undefined,
  blob: () => sql`bytea`,
  big: () => sql`bigint`,
  // substr()'s negative start does not count from the end here.
  tailBytes: (column, n) =>
    sql<Uint8Array>`substring(${sql.ref(column)} from greatest(length(${sql.ref(column)}) - ${n - 1}, 1))`,
  serialKey: (t, col) => t.addColumn(col, "bigserial", (c) => c.primaryKey()) as typeof t,
  // clock_timestamp(), not now(): now() is the transaction's start.
  clock: sql<{ t: number }>`select (extract(epoch from clock_timestamp()) * 1000)::float8 as t`,
}

/**
 * MySQL and MariaDB: as PostgreSQL, but INSERT IGNORE, longblob, bounded varchar keys, no RETURNING
 * on UPDATE, and InnoDB tables whose text compares byte for byte (the default collations ignore case
 * and trailing spaces: `alice` would be `Alice `).
 */
export const mysqlDialect: SqlDialect = {
  ...postgresDialect,
  name: "mysql",
  transactionalDdl: false,
  // Server-wide names, so the database's is in it; 60 s for another migrating coordinator.
  migrationLock: {
    acquire: sql<{ locked: number }>`select get_lock(concat('dffmpeg.migrate.', database()), 60) as locked`,
    release: sql`select release_lock(concat('dffmpeg.migrate.', database()))`,
  },
  tailBytes: sqliteDialect.tailBytes,
  tableOptions: sql`ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
  returning: false,
  insertIgnore: (q) => q.ignore(),
  blob: () => sql`longblob`,
  str: (n = 255) => sql.raw(`varchar(${n})`),
  serialKey: (t, col) => t.addColumn(col, "bigint", (c) => c.primaryKey().autoIncrement()) as typeof t,
  // now(3): the statement's time to the millisecond; unix_timestamp() of it is independent of the session's zone.
  clock: sql<{ t: number }>`select unix_timestamp(now(3)) * 1000 as t`,
}
