import * as v from "valibot"
import { DEFAULT_ENV, ENV_PATTERN } from "../ffargs/env.ts"
import { VAR_NAME } from "../paths/vars.ts"

/**
 * Config schemas: the pieces every role shares, and the client's (the proxy's) config. The other roles'
 * schemas are in server-schema.ts, so the proxy's bundle carries neither them nor the valibot they use.
 * Key names follow the reference implementation where the concept is the same.
 */

/** A duration in seconds, within [min, max]. */
export const Seconds = (min: number, max: number) => v.pipe(v.number(), v.minValue(min), v.maxValue(max))
/** `log_level`, info by default. */
export const LogLevel = v.optional(v.picklist(["debug", "info", "warn", "error"]), "info")
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

/** Where the coordinator is, as a worker, client or admin reaches it. */
export const CoordinatorLink = v.optional(
  v.object({
    scheme: v.optional(v.picklist(["http", "https"]), "http"),
    host: v.optional(v.pipe(v.string(), v.minLength(1)), "127.0.0.1"),
    port: v.optional(Port, 8000),
    path_base: v.optional(v.string(), ""),
    /** PEM file of the CA (or self-signed certificate) that signs the coordinator's TLS certificate (scheme https). */
    ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  }),
  {},
)

/** Who a worker, client or admin is (its key comes from hmac_key or hmac_key_file), and where its coordinator is. */
export const Identity = {
  client_id: v.pipe(
    v.string("client_id is required"),
    v.regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, "must be 1-64 letters, digits, '_' or '-'"),
  ),
  hmac_key: v.optional(v.string()),
  hmac_key_file: v.optional(v.string()),
  coordinator: CoordinatorLink,
}

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
})
export type ClientConfig = v.InferOutput<typeof ClientConfig>
