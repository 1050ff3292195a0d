import * as v from "valibot"
import { DEFAULT_ENV, ENV_PATTERN } from "../ffargs/env.ts"
import { VAR_NAME } from "../paths/vars.ts"
import { FallbackReason } from "../protocol/fallback.ts"
import { Transports } from "./transports.ts"

/**
 * Config schemas: the pieces every role shares, and the client's (the proxy's) config. The other roles'
 * schemas are in server-schema.ts, so the proxy's bundle carries neither them nor the valibot they use.
 * Key names follow the reference implementation where the concept is the same.
 */

/** A duration in seconds, within [min, max]. */
export const Seconds = (min: number, max: number) => v.pipe(v.number(), v.minValue(min), v.maxValue(max))
/** `log_level`, info by default. */
export const LogLevel = v.optional(v.picklist(["debug", "info", "warn", "error"]), "info")
/** `log_format`: text lines (default) or one JSON object per line (docs/operations.md, "Logs"). */
export const LogFormat = v.optional(v.picklist(["text", "json"], "must be text or json"), "text")
/** A TCP port number. */
export const Port = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535))
/** The name of a path variable (the keys of `paths`). */
export const VarName = v.pipe(
  v.string(),
  v.regex(VAR_NAME, "path variable names are a letter or '_' followed by letters, digits or '_'"),
)
/** A path that starts with `/`. */
export const AbsPath = v.pipe(v.string(), v.startsWith("/", "must be an absolute path"))

/** Environment variable names, or name prefixes ending in `*` (`LC_*`); the default is ffmpeg's own. */
export const EnvNames = v.optional(
  v.array(
    v.pipe(
      v.string(),
      v.regex(ENV_PATTERN, "must be a variable name (letters, digits, '_') or a name prefix followed by '*'"),
    ),
  ),
  [...DEFAULT_ENV],
)

/** Where one coordinator is, as a worker, client or admin reaches it. */
export const CoordinatorBlock = v.object({
  scheme: v.optional(v.picklist(["http", "https"]), "http"),
  host: v.optional(v.pipe(v.string(), v.minLength(1)), "127.0.0.1"),
  port: v.optional(Port, 8000),
  path_base: v.optional(v.string(), ""),
  /** PEM file of the CA (or self-signed certificate) that signs the coordinator's TLS certificate (scheme https). */
  ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
})
export type CoordinatorBlock = v.InferOutput<typeof CoordinatorBlock>

/** Most coordinators one config may list: a cluster is 2-3 (docs/operations.md); more is a mistake. */
export const MAX_COORDINATORS = 16

/** One `coordinator.urls` entry: an http(s) URL with a host, no credentials, query or fragment. */
const CoordinatorUrl = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const block = coordinatorBlockOf(dataset.value)
    if (typeof block === "string") {
      addIssue({ message: block })
      return NEVER
    }
    return block
  }),
)

/**
 * `coordinator:` in its three forms, told apart by shape (so each reports its own issues): one block
 * (the output is that block, as always), a list of blocks, or `urls:` with the keys they share beside
 * it (`ca_file`, applied to the https ones). A list's output is the blocks in order: the order of failover.
 */
export const CoordinatorLink = v.optional(
  v.lazy((input): v.GenericSchema<unknown, CoordinatorBlock | CoordinatorBlock[]> => {
    if (Array.isArray(input)) return CoordinatorList
    if (input && typeof input === "object" && "urls" in input) return CoordinatorUrls
    return CoordinatorBlock
  }),
  {},
)

const CoordinatorList = v.pipe(
  v.array(CoordinatorBlock),
  v.minLength(1, "lists no coordinator"),
  v.maxLength(MAX_COORDINATORS, `lists more than ${MAX_COORDINATORS} coordinators`),
)

const CoordinatorUrls = v.pipe(
  v.strictObject({
    urls: v.pipe(
      v.array(CoordinatorUrl),
      v.minLength(1, "lists no coordinator"),
      v.maxLength(MAX_COORDINATORS, `lists more than ${MAX_COORDINATORS} coordinators`),
    ),
    ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  }),
  v.check(
    (c) => c.ca_file === undefined || c.urls.some((u) => u.scheme === "https"),
    "ca_file is set but no URL is https (a CA only matters over TLS)",
  ),
  v.transform((c) => c.urls.map((u) => (c.ca_file && u.scheme === "https" ? { ...u, ca_file: c.ca_file } : u))),
)

/** A coordinator URL as a block, or what is wrong with it. */
export function coordinatorBlockOf(url: string): CoordinatorBlock | string {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return `is not a URL: ${url.slice(0, 200)}`
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    return `must be an http:// or https:// URL: ${url.slice(0, 200)}`
  if (!u.hostname) return `has no host: ${url.slice(0, 200)}`
  if (u.username || u.password) return "must not carry a user name or password (the key is hmac_key)"
  if (u.search || u.hash) return `must not have a query or fragment: ${url.slice(0, 200)}`
  return {
    scheme: u.protocol === "https:" ? "https" : "http",
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80,
    path_base: u.pathname.replace(/\/+$/, ""),
  }
}

/** Who a worker, client or admin is (its key comes from hmac_key or hmac_key_file), and where its coordinator is. */
export const Identity = {
  client_id: v.pipe(
    v.string("client_id is required"),
    v.regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, "must be 1-64 letters, digits, '_' or '-'"),
  ),
  hmac_key: v.optional(v.string()),
  hmac_key_file: v.optional(v.string()),
  coordinator: CoordinatorLink,
  /** How this role reaches its coordinator besides HTTP (MQTT, RabbitMQ), in order of preference. */
  transports: Transports,
}

const Arg = v.pipe(v.string(), v.minLength(1, "must not be empty"))
/** An option as written on a command line: `-hwaccel`, `-c:v` (with a stream specifier it matches only that one). */
const OptionArg = v.pipe(v.string(), v.regex(/^-[^-\s]/, "must be an option name starting with '-' (e.g. -hwaccel)"))

/**
 * One argument rewrite of a local fallback run (docs/fallback.md), applied in order:
 * `replace` swaps whole option values (`h264_nvenc` → `libx264`), never file names or option names;
 * `drop` removes every run of exactly these consecutive arguments that starts at an option (`-hwaccel cuda`);
 * `drop_option` removes each named option with its value, whatever the value (`-hwaccel`, `-hwaccel_output_format`).
 */
export const Rewrite = v.union(
  [
    v.strictObject({
      replace: v.pipe(
        v.record(Arg, v.string()),
        v.check((r) => Object.keys(r).length > 0, "is empty"),
      ),
    }),
    v.strictObject({
      drop: v.pipe(
        v.array(Arg),
        v.minLength(1, "is empty"),
        v.check((a) => /^-./.test(a[0]!), "must start with an option (e.g. [-hwaccel, cuda])"),
      ),
    }),
    v.strictObject({ drop_option: v.pipe(v.array(OptionArg), v.minLength(1, "is empty")) }),
  ],
  "must be exactly one of {replace: {FROM: TO}}, {drop: [ARGS]} or {drop_option: [OPTIONS]}",
)
export type Rewrite = v.InferOutput<typeof Rewrite>

/**
 * Running a command on this machine when the cluster cannot (docs/fallback.md). Off unless present.
 * Relative paths are relative to the config file.
 */
export const FallbackConfig = v.object({
  /** The situations that fall back; no other does. */
  when: v.pipe(
    v.array(FallbackReason),
    v.minLength(1, "names no situation (coordinator_unreachable, no_capable_worker, queue_timeout)"),
  ),
  /** The local binaries, absolute (a bare `ffmpeg` on PATH may well be this proxy). */
  ffmpeg: v.optional(AbsPath, "/usr/bin/ffmpeg"),
  ffprobe: v.optional(AbsPath, "/usr/bin/ffprobe"),
  /** `queue_timeout`: a job still waiting for a worker after this long is withdrawn and run here. */
  queue_timeout_seconds: v.optional(Seconds(0.1, 86400), 30),
  /** One JSON line per local run; its pending lines are reported to the coordinator once it answers again. */
  log_file: v.optional(v.pipe(v.string(), v.minLength(1)), "fallback.jsonl"),
  rewrite: v.optional(v.array(Rewrite), []),
})
export type FallbackConfig = v.InferOutput<typeof FallbackConfig>

export const ClientConfig = v.object({
  ...Identity,
  paths: v.optional(v.record(VarName, AbsPath), {}),
  passthrough_paths: v.optional(v.array(AbsPath), ["/dev/null"]),
  /**
   * After forwarding SIGINT/SIGTERM/SIGHUP, how long to wait for the remote process to end before
   * canceling the job and exiting 128+signal.
   */
  signal_timeout_seconds: v.optional(Seconds(0, 600), 10),
  /**
   * The variables of the caller's environment sent with each job (nothing else is): FFREPORT (its
   * `file=` translated like a path argument), AV_LOG_FORCE_*, TZ, LANG, LC_* by default.
   */
  forward_env: EnvNames,
  log_level: LogLevel,
  /** Local fallback; absent (the default): never, a command the cluster cannot run fails as it always did. */
  fallback: v.optional(FallbackConfig),
})
export type ClientConfig = v.InferOutput<typeof ClientConfig>
