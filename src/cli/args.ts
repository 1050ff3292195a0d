import type { ArgsDef, CommandDef, ParsedArgs } from "citty"
import * as v from "valibot"
import { UsageError } from "../shared/errors.ts"
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
