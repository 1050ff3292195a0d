/**
 * stdout and stderr through Bun's own writer (`Bun.write` on `Bun.stdout`/`Bun.stderr`) instead of Node's
 * `process.stdout`/`process.stderr`, whose construction alone cost the proxy ~3.3 ms of start-up (issue 13).
 *
 * Writes are chained in order; each one resolves once its bytes were handed to the OS (Bun.write
 * retries short and would-block writes until all is written), so a caller that awaits its writes has
 * bounded memory under a slow reader, and nothing is left queued in the process when the last write
 * resolved: exiting then loses no byte. A failed write (EPIPE: the reader went away; ENOSPC...) is
 * recorded, reported once to the "error" listeners, and every later write is dropped at once.
 */
export type WriteError = Error & { code?: string }

export interface FdOut {
  /** Same shape as a Node stream's write: `cb` runs once the bytes reached the OS, or with the failure. */
  write(b: Uint8Array | string, cb?: (err?: Error | null) => void): void
  on(event: "error", listener: (err: Error) => void): void
  /** Resolves once every write so far finished (reached the OS or failed). */
  drained(): Promise<void>
  /** The first write failure, if any. */
  readonly failure: WriteError | undefined
}

/** A writer for `target`: Bun.stdout, Bun.stderr, or a test's file or fd. */
export function fdOut(target: Bun.BunFile | number): FdOut {
  let tail: Promise<void> = Promise.resolve()
  let failure: WriteError | undefined
  const listeners: ((err: Error) => void)[] = []
  return {
    write(b, cb) {
      tail = tail.then(async () => {
        if (failure) return cb?.(failure)
        if (!b.length) return cb?.()
        try {
          await Bun.write(typeof target === "number" ? Bun.file(target) : target, b)
        } catch (err) {
          failure = err as WriteError
          for (const l of listeners) l(failure)
          return cb?.(failure)
        }
        cb?.()
      })
    },
    on(_event, listener) {
      listeners.push(listener)
    },
    drained: () => tail,
    get failure() {
      return failure
    },
  }
}

let out: FdOut | undefined
let err: FdOut | undefined
/** This process's stdout, through Bun's writer. */
export const stdoutFd = (): FdOut => (out ??= fdOut(Bun.stdout))
/** This process's stderr, through Bun's writer. */
export const stderrFd = (): FdOut => (err ??= fdOut(Bun.stderr))

const describe = (e: WriteError) => (e.code === "EPIPE" ? "EPIPE: its reader closed it" : (e.code ?? e.message))

/**
 * The proxy's settleStdio (shared/stdio.ts) without Node's streams: waits until everything written to
 * stdout and stderr reached the OS, and returns `code`, or `failure` when `code` is 0 and stdout lost
 * output, after one `dffmpeg:` line on stderr. A remote non-zero code stands, as a local ffmpeg's would.
 */
export async function settleFds(code: number, failure: number): Promise<number> {
  await stdoutFd().drained()
  const lost = stdoutFd().failure
  if (lost && code === 0) {
    stderrFd().write(
      `dffmpeg: could not write all output to standard output (${describe(lost)}); the output is incomplete\n`,
    )
    code = failure
  }
  await stderrFd().drained()
  return code
}
