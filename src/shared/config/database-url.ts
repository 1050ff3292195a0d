import { ConfigError } from "../errors.ts"

/** The URL schemes of each server engine (`mariadb://` is MySQL's protocol too). */
export const SERVER_SCHEMES = {
  postgres: ["postgres:", "postgresql:"],
  mysql: ["mysql:", "mariadb:"],
} as const satisfies Record<"postgres" | "mysql", readonly string[]>

/** The engine a database URL names by its scheme, or undefined for one dffmpeg does not know. */
export function engineOfUrl(url: string): "postgres" | "mysql" | "sqlite" | undefined {
  const scheme = url.slice(0, url.indexOf(":") + 1).toLowerCase()
  if (scheme === "sqlite:") return "sqlite"
  for (const [engine, schemes] of Object.entries(SERVER_SCHEMES))
    if ((schemes as readonly string[]).includes(scheme)) return engine as "postgres" | "mysql"
  return undefined
}

/** `url` with its password replaced by `***`, for messages (also when it does not parse as a URL). */
export function maskUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*):[^@/?#]*@/i, "$1:***@")
}

/** Keys of `database:` that say where the database is: a URL replaces every one of them. */
export const LOCATION_KEYS = ["url", "host", "port", "user", "password", "password_file", "database", "path"] as const
/** Keys of `database:` that tune an engine, kept under a URL of the same kind (file or server). */
export const TUNING_KEYS = {
  sqlite: ["allow_network_filesystem"],
  server: ["ssl", "pool_size", "connect_timeout_seconds", "notify_interval_ms"],
} as const

/**
 * The `database:` section that `DFFMPEG_DATABASE_URL` makes of the file's `block`: the engine from the
 * URL's scheme, where the database is from the URL (postgres://, postgresql://, mysql://, mariadb://;
 * `sqlite:PATH`, relative to the config file, or `sqlite:///abs/path`), and the file's tuning keys that
 * still apply to that engine (pool_size, ssl... for a server; allow_network_filesystem for SQLite).
 * `from` names the variable in messages; the password is never shown.
 */
export function databaseFromUrl(url: string, block: unknown, from = "DFFMPEG_DATABASE_URL"): Record<string, unknown> {
  const engine = engineOfUrl(url)
  if (!engine) {
    const scheme = url.includes(":") ? url.slice(0, url.indexOf(":") + 1) : url
    throw new ConfigError(
      `${from} has the unknown scheme ${JSON.stringify(maskUrl(scheme))}; use postgres://, postgresql://, mysql://, mariadb://, sqlite:PATH or sqlite:///abs/path`,
    )
  }
  const file = block && typeof block === "object" && !Array.isArray(block) ? (block as Record<string, unknown>) : {}
  const keep = engine === "sqlite" ? TUNING_KEYS.sqlite : TUNING_KEYS.server
  const kept = Object.fromEntries(Object.entries(file).filter(([k]) => (keep as readonly string[]).includes(k)))
  if (engine === "sqlite") {
    const rest = url.slice("sqlite:".length)
    let path: string
    if (rest.startsWith("///")) path = rest.slice(2)
    else if (rest.startsWith("//"))
      throw new ConfigError(
        `${from} ${JSON.stringify(url)} names a host; SQLite is a file here: sqlite:PATH (relative to the config file) or sqlite:///abs/path`,
      )
    else path = rest
    if (!path) throw new ConfigError(`${from} names no SQLite file: use sqlite:PATH or sqlite:///abs/path`)
    return { ...kept, engine, path: decodeURIComponent(path) }
  }
  if (!URL.canParse(url)) throw new ConfigError(`${from} is not a URL: ${maskUrl(url)}`)
  return { ...kept, engine, url }
}
