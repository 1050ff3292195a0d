import type { DatabaseConfig } from "../shared/config/server-schema.ts"
import { ConfigError } from "../shared/errors.ts"
import type { Keyring } from "../shared/auth/keyring.ts"
import { sqlitePaths } from "./sqlite/paths.ts"
import type { Store } from "./types.ts"
import type { HeldOutput } from "./held.ts"

export type { Stats, Store } from "./types.ts"

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
}

/** Where the configured store lives (`database`, for messages) and its secret file, as its engine resolves them. */
export interface StorePaths {
  database: string
  secret?: string
}

/**
 * The store's location and secret file for a coordinator config, resolved against `base` by the
 * engine's adapter: the one definition that the coordinator and `dffmpeg admin --local` share.
 */
export function storePaths(cfg: { database: DatabaseConfig; secret_key_file?: string }, base: string): StorePaths {
  const engine = cfg.database.engine
  switch (engine) {
    case "sqlite":
      return sqlitePaths(cfg.database.path, cfg.secret_key_file, base)
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
      // Not `cfg.onKeys?.(await store.migrate())`: an absent callback would skip the migration.
      const report = await store.migrate()
      cfg.onKeys?.(report)
      const exposed = exposure(path)
      if (exposed) cfg.onWarning?.(exposed)
      return store
    }
    default:
      throw new ConfigError(`unknown database engine ${engine satisfies never}`)
  }
}
