import type { DatabaseConfig } from "../shared/config/server-schema.ts"
import { ConfigError } from "../shared/errors.ts"
import type { Keyring } from "../shared/auth/keyring.ts"
import { sqlitePaths } from "./sqlite/paths.ts"
import { serverConnection } from "./server/connection.ts"
import { isAbsolute, join } from "node:path"
import type { Store } from "./types.ts"
import type { HeldOutput } from "./held.ts"

export type { Stats, Store } from "./types.ts"
/** The schema version this build migrates to (`dffmpeg admin db status` compares the database's with it). */
export { SCHEMA_VERSION } from "./sql/migrations.ts"

export interface StoreConfig {
  /** The config's `database` section; its engine picks the adapter. */
  database: DatabaseConfig
  /** Directory a relative database path is resolved against (the config file's; default: the working directory). */
  base?: string
  /** The secrets stored keys are sealed under (default: the file `<path>.secret`). */
  keys?: Keyring
  onKeyProblem?: (message: string) => void
  /** What the start did to the stored keys (sealed from clear, an interrupted rotation completed). */
  onKeys?: (report: { sealed: number; recovered?: string }) => void
  /** Told, after the start, what the operator should fix but does not stop the store (a database others can read). */
  onWarning?: (message: string) => void
  /** The coordinator's in-memory stdout (store/held.ts); only the coordinator that serves the jobs' streams has one. */
  held?: HeldOutput
  /**
   * False opens the store as it is, without bringing its schema or keys up to date (`dffmpeg admin db
   * status` and `migrate` read the version first); a server database is still reached once, so that one
   * that cannot be is reported here as at any start. Default true.
   */
  migrate?: boolean
}

/** Where the configured store lives (`database`, for messages) and its secret file, as its engine resolves them. */
export interface StorePaths {
  /** The SQLite file, or a server database as a URL with its password masked. */
  database: string
  secret?: string
}

/** A server database's secret file when `secret_key_file` is not set: beside the config file. */
export const SERVER_SECRET_FILE = "dffmpeg.secret"

/**
 * The store's location and secret file for a coordinator config, resolved against `base` by the
 * engine's adapter: the one definition that the coordinator and `dffmpeg admin --local` share.
 */
export function storePaths(cfg: { database: DatabaseConfig; secret_key_file?: string }, base: string): StorePaths {
  const engine = cfg.database.engine
  switch (engine) {
    case "sqlite":
      return sqlitePaths(cfg.database.path, cfg.secret_key_file, base)
    case "postgres":
    case "mysql": {
      const file = cfg.secret_key_file ?? SERVER_SECRET_FILE
      return {
        database: serverConnection(cfg.database, base).display,
        secret: isAbsolute(file) ? file : join(base, file),
      }
    }
    default:
      throw new ConfigError(`unknown database engine ${engine satisfies never}`)
  }
}

/** Opens and migrates the configured store. Adapters are imported lazily so unused ones stay cold. */
export async function createStore(cfg: StoreConfig): Promise<Store> {
  const engine = cfg.database.engine
  switch (engine) {
    case "sqlite": {
      const { createSqliteStore, exposure } = await import("./sqlite/index.ts")
      const { refuseNetworkFilesystem } = await import("./sqlite/network.ts")
      const { database: path } = storePaths(cfg, cfg.base ?? process.cwd())
      // Before anything is created there.
      refuseNetworkFilesystem(path, cfg.database.allow_network_filesystem === true)
      const store = createSqliteStore({ path, keys: cfg.keys, onKeyProblem: cfg.onKeyProblem, held: cfg.held })
      if (cfg.migrate !== false) {
        // Not `cfg.onKeys?.(await store.migrate())`: an absent callback would skip the migration.
        const report = await store.migrate()
        cfg.onKeys?.(report)
      }
      const exposed = exposure(path)
      if (exposed) cfg.onWarning?.(exposed)
      return store
    }
    case "postgres":
    case "mysql": {
      const connection = serverConnection(cfg.database, cfg.base ?? process.cwd())
      const opts = { connection, keys: cfg.keys, onKeyProblem: cfg.onKeyProblem, held: cfg.held }
      const store =
        engine === "postgres"
          ? (await import("./postgres/index.ts")).createPostgresStore(opts)
          : (await import("./mysql/index.ts")).createMysqlStore(opts)
      try {
        if (cfg.migrate === false) await store.ping()
        else {
          const report = await store.migrate()
          cfg.onKeys?.(report)
        }
      } catch (err) {
        await store.close().catch(() => {})
        throw unreachable(err, connection.display)
      }
      return store
    }
    default:
      throw new ConfigError(`unknown database engine ${engine satisfies never}`)
  }
}

/**
 * A server database that cannot be reached or logged into at start is the operator's to fix: one line
 * naming it (password masked) and exit 3, not a stack trace.
 */
function unreachable(err: unknown, display: string): unknown {
  const e = err as { code?: string; message?: string }
  const code = e.code ?? ""
  const known =
    /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ER_ACCESS_DENIED_ERROR|ER_BAD_DB_ERROR|ER_DBACCESS_DENIED_ERROR|28P01|28000|3D000|42501)$/.test(
      code,
    ) || /timeout|terminated|connect/i.test(e.message ?? "")
  if (!known) return err
  return new ConfigError(`cannot use database ${display}: ${e.message || code}`)
}
