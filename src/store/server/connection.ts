import { readFileSync } from "node:fs"
import { isAbsolute, join } from "node:path"
import type { DatabaseConfig } from "../../shared/config/server-schema.ts"
import { ConfigError } from "../../shared/errors.ts"
import { SERVER_SCHEMES, engineOfUrl } from "../../shared/config/database-url.ts"

export type ServerDatabaseConfig = Extract<DatabaseConfig, { engine: "postgres" | "mysql" }>

/** Where a server database is and how to log in, resolved from `url` and the keys beside it. */
export interface ServerConnection {
  engine: "postgres" | "mysql"
  host: string
  port: number
  user: string
  password?: string
  database: string
  /** TLS to the server: undefined means none. */
  ssl?: { ca?: string; rejectUnauthorized: boolean }
  poolSize: number
  connectTimeoutMs: number
  notifyIntervalMs: number
  /** The database as messages show it, password masked: `postgres://dffmpeg:***@127.0.0.1:5432/dffmpeg`. */
  display: string
}

const SCHEMES: Record<ServerConnection["engine"], readonly string[]> = SERVER_SCHEMES
const DEFAULT_PORT = { postgres: 5432, mysql: 3306 } as const

/** The engine a `DFFMPEG_DATABASE_URL` names by its scheme, or undefined for one dffmpeg does not know. */
export { engineOfUrl }

/**
 * The connection `cfg` describes: its `url` first, then each key given beside it (host, port, user,
 * password or password_file, database, ssl). Files are resolved against `base` (the config file's
 * directory). Unknown URL schemes and unreadable files are configuration errors (exit 3).
 */
export function serverConnection(cfg: ServerDatabaseConfig, base: string): ServerConnection {
  const at = (p: string) => (isAbsolute(p) ? p : join(base, p))
  const read = (key: string, p: string) => {
    try {
      return readFileSync(at(p), "utf8")
    } catch (err) {
      throw new ConfigError(
        `database.${key} ${at(p)} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      )
    }
  }
  let host = "127.0.0.1"
  let port: number = DEFAULT_PORT[cfg.engine]
  let user = "dffmpeg"
  let password: string | undefined
  let database = "dffmpeg"
  let ssl: ServerConnection["ssl"]
  if (cfg.url) {
    const u = new URL(cfg.url)
    if (!SCHEMES[cfg.engine].includes(u.protocol))
      throw new ConfigError(
        `database.url ${JSON.stringify(u.protocol)} does not name engine ${cfg.engine} (use ${SCHEMES[cfg.engine].map((s) => `${s}//`).join(" or ")})`,
      )
    if (u.hostname) host = u.hostname.replace(/^\[|\]$/g, "")
    if (u.port) port = Number(u.port)
    if (u.username) user = decodeURIComponent(u.username)
    if (u.password) password = decodeURIComponent(u.password)
    const name = decodeURIComponent(u.pathname.replace(/^\//, ""))
    if (name) database = name
    const mode = u.searchParams.get("sslmode") ?? u.searchParams.get("ssl")
    if (mode !== null) {
      if (["disable", "false", "0"].includes(mode)) ssl = undefined
      else if (["require", "prefer", "allow", "no-verify"].includes(mode)) ssl = { rejectUnauthorized: false }
      else if (["verify-ca", "verify-full", "true", "1"].includes(mode)) ssl = { rejectUnauthorized: true }
      else throw new ConfigError(`database.url sslmode=${mode} is not one of disable, require, verify-ca, verify-full`)
    }
  }
  if (cfg.host) host = cfg.host
  if (cfg.port !== undefined) port = cfg.port
  if (cfg.user) user = cfg.user
  if (cfg.password !== undefined) password = cfg.password
  if (cfg.password_file) password = read("password_file", cfg.password_file).split(/\r?\n/)[0]
  if (cfg.database) database = cfg.database
  if (cfg.ssl !== undefined) {
    if (cfg.ssl === false) ssl = undefined
    else if (cfg.ssl === true) ssl = { rejectUnauthorized: true }
    else
      ssl = {
        rejectUnauthorized: cfg.ssl.reject_unauthorized,
        ...(cfg.ssl.ca_file ? { ca: read("ssl.ca_file", cfg.ssl.ca_file) } : {}),
      }
  }
  if (port === 0) throw new ConfigError("database.port must not be 0")
  const hostPart = host.includes(":") ? `[${host}]` : host
  const display = `${cfg.engine}://${encodeURIComponent(user)}${password !== undefined ? ":***" : ""}@${hostPart}:${port}/${encodeURIComponent(database)}${ssl ? " (TLS)" : ""}`
  return {
    engine: cfg.engine,
    host,
    port,
    user,
    ...(password !== undefined ? { password } : {}),
    database,
    ...(ssl ? { ssl } : {}),
    poolSize: cfg.pool_size,
    connectTimeoutMs: Math.round(cfg.connect_timeout_seconds * 1000),
    notifyIntervalMs: cfg.notify_interval_ms,
    display,
  }
}
