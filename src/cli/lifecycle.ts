/**
 * Signals for long-running roles: the first SIGINT/SIGTERM asks for a graceful stop, the second forces
 * it, and a third (or a stop that hangs) exits at once.
 */
export function onStopSignals(graceful: () => Promise<void>, force: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let count = 0
    const handler = (sig: NodeJS.Signals) => {
      count++
      if (count === 1) void graceful().then(resolve, resolve)
      else if (count === 2) void force().then(resolve, resolve)
      else {
        process.stderr.write(`dffmpeg: ${sig} again; exiting now\n`)
        process.exit(1)
      }
    }
    process.on("SIGINT", handler)
    process.on("SIGTERM", handler)
  })
}
