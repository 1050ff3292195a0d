import { AuthError, ConfigError, DffmpegError, JobFailedError, UsageError } from "./errors.ts"
import { ExitCode, PROXY_FAILURE } from "./exit-codes.ts"
import { escapeControls } from "./text.ts"

/**
 * The caller-side error edge: what the proxy, `dffmpeg client` and `dffmpeg admin` print and exit with
 * for an error. Dependency-free, because the proxy's start-up path imports it.
 */
export interface ErrorExit {
  /** The process exit status. */
  code: number
  /** The `dffmpeg: …` line, without its newline. */
  line: string
  /** Lines printed after it (command mode only): one `  ↳ …` per issue, then a hint; or an unexpected error's stack. */
  more: string[]
}

/**
 * `proxy`: the ffmpeg/ffprobe symlinks and `client submit`/`attach`, which answer like ffmpeg: exactly one
 * line (callers that parse ffmpeg's stderr get one line to show) and PROXY_FAILURE whatever went wrong.
 * `command`: every other command: the error's own exit code, its issues one per line.
 */
export type Edge = "proxy" | "command"

/**
 * Maps an error to its exit status and lines. Every piece of text is escaped (control and bidi characters
 * written visibly, `\x1b`, `\n`): a message may quote what a coordinator, a worker or a proxy on the path sent.
 */
export function errorExit(err: unknown, edge: Edge): ErrorExit {
  if (!(err instanceof DffmpegError)) {
    const e = err as Error | undefined
    // A media server's log wants one line.
    if (edge === "proxy")
      return {
        code: PROXY_FAILURE,
        line: `dffmpeg: unexpected error: ${escapeControls(e?.message ?? String(err))}`,
        more: [],
      }
    // A command's bug report wants the stack, one frame a line as it always was. The message stays one
    // escaped line (it may quote what someone sent); only the breaks before the frames are kept.
    const [message = "", ...frames] = (e?.stack ?? String(err)).split(/\n(?= {4}at )/)
    return {
      code: ExitCode.FAILURE,
      line: `dffmpeg: unexpected error: ${escapeControls(message)}`,
      more: frames.map((f) => escapeControls(f)),
    }
  }
  const issues = issuesOf(err).map((i) => escapeControls(i))
  if (edge === "proxy") {
    const text = escapeControls(proxyMessage(err)) + (issues.length ? `: ${issues.join("; ")}` : "")
    // A job that ran keeps ffmpeg's own failure code.
    const code = err instanceof JobFailedError && err.remoteCode ? err.remoteCode : PROXY_FAILURE
    return { code, line: `dffmpeg: ${text}`, more: [] }
  }
  const more = issues.map((i) => `  ↳ ${i}`)
  if (err instanceof UsageError) more.push("run with --help for usage")
  return { code: err.exitCode, line: `dffmpeg: ${escapeControls(err.message)}`, more }
}

/** The list an error carries: a config's issues, or a details array (a coordinator's validation issues). */
function issuesOf(err: DffmpegError): string[] {
  if (err instanceof ConfigError) return err.issues
  return Array.isArray(err.details) ? err.details.map(String) : []
}

/** In proxy mode there is no `--help` to turn to: auth failures say what to check. */
function proxyMessage(err: DffmpegError): string {
  if (err instanceof AuthError)
    return err.status === 403
      ? `not allowed: ${err.message}`
      : `the coordinator refused our credentials (${err.message}); check client_id and hmac_key`
  return err.message
}

/**
 * Runs `fn` as the proxy does (the ffmpeg/ffprobe symlinks, `client submit`/`attach`): its result (the remote
 * exit code), or PROXY_FAILURE after exactly one `dffmpeg:` line on stderr.
 */
export async function asProxy(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn()
  } catch (err) {
    const { code, line } = errorExit(err, "proxy")
    process.stderr.write(`${line}\n`)
    return code
  }
}
