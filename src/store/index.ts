import { ConfigError } from "../shared/errors.ts"
import type { Keyring } from "../shared/auth/keyring.ts"
import type { Store } from "./types.ts"

export type { Stats, Store } from "./types.ts"

export interface StoreConfig {
  engine: "sqlite"
  path: string
  /** The secrets stored keys are sealed under (default: the file `<path>.secret`). */
  keys?: Keyring
  onKeyProblem?: (message: string) => void
  /** What the start did to the stored keys (sealed from clear, an interrupted rotation completed). */
  onKeys?: (report: { sealed: number; recovered?: string }) => void
}

/** Opens and migrates the configured store. Adapters are imported lazily so unused ones stay cold. */
export async function createStore(cfg: StoreConfig): Promise<Store> {
  switch (cfg.engine) {
    case "sqlite": {
      const { createSqliteStore } = await import("./sqlite/index.ts")
      const store = createSqliteStore({ path: cfg.path, keys: cfg.keys, onKeyProblem: cfg.onKeyProblem })
      // Not `cfg.onKeys?.(await store.migrate())`: an absent callback would skip the migration.
      const report = await store.migrate()
      cfg.onKeys?.(report)
      return store
    }
    default:
      throw new ConfigError(`unknown database engine ${(cfg as { engine: string }).engine}`)
  }
}
