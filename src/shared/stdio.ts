/**
 * The process's own stdout and stderr at exit. Bun queues writes to a pipe, and `process.exit` drops
 * whatever the reader has not taken yet (a 110 MB `--json` listing arrived as 128 KiB with exit 0), so
 * main.ts waits here for both streams to drain before exiting, and turns a write failure into a
 * non-zero exit instead of losing output silently.
 */
type Name = "stdout" | "stderr"
type WriteError = Error & { code?: string }

const failures = new Map<Name, WriteError>()
const lost = new AbortController()
let watching = false

/**
 * Records write failures of stdout and stderr (EPIPE: the reader went away; ENOSPC...) instead of
 * crashing on them. Call once, before anything is written.
 */
export function watchStdio(): void {
  if (watching) return
  watching = true
  for (const name of ["stdout", "stderr"] as const)
    process[name].on("error", (err: WriteError) => {
      // A write racing our own end() at exit is not the reader's doing.
      if (err.code === "ERR_STREAM_WRITE_AFTER_END" || failures.has(name)) return
      failures.set(name, err)
      if (name === "stdout") lost.abort()
    })
}

/** Aborted once stdout cannot be written: commands that keep writing (live views) stop on it. */
export const stdoutLost: AbortSignal = lost.signal

/** Resolves once everything written to `s` reached the OS, however slow its reader; then one turn for a late error event. */
function drain(s: NodeJS.WriteStream): Promise<void> {
  return new Promise<void>((resolve) => s.end(() => resolve())).then(
    () => new Promise<void>((resolve) => setImmediate(resolve)),
  )
}

const describe = (err: WriteError) => (err.code === "EPIPE" ? "EPIPE: its reader closed it" : (err.code ?? err.message))

export interface SettleOptions {
  /** Exit status when the command succeeded but output was lost. */
  failure: number
  /** Whether a lost stderr fails a successful command too (not in proxy mode, which keeps the remote code). */
  stderr: boolean
}

/**
 * Waits for stdout, then stderr, to drain, and returns the exit status: `code`, or `o.failure` when
 * `code` is 0 and output could not be written, after one `dffmpeg:` line on stderr (when stderr still
 * works). A command that already failed keeps its code and its own message.
 */
export async function settleStdio(code: number, o: SettleOptions): Promise<number> {
  await drain(process.stdout)
  const out = failures.get("stdout")
  if (out && code === 0) {
    process.stderr.write(
      `dffmpeg: could not write all output to standard output (${describe(out)}); the output is incomplete\n`,
    )
    code = o.failure
  }
  await drain(process.stderr)
  if (o.stderr && failures.has("stderr") && code === 0) code = o.failure
  return code
}
