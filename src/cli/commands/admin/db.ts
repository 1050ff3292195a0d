import { existsSync } from "node:fs"
import { PRESENCE_RECENT_MS } from "../../../coordinator/presence.ts"
import { VERSION } from "../../../shared/version.ts"
import { SCHEMA_VERSION } from "../../../store/index.ts"
import type { CoordinatorRow, Store, StoreKind } from "../../../store/types.ts"
import { verb } from "../../command.ts"
import { ago, fields, table, time } from "../../table.ts"
import { jsonArg, modeArgs, modeOf, noun, print } from "./_args.ts"
import { localConfig } from "./_backend.ts"
import { coordinatorStore, openStore } from "./_store.ts"

/** What `dffmpeg admin db status` reports (its --json). */
export interface DbStatus {
  engine: StoreKind
  /** The SQLite file, or the server database as a URL with its password masked. */
  database: string
  /** False for an SQLite file not created yet (nothing is created to find out). */
  exists: boolean
  /** The database's schema version (0: never migrated). */
  schemaVersion: number
  /** This dffmpeg's. */
  buildSchemaVersion: number
  /** Migration steps this dffmpeg would apply (0 when the database is at or past its version). */
  pending: number
  /** This dffmpeg's version. */
  version: string
  /** Coordinators that refreshed their row in the last `recentSeconds`; null before the schema has the table. */
  coordinators: CoordinatorRow[] | null
  recentSeconds: number
}

/** The status of an opened store, read only: nothing is created, migrated or sealed. */
export async function dbStatus(store: Store, database: string, now: number): Promise<DbStatus> {
  const at = await store.schemaVersion()
  let coordinators: CoordinatorRow[] | null
  try {
    coordinators = await store.listCoordinators(now - PRESENCE_RECENT_MS)
  } catch (err) {
    // A database a previous dffmpeg migrated has no `coordinators` table yet.
    if (at >= SCHEMA_VERSION) throw err
    coordinators = null
  }
  return {
    engine: store.kind,
    database,
    exists: true,
    schemaVersion: at,
    buildSchemaVersion: SCHEMA_VERSION,
    pending: Math.max(0, SCHEMA_VERSION - at),
    version: VERSION,
    coordinators,
    recentSeconds: PRESENCE_RECENT_MS / 1000,
  }
}

export function describeStatus(s: DbStatus, now: number): string {
  const pending =
    s.schemaVersion > s.buildSchemaVersion
      ? "none: the database is newer than this dffmpeg (upgrade dffmpeg before it starts a coordinator here)"
      : s.pending
        ? `${s.pending} (to schema version ${s.buildSchemaVersion}): dffmpeg admin db migrate, or the next start of a coordinator of this version, applies them`
        : "none"
  const head = fields([
    ["engine", s.engine],
    ["database", s.exists ? s.database : `${s.database} (not created yet)`],
    ["schema version", `${s.schemaVersion} (this dffmpeg: ${s.buildSchemaVersion})`],
    ["pending migrations", pending],
    ["dffmpeg", s.version],
  ])
  const within = `in the last ${s.recentSeconds} s`
  if (s.coordinators === null)
    return `${head}\ncoordinators: not recorded before schema version ${s.buildSchemaVersion}\n`
  if (!s.coordinators.length) return `${head}\nno coordinator seen ${within}\n`
  const rows = s.coordinators.map((c) => [
    c.id,
    c.host,
    c.pid,
    c.version,
    c.url,
    time(c.startedAt),
    `${ago(c.seenAt, now)} ago`,
  ])
  return `${head}\n${s.coordinators.length} coordinator(s) seen ${within}:\n${table(["ID", "HOST", "PID", "VERSION", "URL", "STARTED", "LAST SEEN"], rows)}`
}

/** Why the db verbs refuse an admin identity: they read the database itself, not the coordinator's API. */
const LOCAL_ONLY =
  "works with the coordinator's config, on its database (from any host that reaches it), not through the coordinator's API"

const statusArgs = { ...jsonArg, ...modeArgs } as const
const status = verb(
  "status",
  "Show the database (engine, where, password masked), its schema version against this dffmpeg's, the migrations pending and the coordinators seen on it recently. Local mode only (on a host that reaches the database, with the coordinator's config); read only: nothing is created or migrated",
  statusArgs,
  async (args) => {
    const file = localConfig(modeOf(args), `db status ${LOCAL_ONLY}`)
    const now = Date.now()
    const { config, paths } = await coordinatorStore(file)
    let s: DbStatus
    if (config.database.engine === "sqlite" && paths.database !== ":memory:" && !existsSync(paths.database))
      s = {
        engine: "sqlite",
        database: paths.database,
        exists: false,
        schemaVersion: 0,
        buildSchemaVersion: SCHEMA_VERSION,
        pending: SCHEMA_VERSION,
        version: VERSION,
        coordinators: [],
        recentSeconds: PRESENCE_RECENT_MS / 1000,
      }
    else {
      const { store, path } = await openStore(file, { migrate: false, secret: false })
      try {
        s = await dbStatus(store, path, now)
      } finally {
        await store.close()
      }
    }
    print(args.json, s, () => describeStatus(s, now))
  },
)

/** What `dffmpeg admin db migrate` did (its --json). */
export interface Migration {
  engine: StoreKind
  database: string
  from: number
  to: number
  /** Keys that were stored in clear and are now sealed under the coordinator secret. */
  sealed: number
  /** The secret id an interrupted rotation was completed to, if one was. */
  recovered?: string
}

/** Migrates an opened store (under the engine's lock, as a coordinator's start does) and says what changed. */
export async function migrateStore(store: Store, database: string): Promise<Migration> {
  const from = await store.schemaVersion()
  const keys = await store.migrate()
  const to = await store.schemaVersion()
  return { engine: store.kind, database, from, to, ...keys }
}

export function describeMigration(m: Migration): string {
  const did =
    m.from === m.to
      ? `${m.database} is at schema version ${m.to}, this dffmpeg's: no migration to apply\n`
      : `migrated ${m.database} from schema version ${m.from} to ${m.to} (${m.to - m.from} step(s))\n`
  const keys = m.sealed ? `encrypted ${m.sealed} key(s) that were stored in clear\n` : ""
  const rotation = m.recovered ? `completed an interrupted secret rotation: the secret is now ${m.recovered}\n` : ""
  return did + keys + rotation
}

const migrateArgs = { ...jsonArg, ...modeArgs } as const
const migrate = verb(
  "migrate",
  "Apply the migrations this dffmpeg has and the database has not (under the same lock as a coordinator's start, so safe while coordinators run) and say what was done. Local mode only (with the coordinator's config and its secret file); a database newer than this dffmpeg is refused (exit 3)",
  migrateArgs,
  async (args) => {
    const file = localConfig(modeOf(args), `db migrate ${LOCAL_ONLY}`)
    const { store, path } = await openStore(file, { migrate: false })
    try {
      const m = await migrateStore(store, path)
      print(args.json, m, () => describeMigration(m))
    } finally {
      await store.close()
    }
  },
)

export default noun(
  "db",
  "The coordinator's database: schema version, pending migrations, the coordinators on it (local mode only: on a host that reaches the database, with the coordinator's config)",
  { status, migrate },
)
