import { existsSync } from "node:fs"
import { ConfigError } from "../../../shared/errors.ts"
import { loadConfig } from "../../../shared/config/load.ts"
import { explainYaml } from "../../../shared/config/yaml-explain.ts"
import { CoordinatorConfig } from "../../../shared/config/server-schema.ts"
import { fileKeyring, type FileKeyring } from "../../../shared/auth/secret-file.ts"
import { memoryKeyring, type Keyring } from "../../../shared/auth/keyring.ts"
import { createStore, storePaths, type Store } from "../../../store/index.ts"

export interface OpenOptions {
  /** False opens the database as it is, without migrating it or sealing its keys (`admin db`). */
  migrate?: boolean
  /** False leaves the secret file alone (not read, not created): for what reads no key (`admin db status`). */
  secret?: boolean
  /**
   * True for verbs that only read (`users ls`, `jobs show`...): a SQLite database that does not exist is
   * an error (ConfigError, exit 3) instead of being created with its folder and secret file.
   */
  readOnly?: boolean
}

/** The coordinator's config (with DFFMPEG_DATABASE_URL applied) and where its store lives. */
export async function coordinatorStore(file: string) {
  const { config, base, warnings } = await loadConfig("coordinator", CoordinatorConfig, file, {}, explainYaml)
  for (const w of warnings) process.stderr.write(`dffmpeg: warning: ${w}\n`)
  return { config, base, paths: storePaths(config, base) }
}

/**
 * Opens the coordinator's own store from its config file (safe while the coordinator runs: WAL and a
 * busy timeout), with the coordinator's secret (`secret_key_file`) so keys are sealed as it seals them.
 * Returns the database path too, for messages, the config (its limits apply here too) and the secret
 * file's keyring (undefined in memory).
 */
export async function openStore(
  file: string,
  o: OpenOptions = {},
): Promise<{ store: Store; path: string; config: CoordinatorConfig; secret?: { file: string; keys: FileKeyring } }> {
  const { config, paths, base } = await coordinatorStore(file)
  if (o.readOnly && config.database.engine === "sqlite" && paths.database !== ":memory:" && !existsSync(paths.database))
    throw new ConfigError(
      `database ${paths.database} does not exist (named by ${file}; nothing was created): check database.path, or start the coordinator (or run dffmpeg admin db migrate) to create it`,
    )
  // Nor does a read create a secret file: a database whose secret is gone is read as it is (no migration, no
  // sealing), as a new secret would hide the loss from the coordinator's next start.
  const keep = o.readOnly && !!paths.secret && !existsSync(paths.secret)
  const onDisk = paths.secret && o.secret !== false && !keep ? fileKeyring(paths.secret) : undefined
  const keys: Keyring = onDisk ?? memoryKeyring()
  const store = await createStore({
    database: config.database,
    base,
    keys,
    migrate: keep ? false : o.migrate,
    onKeys: (r) => {
      if (r.recovered)
        process.stderr.write(
          `dffmpeg: completed an interrupted secret rotation: ${paths.secret} now holds secret ${r.recovered}\n`,
        )
      if (r.sealed) process.stderr.write(`dffmpeg: encrypted ${r.sealed} key(s) that were stored in clear\n`)
    },
  })
  return {
    store,
    path: paths.database,
    config,
    secret: onDisk && paths.secret ? { file: paths.secret, keys: onDisk } : undefined,
  }
}
