import * as v from "valibot"
import { availableParallelism } from "node:os"

/** Config schemas. Key names follow the reference implementation where the concept is the same. */

const LogLevel = v.optional(v.picklist(["debug", "info", "warn", "error"]), "info")
const Port = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535))
const VarName = v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, "path variable names are a letter or '_' followed by letters, digits or '_'"))
const AbsPath = v.pipe(v.string(), v.startsWith("/", "must be an absolute path"))
const BinaryName = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "binary names are 1-64 letters, digits, '_', '-' or '.'"))

export const CoordinatorLink = v.optional(
  v.object({
    scheme: v.optional(v.picklist(["http", "https"]), "http"),
    host: v.optional(v.pipe(v.string(), v.minLength(1)), "127.0.0.1"),
    port: v.optional(Port, 8000),
    path_base: v.optional(v.string(), ""),
  }),
  {},
)

export const CoordinatorConfig = v.object({
  host: v.optional(v.string(), "127.0.0.1"),
  port: v.optional(Port, 8000),
  path_base: v.optional(v.string(), ""),
  database: v.optional(
    v.object({
      engine: v.optional(v.picklist(["sqlite"]), "sqlite"),
      path: v.optional(v.pipe(v.string(), v.minLength(1)), "./dffmpeg.db"),
    }),
    {},
  ),
  allowed_binaries: v.optional(v.array(BinaryName), ["ffmpeg", "ffprobe"]),
  /** Longest a worker's poll is held open before it answers with no work. */
  poll_wait_seconds: v.optional(v.pipe(v.number(), v.minValue(0.05), v.maxValue(120)), 25),
  log_level: LogLevel,
})
export type CoordinatorConfig = v.InferOutput<typeof CoordinatorConfig>

const Identity = {
  client_id: v.pipe(v.string("client_id is required"), v.regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, "must be 1-64 letters, digits, '_' or '-'")),
  hmac_key: v.optional(v.string()),
  hmac_key_file: v.optional(v.string()),
  coordinator: CoordinatorLink,
}

export const WorkerConfig = v.object({
  ...Identity,
  binaries: v.optional(v.record(BinaryName, v.pipe(v.string(), v.minLength(1))), { ffmpeg: "ffmpeg", ffprobe: "ffprobe" }),
  paths: v.optional(v.record(VarName, AbsPath), {}),
  passthrough_paths: v.optional(v.array(AbsPath), ["/dev/null"]),
  max_jobs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1024)), availableParallelism()),
  log_level: LogLevel,
})
export type WorkerConfig = v.InferOutput<typeof WorkerConfig>

export const ClientConfig = v.object({
  ...Identity,
  paths: v.optional(v.record(VarName, AbsPath), {}),
  passthrough_paths: v.optional(v.array(AbsPath), ["/dev/null"]),
  log_level: LogLevel,
})
export type ClientConfig = v.InferOutput<typeof ClientConfig>

export const Schemas = { coordinator: CoordinatorConfig, worker: WorkerConfig, client: ClientConfig } as const
export type ConfigRole = keyof typeof Schemas
export type ConfigOf<R extends ConfigRole> = v.InferOutput<(typeof Schemas)[R]>
