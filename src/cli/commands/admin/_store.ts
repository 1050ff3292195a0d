import { isAbsolute, join } from "node:path"
import { loadConfig } from "../../../shared/config/load.ts"
import { explainYaml } from "../../../shared/config/yaml-explain.ts"
import { createStore, type Store } from "../../../store/index.ts"
import { adminContext } from "./index.ts"

/** Opens the coordinator's own store (safe while the coordinator runs: WAL + busy timeout). */
export async function openStore(explicit?: string): Promise<Store> {
  const { config, base, warnings } = await loadConfig("coordinator", explicit ?? adminContext.config, {}, explainYaml)
  for (const w of warnings) process.stderr.write(`dffmpeg: warning: ${w}\n`)
  const p = config.database.path
  return createStore({ engine: config.database.engine, path: p === ":memory:" || isAbsolute(p) ? p : join(base, p) })
}

export async function withStore<T>(explicit: string | undefined, fn: (s: Store) => Promise<T>): Promise<T> {
  const store = await openStore(explicit)
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}
