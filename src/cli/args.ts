import { defineCommand, type ArgsDef, type CommandDef } from "citty"
import * as v from "valibot"
import { UsageError } from "../shared/errors.ts"
import { isUlid } from "../shared/ids.ts"
import { JobStatus } from "../shared/protocol/schemas.ts"
import { SINCE_HELP, parseSince } from "../shared/time.ts"

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

/**
 * A leaf command: citty's `defineCommand`, except that its `run` first refuses any flag `args` does not
 * define (citty silently drops unknown flags, and a typo must not be ignored). Every command that runs
 * something is defined with it but `client submit`, which parses its own options.
 */
export function defineCommandStrict<const T extends ArgsDef = ArgsDef>(
  def: CommandDef<T> & { args?: T },
): CommandDef<T> {
  const { run } = def
  return defineCommand({
    ...def,
    async run(ctx) {
      rejectUnknownFlags(def.args ?? {}, ctx.rawArgs)
      return run?.(ctx)
    },
  })
}

/** Throws a UsageError for the first flag of `rawArgs` (before `--`) that `args` does not define. */
export function rejectUnknownFlags(args: ArgsDef, rawArgs: string[]): void {
  const known = new Set<string>(["help", "h"])
  for (const [k, d] of Object.entries(args)) {
    known.add(k)
    known.add(k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()))
    const alias = (d as { alias?: string | string[] }).alias
    for (const a of Array.isArray(alias) ? alias : alias ? [alias] : []) known.add(a)
  }
  for (const a of rawArgs) {
    if (a === "--") break
    if (!a.startsWith("-") || a === "-" || /^-\d/.test(a)) continue
    const name = a.replace(/^--?/, "").split("=")[0]
    const bare = name.startsWith("no-") ? name.slice(3) : name
    if (!known.has(name) && !known.has(bare)) throw new UsageError(`unknown option ${a}`)
  }
}
