import * as v from "valibot"
import { existsSync, readFileSync } from "node:fs"
import { dirname, isAbsolute, join, resolve } from "node:path"
import { accessProblem } from "../owner.ts"
import { ConfigError } from "../errors.ts"
import { issueLines } from "../protocol/schemas.ts"
import { Env } from "./env.ts"
import { MAX_COORDINATORS, coordinatorBlockOf, type CoordinatorBlock } from "./schema.ts"
import { databaseFromUrl } from "./database-url.ts"
import { closest } from "../suggest.ts"

/** The roles that read a config file, by the name the file carries (`dffmpeg-<role>.yaml`). */
export type ConfigRole = "coordinator" | "worker" | "client" | "admin"

export interface Loaded<C> {
  config: C
  /** The file the config came from, if any. */
  file?: string
  /** Directory relative paths in the config are resolved against. */
  base: string
  warnings: string[]
}

/** Where a role's config is looked for, in order (the first that exists wins). */
export function searchPaths(role: ConfigRole): string[] {
  const home = Env.home()
  return [
    `./dffmpeg-${role}.yaml`,
    ...(home ? [join(home, ".config", "dffmpeg", `${role}.yaml`)] : []),
    `/etc/dffmpeg/${role}.yaml`,
    join(dirname(process.execPath), `dffmpeg-${role}.yaml`),
  ]
}

export function findConfig(role: ConfigRole, explicit?: string): string | undefined {
  const named = explicit ?? Env.configPath(role)
  if (named) {
    if (!existsSync(named)) throw new ConfigError(`config file ${named} does not exist`)
    return resolve(named)
  }
  const hit = searchPaths(role).find((p) => existsSync(p))
  return hit ? resolve(hit) : undefined
}

/** Explains a YAML syntax error precisely (the `yaml` package, loaded only when needed). */
export type YamlExplainer = (text: string) => Promise<string | undefined> | string | undefined

/** Parses YAML with Bun's built-in parser (fast, matters for the proxy); on error, asks `explain` for a precise message. */
async function parseYaml(text: string, file: string, explain?: YamlExplainer): Promise<unknown> {
  try {
    return Bun.YAML.parse(text)
  } catch (err) {
    const why = (explain && (await explain(text))) || (err as Error).message
    throw new ConfigError(`${file} is not valid YAML: ${why}`)
  }
}

/** What unknownKeys reads of a schema. */
interface Node {
  type: string
  wrapped?: v.GenericSchema
  entries?: Record<string, v.GenericSchema>
  key?: string
  options?: Node[]
  /** `lazy`: the schema that applies to this input. */
  getter?: (input: unknown) => v.GenericSchema
  /** `array`: the schema of each item. */
  item?: v.GenericSchema
}

/** A key present in the input that the schema does not know: its dotted path, and the known key it is closest to. */
interface UnknownKey {
  key: string
  near?: string
}

/** Keys present in `input` that the schema does not know, as dotted paths. */
function unknownKeys(schema: v.GenericSchema, input: unknown, prefix = ""): UnknownKey[] {
  const node = schema as unknown as Node
  let s = node.type === "optional" && node.wrapped ? (node.wrapped as unknown as Node) : node
  // A shape picked by the input (`coordinator:` is a block, a list of blocks or `urls:`).
  if (s.type === "lazy" && s.getter) s = s.getter(input) as unknown as Node
  if (s.type === "array" && s.item && Array.isArray(input))
    return input.flatMap((item, i) => unknownKeys(s.item!, item, `${prefix}${i}.`))
  // A union on a key (`database.engine`): the keys of the shape that key selects.
  if (s.type === "variant" && s.key && s.options && input && typeof input === "object") {
    const key = s.key
    const picked = s.options.find(
      (o) => o.entries?.[key] && v.is(o.entries[key], (input as Record<string, unknown>)[key]),
    )
    if (!picked) return []
    s = picked
  }
  if (s.type !== "object" || !s.entries || !input || typeof input !== "object" || Array.isArray(input)) return []
  const entries = s.entries
  const out: UnknownKey[] = []
  for (const [k, val] of Object.entries(input)) {
    const sub = entries[k]
    if (!sub) out.push({ key: prefix + k, near: closest(k, Object.keys(entries)) })
    else out.push(...unknownKeys(sub, val, `${prefix}${k}.`))
  }
  return out
}

/**
 * Finds, reads and validates `role`'s config against `schema` (the caller's: the proxy's bundle then holds
 * only the client schema, see server-schema.ts). Throws ConfigError naming the file and each invalid key.
 */
export async function loadConfig<S extends v.GenericSchema>(
  role: ConfigRole,
  schema: S,
  explicit?: string,
  overrides: Record<string, unknown> = {},
  explain?: YamlExplainer,
): Promise<Loaded<v.InferOutput<S>>> {
  const file = findConfig(role, explicit)
  let raw: unknown = {}
  if (file) {
    let text: string
    try {
      text = readFileSync(file, "utf8")
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === "EISDIR") throw new ConfigError(`config file ${file} is a directory, not a YAML file`)
      if (code === "EACCES" || code === "EPERM")
        throw new ConfigError(`cannot read config file ${file}: permission denied (${code}); check its owner and mode`)
      throw new ConfigError(`cannot read config file ${file}: ${code ?? (err as Error).message}`)
    }
    raw = (await parseYaml(text, file, explain)) ?? {}
    if (typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(`${file} must contain a YAML mapping`)
  }
  const input = {
    ...(raw as Record<string, unknown>),
    ...envOverrides(role, raw as Record<string, unknown>),
    ...overrides,
  }
  const warnings = unknownKeys(schema, input).map(
    (k) =>
      `unknown config key ${k.key}${file ? ` in ${file}` : ""} (ignored${k.near ? `; did you mean ${k.near}?` : ""})`,
  )
  const parsed = v.safeParse(schema, input)
  const where = file ?? `the ${role} config (no file found; looked in ${searchPaths(role).join(", ")})`
  if (!parsed.success) throw new ConfigError(`invalid configuration in ${where}`, issueLines(parsed.issues))
  const base = file ? dirname(file) : process.cwd()
  return { config: parsed.output, file, base, warnings }
}

/**
 * Environment overrides: the coordinator's database (DFFMPEG_DATABASE_URL, which `dffmpeg admin --local`
 * reads too, as it loads the coordinator's config), and the client's, as in the reference (handy for
 * media servers' service files).
 */
function envOverrides(role: ConfigRole, raw: Record<string, unknown>): Record<string, unknown> {
  if (role === "coordinator") {
    const url = Env.databaseUrl()
    return url ? { database: databaseFromUrl(url, raw.database) } : {}
  }
  if (role !== "client") return {}
  const out: Record<string, unknown> = {}
  const id = Env.clientId()
  if (id) out.client_id = id
  const key = Env.hmacKey()
  if (key && !raw.hmac_key_file) out.hmac_key = key
  const url = Env.coordinatorUrl()
  if (url) out.coordinator = coordinatorFromEnv(url, raw.coordinator)
  return out
}

/**
 * DFFMPEG_COORDINATOR_URL as a `coordinator:` value: one URL is one block, a comma-separated list the
 * `urls:` form (each entry checked here, so the line names the variable). It replaces where the
 * coordinators are, not which CA signs their certificates: the file's `ca_file` (of its block, or of
 * its `urls:` form) stays.
 */
function coordinatorFromEnv(url: string, file: unknown): unknown {
  const ca =
    file && typeof file === "object" && !Array.isArray(file) ? (file as { ca_file?: unknown }).ca_file : undefined
  const entries = url.split(",").map((u) => u.trim())
  const blocks = entries.map((u, i) => {
    const b = coordinatorBlockOf(u)
    if (typeof b === "string")
      throw new ConfigError(`DFFMPEG_COORDINATOR_URL${entries.length > 1 ? ` entry ${i} (from 0)` : ""} ${b}`)
    return b
  })
  if (blocks.length > MAX_COORDINATORS)
    throw new ConfigError(`DFFMPEG_COORDINATOR_URL lists more than ${MAX_COORDINATORS} coordinators`)
  if (blocks.length === 1) return { ...(ca !== undefined ? { ca_file: ca } : {}), ...blocks[0] }
  return { urls: entries, ...(ca !== undefined ? { ca_file: ca } : {}) }
}

/** Resolves `hmac_key_file` (relative to the config file) or `hmac_key`. */
export function resolveKey(cfg: { hmac_key?: string; hmac_key_file?: string }, base: string): string {
  if (cfg.hmac_key_file) {
    const p = isAbsolute(cfg.hmac_key_file) ? cfg.hmac_key_file : join(base, cfg.hmac_key_file)
    try {
      return readFileSync(p, "utf8").trim()
    } catch (err) {
      throw new ConfigError(
        accessProblem(p, "hmac_key_file", "read") ??
          `hmac_key_file ${p} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      )
    }
  }
  if (cfg.hmac_key) return cfg.hmac_key.trim()
  throw new ConfigError("hmac_key or hmac_key_file is required")
}

/** Base URL of the coordinator, without a trailing slash. */
export function coordinatorUrl(link: { scheme: string; host: string; port: number; path_base: string }): string {
  const host = link.host.includes(":") && !link.host.startsWith("[") ? `[${link.host}]` : link.host
  const base = link.path_base ? "/" + link.path_base.replace(/^\/+|\/+$/g, "") : ""
  return `${link.scheme}://${host}:${link.port}${base}`
}

/** One coordinator a role reaches: its base URL and the PEM of the CA of its certificate (if set). */
export interface CoordinatorTarget {
  url: string
  ca?: string
}

/**
 * Every coordinator of a `coordinator:` value, in the order failover tries them (one for the single
 * block form). Each CA file is read once, however many coordinators it serves.
 */
export function coordinatorTargets(link: CoordinatorBlock | CoordinatorBlock[], base: string): CoordinatorTarget[] {
  const blocks = Array.isArray(link) ? link : [link]
  const cas = new Map<string, string | undefined>()
  return blocks.map((b, i) => {
    const at = blocks.length > 1 ? `coordinator ${i} (from 0): ` : ""
    const key = `${b.scheme} ${b.ca_file ?? ""}`
    if (!cas.has(key))
      try {
        cas.set(key, resolveCa(b, base))
      } catch (err) {
        if (err instanceof ConfigError && at) throw new ConfigError(at + err.message)
        throw err
      }
    const ca = cas.get(key)
    return ca ? { url: coordinatorUrl(b), ca } : { url: coordinatorUrl(b) }
  })
}

/**
 * The PEM text of `coordinator.ca_file` (relative to the config file), for an https coordinator whose
 * certificate is not signed by a public CA; undefined when not set (the system's CAs are used).
 */
export function resolveCa(link: { scheme: string; ca_file?: string }, base: string): string | undefined {
  if (!link.ca_file) return undefined
  if (link.scheme !== "https")
    throw new ConfigError(
      `coordinator.ca_file is set but coordinator.scheme is ${link.scheme}; set scheme: https (a CA only matters over TLS)`,
    )
  const p = isAbsolute(link.ca_file) ? link.ca_file : join(base, link.ca_file)
  let pem: string
  try {
    pem = readFileSync(p, "utf8")
  } catch (err) {
    throw new ConfigError(
      `coordinator.ca_file ${p} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    )
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----"))
    throw new ConfigError(`coordinator.ca_file ${p} is not a PEM certificate (no BEGIN CERTIFICATE line)`)
  return pem
}
