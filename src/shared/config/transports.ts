import { readFileSync } from "node:fs"
import { isAbsolute, join } from "node:path"
import * as v from "valibot"
import { ConfigError } from "../errors.ts"
import {
  PREFIX,
  TRANSPORT_NAMES,
  type MqttSettings,
  type RabbitSettings,
  type TransportName,
} from "../protocol/transports.ts"

/**
 * `transports:` — the same block in every role's config (docs/configuration.md, "Transports"), with the
 * reference's key names: `enabled_transports` (in order of preference; empty means `[http_polling]`),
 * `defaults` (merged under each broker's settings) and `transport_settings.{mqtt,rabbitmq}`. Either broker
 * may also be given as one `url` (`mqtt://`, `mqtts://`, `amqp://`, `amqps://`), and its password as a
 * `password_file`, so that no secret needs to be in the config file.
 */

const Host = v.pipe(v.string(), v.minLength(1), v.maxLength(253))
const PortNo = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535))
const Prefix = v.pipe(
  v.string(),
  v.regex(PREFIX, "1-4 name parts of letters, digits, '_' or '-', joined by '/' or '.' (no wildcards)"),
)
/** A name RabbitMQ takes for an exchange: no spaces or wildcards, at most 200 characters. */
const Exchange = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/, "letters, digits, '_', '.' or '-'"))

/** The keys every broker has; `defaults` holds any of them. */
const Common = {
  url: v.optional(v.pipe(v.string(), v.minLength(1))),
  host: v.optional(Host),
  port: v.optional(PortNo),
  username: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(255))),
  password: v.optional(v.pipe(v.string(), v.maxLength(1024))),
  /** A file holding the password (relative to the config file), instead of `password`. */
  password_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  use_tls: v.optional(v.boolean()),
  /** PEM file of the CA that signs the broker's certificate (use_tls); the system's CAs otherwise. */
  ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
}
const MqttBlock = v.object({ ...Common, topic_prefix: v.optional(Prefix) })
const RabbitBlock = v.object({
  ...Common,
  vhost: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(255))),
  workers_exchange: v.optional(Exchange),
  jobs_exchange: v.optional(Exchange),
  queue_prefix: v.optional(Prefix),
})

export const Transports = v.optional(
  v.object({
    enabled_transports: v.optional(
      v.pipe(
        v.array(v.picklist(TRANSPORT_NAMES, `must be one of ${TRANSPORT_NAMES.join(", ")}`)),
        v.check((l) => new Set(l).size === l.length, "names a transport twice"),
      ),
      [],
    ),
    defaults: v.optional(v.object(Common), {}),
    transport_settings: v.optional(
      v.object({
        /** Nothing to set: HTTP goes where `coordinator:` (or the coordinator's `host`/`port`) says. */
        http_polling: v.optional(v.object({})),
        mqtt: v.optional(MqttBlock),
        rabbitmq: v.optional(RabbitBlock),
      }),
      {},
    ),
  }),
  {},
)
export type Transports = v.InferOutput<typeof Transports>

/** The transports of a role, resolved: the order of preference, and the settings of each broker it uses. */
export interface ResolvedTransports {
  enabled: TransportName[]
  mqtt?: MqttSettings
  rabbitmq?: RabbitSettings
}

/** Where a broker is, for logs and /health: its URL with no credentials. */
export function brokerWhere(kind: "mqtt" | "rabbitmq", s: MqttSettings | RabbitSettings): string {
  const host = s.host.includes(":") ? `[${s.host}]` : s.host
  if (kind === "mqtt") return `${s.use_tls ? "mqtts" : "mqtt"}://${host}:${s.port}`
  const vhost = (s as RabbitSettings).vhost
  return `${s.use_tls ? "amqps" : "amqp"}://${host}:${s.port}/${vhost === "/" ? "" : encodeURIComponent(vhost)}`
}

/**
 * Reads `transports:` into settings the links use: `defaults` under each broker's own keys, its `url`
 * taken apart, `password_file` and `ca_file` read (relative to `base`, the config file's directory).
 * Only the brokers in `enabled_transports` are resolved: a broker's settings left in the file while it is
 * not enabled are not read. Every problem is a ConfigError naming its key.
 */
export function resolveTransports(t: Transports, base: string): ResolvedTransports {
  const enabled: TransportName[] = t.enabled_transports.length ? [...t.enabled_transports] : ["http_polling"]
  const out: ResolvedTransports = { enabled }
  for (const kind of ["mqtt", "rabbitmq"] as const) {
    if (!enabled.includes(kind)) continue
    const own = t.transport_settings[kind] ?? {}
    const merged = { ...t.defaults, ...own } as v.InferOutput<typeof RabbitBlock> & v.InferOutput<typeof MqttBlock>
    const key = `transports.transport_settings.${kind}`
    const fromUrl = merged.url ? parseBrokerUrl(kind, merged.url, key) : {}
    if (merged.url)
      for (const k of ["host", "port", "username", "password", "use_tls", "vhost"] as const)
        if (own[k as keyof typeof own] !== undefined) throw new ConfigError(`${key}: give either url or ${k}, not both`)
    const s = { ...merged, ...fromUrl }
    if (s.password !== undefined && s.password_file !== undefined)
      throw new ConfigError(`${key}: give either password or password_file, not both`)
    const password = s.password_file ? readSecret(`${key}.password_file`, s.password_file, base) : s.password
    const use_tls = s.use_tls ?? false
    const ca = s.ca_file ? readCaFile(`${key}.ca_file`, s.ca_file, base) : undefined
    if (ca && !use_tls) throw new ConfigError(`${key}.ca_file is set but use_tls is false (a CA only matters over TLS)`)
    const host = s.host ?? "127.0.0.1"
    if (kind === "mqtt") {
      out.mqtt = {
        host,
        // The standard ports: 8883 is MQTT over TLS (the reference kept 1883 with TLS).
        port: s.port ?? (use_tls ? 8883 : 1883),
        ...(s.username !== undefined ? { username: s.username } : {}),
        ...(password !== undefined ? { password } : {}),
        use_tls,
        ...(ca ? { ca } : {}),
        topic_prefix: s.topic_prefix ?? "dffmpeg",
      }
    } else {
      out.rabbitmq = {
        host,
        port: s.port ?? (use_tls ? 5671 : 5672),
        username: s.username ?? "guest",
        password: password ?? "guest",
        vhost: s.vhost ?? "/",
        use_tls,
        ...(ca ? { ca } : {}),
        workers_exchange: s.workers_exchange ?? "dffmpeg.workers",
        jobs_exchange: s.jobs_exchange ?? "dffmpeg.jobs",
        queue_prefix: s.queue_prefix ?? "dffmpeg",
      }
    }
  }
  return out
}

/** The parts of a broker URL: `mqtt[s]://[user[:password]@]host[:port]`, `amqp[s]://[user[:password]@]host[:port][/vhost]`. */
function parseBrokerUrl(
  kind: "mqtt" | "rabbitmq",
  url: string,
  key: string,
): { host: string; port?: number; username?: string; password?: string; use_tls: boolean; vhost?: string } {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new ConfigError(`${key}.url is not a URL`)
  }
  const schemes = kind === "mqtt" ? ["mqtt:", "mqtts:"] : ["amqp:", "amqps:"]
  if (!schemes.includes(u.protocol))
    throw new ConfigError(`${key}.url must start with ${schemes.map((s) => `${s}//`).join(" or ")}`)
  if (!u.hostname) throw new ConfigError(`${key}.url has no host`)
  if (u.search || u.hash) throw new ConfigError(`${key}.url must not have a query or a fragment`)
  const path = u.pathname.replace(/^\//, "")
  if (kind === "mqtt" && path) throw new ConfigError(`${key}.url must not have a path (MQTT has no vhost)`)
  return {
    host: u.hostname.replace(/^\[|\]$/g, ""),
    ...(u.port ? { port: Number(u.port) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    use_tls: u.protocol.endsWith("s:"),
    ...(kind === "rabbitmq" && path ? { vhost: decodeURIComponent(path) } : {}),
  }
}

const at = (file: string, base: string) => (isAbsolute(file) ? file : join(base, file))

/** A file a key names (relative to the config file), or a ConfigError naming the key and the path. */
function readNamed(key: string, file: string, base: string): { p: string; text: string } {
  const p = at(file, base)
  try {
    return { p, text: readFileSync(p, "utf8") }
  } catch (err) {
    throw new ConfigError(
      `${key} ${p} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    )
  }
}

function readSecret(key: string, file: string, base: string): string {
  const { p, text } = readNamed(key, file, base)
  const secret = text.replace(/\r?\n$/, "")
  if (!secret) throw new ConfigError(`${key} ${p} is empty`)
  return secret
}

function readCaFile(key: string, file: string, base: string): string {
  const { p, text } = readNamed(key, file, base)
  if (!text.includes("-----BEGIN CERTIFICATE-----"))
    throw new ConfigError(`${key} ${p} is not a PEM certificate (no BEGIN CERTIFICATE line)`)
  return text
}
