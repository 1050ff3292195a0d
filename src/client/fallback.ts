import {
  appendFileSync,
  closeSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs"
import { isAbsolute, join } from "node:path"
import type { FallbackConfig } from "../shared/config/schema.ts"
import { DffmpegError } from "../shared/errors.ts"
import { PROXY_FAILURE } from "../shared/exit-codes.ts"
import { toolOf } from "../shared/ffargs/argv.ts"
import { retryable, type ApiClient } from "../shared/http/client.ts"
import {
  FALLBACK_REPORT_MAX,
  noCapableWorker,
  type FallbackReason,
  type FallbackReceipt,
  type FallbackRecord,
} from "../shared/protocol/fallback.ts"
import type { Outcome } from "../shared/protocol/schemas.ts"
import { signalNumber } from "./outcome.ts"
import { rewriteArgs } from "./rewrite.ts"

/**
 * Local fallback (`fallback` in the client config, docs/fallback.md): when, what runs, and the ledger that
 * makes it never silent. Off unless configured; nothing here runs on a call without `fallback`.
 */

/** Thrown inside a follow when the job is to be run here instead (the coordinator gave it up or withdrew it). */
export class Diverted extends Error {
  constructor(
    readonly reason: FallbackReason,
    readonly detail: string,
  ) {
    super(`fallback: ${reason}`)
  }
}

/** Whether `reason` is one this config falls back for. */
export const fallsBack = (cfg: FallbackConfig | undefined, reason: FallbackReason): cfg is FallbackConfig =>
  cfg !== undefined && cfg.when.includes(reason)

/** The reason a failed submission falls back for: only a coordinator that cannot be reached (the retryable failures). */
export function submitFallback(cfg: FallbackConfig | undefined, err: unknown): FallbackReason | undefined {
  return fallsBack(cfg, "coordinator_unreachable") && retryable(err) ? "coordinator_unreachable" : undefined
}

/** The reason a job's outcome falls back for: it failed, never ran, because no online worker could run it. */
export function outcomeFallback(cfg: FallbackConfig | undefined, o: Outcome): FallbackReason | undefined {
  const never = o.status === "failed" && o.code === null && o.signal === null
  return fallsBack(cfg, "no_capable_worker") && never && noCapableWorker(o.error) ? "no_capable_worker" : undefined
}

export interface LocalCommand {
  tool: "ffmpeg" | "ffprobe"
  /** The local binary (`fallback.ffmpeg` or `fallback.ffprobe`). */
  path: string
  /** The caller's arguments after `fallback.rewrite` (no path translation: they are this machine's). */
  args: string[]
}

export function localCommand(cfg: FallbackConfig, binary: string, args: readonly string[]): LocalCommand {
  const tool = toolOf(binary)
  return { tool, path: tool === "ffprobe" ? cfg.ffprobe : cfg.ffmpeg, args: rewriteArgs(tool, args, cfg.rewrite) }
}

const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP"] as const

/**
 * Runs the command here: stdout and stderr are this process's own, stdin too unless `stdin` replays what a
 * remote attempt read of it, and every SIGINT/SIGTERM/SIGHUP is passed on. Its exit code, 128+N for a death
 * by signal N; a binary that cannot be started throws (a `dffmpeg:` line, exit 1).
 */
export async function runLocal(
  cmd: LocalCommand,
  o: { stdin?: AsyncIterable<Uint8Array>; signals: Pick<NodeJS.EventEmitter, "on" | "off"> },
): Promise<number> {
  if (sameFile(cmd.path, process.execPath))
    throw new FallbackError(`fallback.${cmd.tool} ${cmd.path} is dffmpeg itself; name the real ${cmd.tool}`)
  let child: ReturnType<typeof Bun.spawn<"pipe" | "inherit", "inherit", "inherit">>
  try {
    child = Bun.spawn([cmd.path, ...cmd.args], {
      stdin: o.stdin ? "pipe" : "inherit",
      stdout: "inherit",
      stderr: "inherit",
    })
  } catch (err) {
    throw new FallbackError(`cannot run fallback.${cmd.tool} ${cmd.path}: ${(err as Error).message}`)
  }
  const forward = (sig: (typeof FORWARDED)[number]) => void child.kill(sig)
  for (const sig of FORWARDED) o.signals.on(sig, forward)
  try {
    if (o.stdin) void pump(o.stdin, child.stdin as import("bun").FileSink)
    const code = await child.exited
    const sig = child.signalCode
    return sig ? 128 + (typeof sig === "number" ? sig : (signalNumber(sig) ?? 0)) : code
  } finally {
    for (const sig of FORWARDED) o.signals.off(sig, forward)
  }
}

/** A local fallback that could not be made (the binary is missing, or is the proxy itself): exit 1. */
export class FallbackError extends DffmpegError {
  constructor(message: string) {
    super(message, "E_FALLBACK", 500, PROXY_FAILURE)
  }
}

async function pump(from: AsyncIterable<Uint8Array>, to: import("bun").FileSink) {
  try {
    for await (const chunk of from) {
      to.write(chunk)
      await to.flush()
    }
  } catch {
    // The process stopped reading (it exited): the rest of stdin is not for it.
  }
  try {
    await to.end()
  } catch {}
}

function sameFile(a: string, b: string): boolean {
  try {
    const x = statSync(a)
    const y = statSync(b)
    return x.dev === y.dev && x.ino === y.ino
  } catch {
    return false
  }
}

// ---- the ledger: one JSON line per local run in `log_file`, how far it was reported in `<log_file>.state` ----

/** One line of the fallback log. */
export interface LogEntry {
  id: string
  /** ISO time the local run started, and the same in Unix ms. */
  time: string
  at: number
  reason: FallbackReason
  /** What the cluster said (the coordinator's error, or why it could not be reached). */
  detail: string
  tool: "ffmpeg" | "ffprobe"
  binary: string
  /** The arguments as the caller gave them, and as they ran after `rewrite`. */
  args: string[]
  argv: string[]
  exit_code: number | null
  error?: string
}

export const logPath = (cfg: FallbackConfig, base: string) =>
  isAbsolute(cfg.log_file) ? cfg.log_file : join(base, cfg.log_file)

/** Appends one line (a single write: lines of concurrent proxies do not interleave). */
export function appendLog(file: string, e: LogEntry): void {
  appendFileSync(file, JSON.stringify(e) + "\n", { mode: 0o600 })
}

interface LedgerState {
  /** Bytes of the log already reported (a log shorter than this was rotated: it starts over). */
  reported_bytes: number
  /** Records reported so far, and when last. */
  reported: number
  reported_at: string | null
}

const statePath = (log: string) => `${log}.state`
const lockPath = (log: string) => `${log}.lock`
/** A lock older than this was left by a process that died while reporting. */
const LOCK_STALE_MS = 30_000
/** Most of the log read by one report; what is left goes with the next call. */
const READ_MAX = 256 * 1024

function readState(log: string): LedgerState {
  try {
    const s = JSON.parse(readFileSync(statePath(log), "utf8")) as Partial<LedgerState>
    return {
      reported_bytes: Number.isSafeInteger(s.reported_bytes) && s.reported_bytes! >= 0 ? s.reported_bytes! : 0,
      reported: Number.isSafeInteger(s.reported) ? s.reported! : 0,
      reported_at: typeof s.reported_at === "string" ? s.reported_at : null,
    }
  } catch {
    return { reported_bytes: 0, reported: 0, reported_at: null }
  }
}

function writeState(log: string, s: LedgerState): void {
  const tmp = `${statePath(log)}.${process.pid}.tmp`
  writeFileSync(tmp, JSON.stringify(s) + "\n", { mode: 0o600 })
  renameSync(tmp, statePath(log))
}

/** Size of the log beyond what was reported (0: nothing pending, or no log). One stat and one small read. */
export function pendingBytes(log: string): number {
  let size: number
  try {
    size = statSync(log).size
  } catch {
    return 0
  }
  const done = readState(log).reported_bytes
  return size < done ? size : size - done
}

/** Takes the reporting lock; false when another process holds it. */
function lock(log: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      closeSync(openSync(lockPath(log), "wx", 0o600))
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") return false
      try {
        if (Date.now() - statSync(lockPath(log)).mtimeMs < LOCK_STALE_MS) return false
        unlinkSync(lockPath(log))
      } catch {
        return false
      }
    }
  }
  return false
}

/** A log line as the coordinator gets it; undefined for a line that is not one of ours. */
function recordOf(line: string): FallbackRecord | undefined {
  try {
    const e = JSON.parse(line) as Partial<LogEntry>
    if (typeof e.id !== "string" || typeof e.at !== "number" || typeof e.reason !== "string") return undefined
    return {
      id: e.id,
      at: e.at,
      reason: e.reason,
      tool: e.tool === "ffprobe" ? "ffprobe" : "ffmpeg",
      code: typeof e.exit_code === "number" ? e.exit_code : null,
    }
  } catch {
    return undefined
  }
}

/**
 * Sends the log's unreported lines to the coordinator (`POST /api/v1/clients/fallbacks`, at most
 * FALLBACK_REPORT_MAX a request, each request `timeoutMs`), advancing the state after each accepted one.
 * One process at a time (a lock file); a report the coordinator refuses or does not answer stays pending.
 * Returns the records accepted.
 */
export async function reportPending(api: ApiClient, log: string, timeoutMs: number): Promise<number> {
  if (pendingBytes(log) === 0 || !lock(log)) return 0
  let sent = 0
  try {
    const state = readState(log)
    const size = statSync(log).size
    if (size < state.reported_bytes) state.reported_bytes = 0
    const fd = openSync(log, "r")
    let text: string
    try {
      const buf = Buffer.alloc(Math.min(size - state.reported_bytes, READ_MAX))
      const n = readSync(fd, buf, 0, buf.length, state.reported_bytes)
      text = buf.subarray(0, n).toString("utf8")
    } finally {
      closeSync(fd)
    }
    // Whole lines only: one being appended right now goes next time.
    const end = text.lastIndexOf("\n") + 1
    const lines = text.slice(0, end).split("\n")
    lines.pop()
    let offset = state.reported_bytes
    for (let i = 0; i < lines.length; i += FALLBACK_REPORT_MAX) {
      const batch = lines.slice(i, i + FALLBACK_REPORT_MAX)
      const records = batch.map(recordOf).filter((r): r is FallbackRecord => r !== undefined)
      if (records.length) {
        const r = await api.json<FallbackReceipt>("POST", "/api/v1/clients/fallbacks", {
          json: { records },
          timeoutMs,
          idempotent: true,
        })
        sent += r.accepted
      }
      offset += batch.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0)
      state.reported_bytes = offset
      state.reported += records.length
      state.reported_at = new Date().toISOString()
      writeState(log, state)
    }
  } catch {
    // Pending until the next call that reaches the coordinator.
  } finally {
    try {
      unlinkSync(lockPath(log))
    } catch {}
  }
  return sent
}
