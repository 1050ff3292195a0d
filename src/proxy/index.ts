import { runAttached } from "../client/session.ts"
import type { YamlExplainer } from "../shared/config/load.ts"
import { ConfigError, DffmpegError } from "../shared/errors.ts"
import { PROXY_FAILURE } from "../shared/exit-codes.ts"
import { escapeControls } from "../shared/text.ts"

/**
 * ffmpeg/ffprobe symlink mode. Every argument goes to the remote binary untouched; nothing here is
 * parsed by dffmpeg. Returns the remote exit code, or 1 after one `dffmpeg:` line for dffmpeg's own
 * failures. stderr carries nothing of dffmpeg's own unless something went wrong, so callers that parse
 * ffmpeg's output see exactly what a local ffmpeg would print.
 */
export async function runProxy(tool: string, args: string[], explainYaml?: YamlExplainer): Promise<number> {
  try {
    return await runAttached({
      binary: tool,
      args,
      explainYaml,
      warn: process.stderr.isTTY ? (w) => process.stderr.write(`dffmpeg: warning: ${w}\n`) : undefined,
    })
  } catch (err) {
    process.stderr.write(`dffmpeg: ${describe(err)}\n`)
    return PROXY_FAILURE
  }
}

/**
 * One line that says what went wrong and, where possible, what to fix. Control and bidi characters are
 * written visibly (`\x1b`, `\n`): a message may quote what a coordinator, a worker or a proxy on the path sent.
 */
export function describe(err: unknown): string {
  return escapeControls(explain(err))
}

function explain(err: unknown): string {
  if (err instanceof ConfigError) return err.issues.length ? `${err.message}: ${err.issues.join("; ")}` : err.message
  if (err instanceof DffmpegError) {
    const details = Array.isArray(err.details) ? `: ${err.details.join("; ")}` : ""
    if (err.code === "E_AUTH")
      return `the coordinator refused our credentials (${err.message}); check client_id and hmac_key`
    if (err.code === "E_FORBIDDEN") return `not allowed: ${err.message}`
    return err.message + details
  }
  return `unexpected error: ${(err as Error)?.message ?? String(err)}`
}
