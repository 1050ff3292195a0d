import { ConfigError } from "../shared/errors.ts"
import type { Store } from "./types.ts"

export type { Stats, Store } from "./types.ts"

export interface StoreConfig {
  engine: "sqlite"
  path: string
}

/** Opens and migrates the configured store. Adapters are imported lazily so unused ones stay cold. */
export async function createStore(cfg: StoreConfig): Promise<Store> {
  switch (cfg.engine) {
    case "sqlite": {
      const { createSqliteStore } = await import("./sqlite/index.ts")
      const store = createSqliteStore({ path: cfg.path })
      await store.migrate()
      return store
    }
    default:
      throw new ConfigError(`unknown database engine ${(cfg as { engine: string }).engine}`)
  }
}
