import { isAbsolute, join } from "node:path"

/**
 * The SQLite file, resolved against `base` (the config file's directory), and the coordinator secret:
 * `secret_key_file` (resolved likewise) or `<database>.secret` beside it. An in-memory database has no
 * secret file: its keys die with it.
 */
export function sqlitePaths(
  path: string,
  secretKeyFile: string | undefined,
  base: string,
): { database: string; secret?: string } {
  const at = (p: string) => (isAbsolute(p) ? p : join(base, p))
  const database = path === ":memory:" ? ":memory:" : at(path)
  if (secretKeyFile) return { database, secret: at(secretKeyFile) }
  return database === ":memory:" ? { database } : { database, secret: `${database}.secret` }
}
