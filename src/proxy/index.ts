import { runAttached } from "../client/session.ts"
import type { YamlExplainer } from "../shared/config/load.ts"
import { asProxy } from "../shared/error-exit.ts"

/**
 * ffmpeg/ffprobe symlink mode. Every argument goes to the remote binary untouched; nothing here is
 * parsed by dffmpeg. Returns the remote exit code, or 1 after one `dffmpeg:` line for dffmpeg's own
 * failures. stderr carries nothing of dffmpeg's own unless something went wrong, so callers that parse
 * ffmpeg's output see exactly what a local ffmpeg would print.
 */
export function runProxy(tool: string, args: string[], explainYaml?: YamlExplainer): Promise<number> {
  return asProxy(() =>
    runAttached({
      binary: tool,
      args,
      explainYaml,
      warn: process.stderr.isTTY ? (w) => process.stderr.write(`dffmpeg: warning: ${w}\n`) : undefined,
      // Only to a terminal: the non-TTY stderr is ffmpeg's, byte for byte.
      notice: process.stderr.isTTY ? (line) => process.stderr.write(line) : undefined,
    }),
  )
}
