/**
 * Runs `fn` until it finishes or the user interrupts it (Ctrl-C, SIGTERM): the first signal aborts
 * `signal` so `fn` can stop cleanly and the command exits 0; a second one, should `fn` not stop,
 * ends the process the default way.
 */
export async function untilInterrupted<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController()
  const onSignal = (sig: NodeJS.Signals) => {
    if (!ac.signal.aborted) return ac.abort()
    release()
    process.kill(process.pid, sig)
  }
  const release = () => {
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  try {
    return await fn(ac.signal)
  } finally {
    release()
  }
}
