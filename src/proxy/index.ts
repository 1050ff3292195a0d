import { runAttached } from "../client/session.ts"
import type { YamlExplainer } from "../shared/config/load.ts"
import { UnavailableError } from "../shared/errors.ts"
import { asProxy } from "../shared/error-exit.ts"

/**
 * ffmpeg/ffprobe symlink mode. Every argument goes to the remote binary untouched; nothing here is
 * parsed by dffmpeg. Returns the remote exit code, or 1 after one `dffmpeg:` line for dffmpeg's own
 * failures. stderr carries nothing of dffmpeg's own unless something went wrong, so callers that parse
 * ffmpeg's output see exactly what a local ffmpeg would print.
 */
export function runProxy(tool: string, args: string[], explainYaml?: YamlExplainer): Promise<number> {
  const tty = !!process.stderr.isTTY
  // Config warnings (a mistyped key) only go to a terminal; otherwise they are kept for the failure line.
  const hidden: string[] = []
  return asProxy(async () => {
    try {
      return await runAttached({
        binary: tool,
        args,
        explainYaml,
        warn: tty ? (w) => process.stderr.write(`dffmpeg: warning: ${w}\n`) : (w) => void hidden.push(w),
        // Only to a terminal: the non-TTY stderr is ffmpeg's, byte for byte.
        notice: tty ? (line) => process.stderr.write(line) : undefined,
      })
    } catch (err) {
      // A coordinator out of reach is often a mistyped key (`coordinator.hots`) nobody saw the warning of.
      if (hidden.length && err instanceof UnavailableError && err.message.startsWith("cannot reach"))
        throw new UnavailableError(
          `${err.message} (the config has ${hidden.length} warning(s) not shown here: run dffmpeg config check)`,
          err.details,
        )
      throw err
    }
  })
}
