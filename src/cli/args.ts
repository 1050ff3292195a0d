import type { ArgsDef, CommandDef, ParsedArgs } from "citty"
import * as v from "valibot"
import { Env } from "../shared/config/env.ts"
import { ConfigError, UsageError } from "../shared/errors.ts"
import { isUlid } from "../shared/ids.ts"
import { JobStatus } from "../shared/protocol/schemas.ts"
import { SINCE_HELP, parseSince } from "../shared/time.ts"
import { verb } from "./command.ts"

/** Option values shared by `dffmpeg admin` and `dffmpeg client`, checked before anything is opened (exit 2). */

export function jobId(id: string): string {
  if (!isUlid(id)) throw new UsageError(`${id} is not a job id (ULID, 26 characters)`)
  return id
}

/** `--limit`: 1-1000 (the API's page limit), `fallback` when absent. */
export function limitArg(raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback
  if (!/^\d{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > 1000)
    throw new UsageError("--limit must be a number from 1 to 1000")
  return Number(raw)
}

export function statusArg(raw: string | undefined): JobStatus | undefined {
  if (raw === undefined) return undefined
  if (!v.is(JobStatus, raw)) throw new UsageError(`--status must be one of ${JobStatus.options.join(", ")}`)
  return raw
}

/** `--since` as ms since the epoch (relative ages count back from this machine's clock). */
export function sinceArg(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined
  const ms = parseSince(raw, Date.now())
  if (ms === undefined) throw new UsageError(`--since must be ${SINCE_HELP}`)
  return ms
}

/** `--interval` in seconds (0.1 to 3600) as ms; 1 s by default. */
export function intervalArg(raw: string | undefined): number {
  if (raw === undefined) return 1000
  if (!/^\d+(\.\d+)?$/.test(raw) || Number(raw) < 0.1 || Number(raw) > 3600)
    throw new UsageError("--interval must be a number of seconds from 0.1 to 3600")
  return Number(raw) * 1000
}

export const statusHelp = `only jobs in this state (${JobStatus.options.join(", ")})`
export const sinceHelp = `only jobs created since then: ${SINCE_HELP}`

export const limitHelp = "at most this many, newest first (1-1000, default 50)"

const LEVELS = ["debug", "info", "warn", "error"]

/**
 * The `log_level` override of a long-running role: `--log-level` (a bad one is a usage error, exit 2, not
 * blamed on the config file), else DFFMPEG_LOG_LEVEL (exit 3, naming the variable).
 */
export function logLevelOverride(flag: string | undefined): { log_level?: string } {
  if (flag !== undefined) {
    if (!LEVELS.includes(flag)) throw new UsageError(`--log-level must be one of ${LEVELS.join(", ")}`)
    return { log_level: flag }
  }
  const env = Env.logLevel()
  if (!env) return {}
  if (!LEVELS.includes(env)) throw new ConfigError(`DFFMPEG_LOG_LEVEL must be one of ${LEVELS.join(", ")}`)
  return { log_level: env }
}

const FORMATS = ["text", "json"]

/** The `log_format` override, as `logLevelOverride`: `--log-format` (exit 2), else DFFMPEG_LOG_FORMAT (exit 3). */
export function logFormatOverride(flag: string | undefined): { log_format?: string } {
  if (flag !== undefined) {
    if (!FORMATS.includes(flag)) throw new UsageError(`--log-format must be text or json, not ${JSON.stringify(flag)}`)
    return { log_format: flag }
  }
  const env = Env.logFormat()
  if (!env) return {}
  if (!FORMATS.includes(env)) throw new ConfigError("DFFMPEG_LOG_FORMAT must be text or json")
  return { log_format: env }
}

/** `--port`: 0 (any free port) to 65535, a usage error otherwise (exit 2). */
export function portArg(raw: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535)
    throw new UsageError(`--port must be a number from 0 to 65535 (0 picks a free port), not ${JSON.stringify(raw)}`)
  return Number(raw)
}

/** `--config` and `--log-level` of a long-running role, with where its config is looked for by default. */
export function serviceArgs(role: "coordinator" | "worker") {
  return {
    config: {
      type: "string",
      description: `${role} YAML config (default: search DFFMPEG_${role.toUpperCase()}_CONFIG, ./dffmpeg-${role}.yaml, ~/.config/dffmpeg/${role}.yaml, /etc/dffmpeg/${role}.yaml)`,
    },
    "log-level": { type: "string", description: "debug | info | warn | error" },
    "log-format": { type: "string", description: "text | json (one JSON object per line; config key log_format)" },
  } as const
}

/** A leaf command whose positional `id` is a job id, checked (exit 2) before `run` gets it. */
export function jobVerb<const T extends ArgsDef & { id: { type: "positional" } }>(
  name: string,
  description: string,
  args: T,
  run: (id: string, args: ParsedArgs<T>) => unknown,
): CommandDef<T> {
  return verb(name, description, args, (parsed) => run(jobId(String(parsed.id)), parsed))
}
