import { statSync } from "node:fs"
import { posix } from "node:path"
import { fileOption, formatName, isExitOption, parseArgv, type ParsedArgv } from "../shared/ffargs/argv.ts"
import { parseUrl } from "../shared/ffargs/url.ts"
import { isFfmpeg } from "./progress.ts"
import { type Confinement, runConfined } from "./sandbox.ts"

/**
 * Where a job's progress comes from when ffmpeg prints none for its caller (`-v error`, `-loglevel quiet`,
 * `-nostats`): the worker's own `-progress pipe:4` (blocks on a private pipe the caller never sees) and,
 * when the loglevel hides the `Duration:` header, the worker's own probe of the first input.
 *
 * The option changes no byte the caller sees, which decides where it may be added (ffmpeg 5.1, checked):
 * - never beside the caller's own `-progress`: ffmpeg keeps only the last one (the caller's would be
 *   opened, then left unwritten), so the caller's stays alone and its blocks are read where they go;
 * - never at `verbose` or more (any `-v`/`-loglevel` value, since ffmpeg reads the first one early and
 *   applies each in order): `verbose` logs the pipe's "Statistics: … bytes written" at exit, `debug`
 *   every option read; nor with `-report`/`FFREPORT` (a debug log in a file the caller gets);
 * - never for info commands (`-version`, `-h`…) or a command without an output, or with neither an input
 *   nor a complex filtergraph.
 * Up to `info` its only effect is the pipe; the caller's `-nostats` and `-stats_period` keep working
 * (the blocks follow `-stats_period`, 0.5 s by default). The policy checks the caller's argv before this
 * is added (the policy refuses `pipe:` beyond 0–2 from a caller), and the pipe opens no path.
 */

/** The fd of the worker's progress pipe in the job (3 is bwrap's `--info-fd`). */
export const PROGRESS_FD = 4

/** ffmpeg's loglevel names (libavutil/log.h). */
const LEVELS: Record<string, number> = {
  quiet: -8,
  panic: 0,
  fatal: 8,
  error: 16,
  warning: 24,
  info: 32,
  verbose: 40,
  debug: 48,
  trace: 56,
}
const INFO = 32

/** Longest the worker's duration probe may run. */
export const PROBE_TIMEOUT_MS = 5000

/** Options that give a complex filtergraph, whose sources may stand in for inputs. */
const GRAPH_OPTIONS = ["filter_complex", "lavfi", "filter_complex_script"]

/** Demuxers whose "input" is not a file the probe could read alone (a graph, a list of other files). */
const UNPROBED_FORMATS = new Set(["lavfi", "concat"])

export interface ProgressSource {
  /** The argv to run: the caller's, after the worker's `-progress pipe:4` when it applies. */
  args: string[]
  /** Whether the worker's own pipe was added (the runner then opens fd {@link PROGRESS_FD}). */
  own: boolean
  /** The first input to probe for its length: ffmpeg will not print its `Duration:` header. */
  probe?: { path: string; format?: string }
}

/**
 * The level one `-v`/`-loglevel` value sets, as ffmpeg 5.1's opt_loglevel reads it: `[+-]repeat` and
 * `[+-]level` flag tokens, then (after an optional `+`) a level name or a number (strtol). Undefined
 * when the value only sets flags, NaN when ffmpeg would refuse it.
 */
export function loglevelOf(value: string): number | undefined {
  let rest = value
  for (let m = /^[+-]?(?:repeat|level)/.exec(rest); m; m = /^[+-]?(?:repeat|level)/.exec(rest))
    rest = rest.slice(m[0].length)
  if (!rest) return undefined
  if (rest.startsWith("+")) rest = rest.slice(1)
  if (Object.hasOwn(LEVELS, rest)) return LEVELS[rest]
  // strtol: leading blanks and a sign, digits, nothing after; no digits at all reads 0 only when nothing is left.
  if (!rest) return 0
  const n = /^[ \t\n\v\f\r]*([+-]?\d+)$/.exec(rest)
  return n ? Number(n[1]) : NaN
}

/** Every level the command's `-v`/`-loglevel` options set, in order. */
function levels(parsed: ParsedArgv): number[] {
  const out: number[] = []
  for (const t of parsed.tokens) {
    if (t.role !== "value" || (t.name !== "v" && t.name !== "loglevel")) continue
    const level = loglevelOf(t.text)
    if (level !== undefined) out.push(level)
  }
  return out
}

/**
 * Decides the worker's additions for one job: `args` are the mapped argv as checked by the policy, `cwd`
 * its directory (relative inputs), `env` the job's environment (`FFREPORT`).
 */
export function progressSource(
  binary: string,
  args: string[],
  cwd: string,
  env: Record<string, string | undefined> = {},
): ProgressSource {
  if (!isFfmpeg(binary)) return { args, own: false }
  const parsed = parseArgv("ffmpeg", args)
  const options = new Set(parsed.tokens.filter((t) => t.role === "option").map((t) => t.name ?? ""))
  const inputs = parsed.files.filter((f) => f.kind === "input")
  // A transcode reads inputs or a complex filtergraph's sources (`-filter_complex testsrc`) into an output.
  const reads = inputs.length > 0 || GRAPH_OPTIONS.some((o) => options.has(o))
  if (!reads || !parsed.files.some((f) => f.kind === "output") || [...options].some(isExitOption))
    return { args, own: false }
  const set = levels(parsed)
  const own =
    !options.has("progress") && !options.has("report") && env.FFREPORT === undefined && set.every((l) => l <= INFO)
  // The last level set is the one ffmpeg prints its input headers at (info by default).
  const last = set.at(-1) ?? INFO
  const probe = last < INFO && inputs.length ? probeTarget(inputs[0], cwd) : undefined
  return { args: own ? ["-progress", `pipe:${PROGRESS_FD}`, ...args] : args, own, probe }
}

/** The first input as a file the probe may read, or undefined (stdin, a pipe, a URL, a graph, a list). */
function probeTarget(input: ParsedArgv["files"][number], cwd: string): ProgressSource["probe"] {
  const format = formatName(fileOption(input, "f"))
  if (format && UNPROBED_FORMATS.has(format)) return undefined
  const url = parseUrl(input.url)
  if (url.protocol !== "file" || url.rest === "-" || !url.rest) return undefined
  return { path: posix.resolve(cwd, url.rest), format }
}

/**
 * The length in ms of `target` by the worker's ffprobe, started the way the job is (its sandbox, its
 * binds, its user), at most {@link PROBE_TIMEOUT_MS}; null when it is not a regular file or ffprobe
 * cannot tell. A FIFO put in its place after the check blocks the probe only until the timeout.
 */
export async function probeDuration(
  box: Confinement,
  ffprobe: string,
  target: NonNullable<ProgressSource["probe"]>,
  job: Parameters<Confinement["argv"]>[0],
  signal?: AbortSignal,
): Promise<number | null> {
  try {
    if (!statSync(target.path).isFile()) return null
  } catch {
    return null
  }
  const format = target.format ? ["-f", target.format] : []
  const entries = "-show_entries format=duration -of csv=p=0".split(" ")
  const command = [ffprobe, "-v", "error", "-protocol_whitelist", "file", ...format, ...entries, `file:${target.path}`]
  const r = await runConfined(box, command, PROBE_TIMEOUT_MS, { job, signal })
  const text = r.stdout.trim()
  if (r.code !== 0 || !/^\d+(?:\.\d+)?$/.test(text)) return null
  const ms = Number(text) * 1000
  return Number.isFinite(ms) ? ms : null
}
