import { runAttached } from "../client/session.ts"
import type { YamlExplainer } from "../shared/config/load.ts"
import { asProxy } from "../shared/error-exit.ts"
import { stderrFd } from "../shared/fd-out.ts"
import { isatty } from "node:tty"

/**
 * ffmpeg/ffprobe symlink mode. Every argument goes to the remote binary untouched; nothing here is
 * parsed by dffmpeg. Returns the remote exit code, or 1 after one `dffmpeg:` line for dffmpeg's own
 * failures. stderr carries nothing of dffmpeg's own unless something went wrong, so callers that parse
 * ffmpeg's output see exactly what a local ffmpeg would print.
 */
export function runProxy(tool: string, args: string[], explainYaml?: YamlExplainer): Promise<number> {
  // isatty(2), not process.stderr.isTTY: Node's stream objects are never built on the proxy path.
  const tty = isatty(2)
  return asProxy(() =>
    runAttached({
      binary: tool,
      args,
      explainYaml,
      warn: tty ? (w) => stderrFd().write(`dffmpeg: warning: ${w}\n`) : undefined,
      // Only to a terminal: the non-TTY stderr is ffmpeg's, byte for byte.
      notice: tty ? (line) => stderrFd().write(line) : undefined,
    }),
  )
}
