import { afterAll } from "bun:test"
import pg from "pg"
import { createConnection } from "mysql2/promise"
import { serverConnection, type ServerConnection } from "../../src/store/server/connection.ts"
import type { DatabaseConfig } from "../../src/shared/config/server-schema.ts"

/**
 * Fresh server databases for tests, on the local PostgreSQL and MariaDB that `scripts/setup.sh --services`
 * starts, as its test role (`dffmpeg_test`, which may create and drop `dfft_*` databases). Never skipped:
 * a server that is down fails the test that needs it. Override with DFFMPEG_TEST_POSTGRES_URL /
 * DFFMPEG_TEST_MYSQL_URL (the URL's database is only where the role logs in to create others).
 */
export type ServerEngine = "postgres" | "mysql"

const ADMIN_URL: Record<ServerEngine, string> = {
  postgres: process.env.DFFMPEG_TEST_POSTGRES_URL ?? "postgres://dffmpeg_test:dffmpeg_test@127.0.0.1:5432/postgres",
  mysql: process.env.DFFMPEG_TEST_MYSQL_URL ?? "mysql://dffmpeg_test:dffmpeg_test@127.0.0.1:3306/",
}

export const SERVER_ENGINES: readonly ServerEngine[] = ["postgres", "mysql"]

export interface TestDatabase {
  engine: ServerEngine
  name: string
  /** URL of the database, with its password: for config files and DFFMPEG_DATABASE_URL. */
  url: string
  /** The `database:` config section naming it. */
  config: DatabaseConfig
  connection: ServerConnection
  drop(): Promise<void>
}

const created: TestDatabase[] = []
// Registered when a test file imports this module, so at its top level: the file's databases are
// dropped after its last test (a hook registered from inside a test would run after that test).
// Outside the test runner (a benchmark: bench/cluster.ts) there is no afterAll: callers drop their own.
try {
  afterAll(async () => {
    await Promise.all(created.splice(0).map((d) => d.drop().catch(() => {})))
  })
} catch {}

/** Runs SQL as the test role on the engine's admin database. */
export async function adminSql(engine: ServerEngine, text: string): Promise<void> {
  if (engine === "postgres") {
    const c = new pg.Client({ connectionString: ADMIN_URL.postgres })
    await c.connect()
    try {
      await c.query(text)
    } finally {
      await c.end()
    }
  } else {
    const u = new URL(ADMIN_URL.mysql)
    const c = await createConnection({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
    })
    try {
      await c.query(text)
    } finally {
      await c.end()
    }
  }
}

/** A new, empty database on `engine`, dropped by `drop()` or at the end of the test file. */
export async function freshDatabase(engine: ServerEngine): Promise<TestDatabase> {
  const name = `dfft_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
  await adminSql(engine, engine === "postgres" ? `CREATE DATABASE ${name}` : `CREATE DATABASE \`${name}\``)
  const u = new URL(ADMIN_URL[engine])
  u.pathname = `/${name}`
  const url = u.toString()
  const config = { engine, url } as DatabaseConfig
  const connection = serverConnection(
    { engine, url, pool_size: 10, connect_timeout_seconds: 5, notify_interval_ms: 20 } as never,
    process.cwd(),
  )
  let dropped = false
  const db: TestDatabase = {
    engine,
    name,
    url,
    config,
    connection,
    async drop() {
      if (dropped) return
      dropped = true
      await adminSql(
        engine,
        engine === "postgres" ? `DROP DATABASE IF EXISTS ${name} WITH (FORCE)` : `DROP DATABASE IF EXISTS \`${name}\``,
      )
    },
  }
  created.push(db)
  return db
}

/** Runs `text` on the test database `db` itself (as the test role). */
export async function databaseSql(db: TestDatabase, text: string): Promise<unknown[]> {
  if (db.engine === "postgres") {
    const c = new pg.Client({ connectionString: db.url })
    await c.connect()
    try {
      return (await c.query(text)).rows
    } finally {
      await c.end()
    }
  }
  const c = await createConnection({
    host: db.connection.host,
    port: db.connection.port,
    user: db.connection.user,
    password: db.connection.password,
    database: db.name,
    multipleStatements: true,
  })
  try {
    return (await c.query(text))[0] as unknown[]
  } finally {
    await c.end()
  }
}

/**
 * One database for a whole test file, emptied of every row (but the schema version) each time it is
 * asked for: migrating a fresh database costs 0.3-0.5 s of DDL per test, emptying one some milliseconds.
 * The store opened on it sees an empty, migrated database, which is what a fresh one becomes.
 */
export function emptiedDatabase(engine: ServerEngine): () => Promise<TestDatabase> {
  let db: Promise<TestDatabase> | undefined
  return async () => {
    const first = !db
    db ??= freshDatabase(engine)
    const d = await db
    if (first) return d
    const tables = (await databaseSql(
      d,
      engine === "postgres"
        ? "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public'"
        : `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = '${d.name}'`,
    )) as { t?: string; T?: string; TABLE_NAME?: string }[]
    const names = tables.map((r) => r.t ?? r.T ?? r.TABLE_NAME ?? "").filter((t) => t && t !== "meta")
    if (names.length === 0) return d
    // meta keeps the schema version only (the stored keys' secret id goes with the keys).
    await databaseSql(
      d,
      engine === "postgres"
        ? `${names.map((t) => `DELETE FROM "${t}";`).join(" ")} DELETE FROM meta WHERE key <> 'schema_version'`
        : `${names.map((t) => `DELETE FROM \`${t}\`;`).join(" ")} DELETE FROM meta WHERE \`key\` <> 'schema_version';`,
    )
    return d
  }
}
