import { isAbsolute, join } from "node:path"
import { loadConfig } from "../../../shared/config/load.ts"
import { explainYaml } from "../../../shared/config/yaml-explain.ts"
import type { CoordinatorConfig } from "../../../shared/config/schema.ts"
import { createStore, type Store } from "../../../store/index.ts"

/**
 * Opens the coordinator's own store from its config file (safe while the coordinator runs: WAL and a
 * busy timeout). Returns the database path too, for messages, and the config (its limits apply here too).
 */
export async function openStore(file: string): Promise<{ store: Store; path: string; config: CoordinatorConfig }> {
  const { config, base, warnings } = await loadConfig("coordinator", file, {}, explainYaml)
  for (const w of warnings) process.stderr.write(`dffmpeg: warning: ${w}\n`)
  const p = config.database.path
  const path = p === ":memory:" || isAbsolute(p) ? p : join(base, p)
  return { store: await createStore({ engine: config.database.engine, path }), path, config }
}
