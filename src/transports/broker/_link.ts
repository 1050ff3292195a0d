/** What both broker links (mqtt.ts, rabbitmq.ts) do alike around their clients. */

/** Longest wait for the broker to take a message (PUBACK, publisher confirm): a publish never hangs. */
export const PUBLISH_TIMEOUT_MS = 5000

/** `p`, or a rejection with `message` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * `BrokerLink.ready`: resolves when `up()`, rejects when `refused()` (the broker said no, or could not be
 * reached: not worth waiting out), the link was closed, or `timeoutMs` passed; the link is then closed
 * unless `keepTrying`.
 */
export function untilUp(o: {
  broker: string
  where: string
  timeoutMs: number
  keepTrying: boolean
  up(): boolean
  refused(): boolean
  closed(): boolean
  lastError(): string
  close(): Promise<void>
  onUp(): void
}): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const started = Date.now()
    const tick = setInterval(() => {
      if (o.up()) {
        clearInterval(tick)
        o.onUp()
        return resolve()
      }
      const refused = o.refused()
      if (!o.closed() && !refused && Date.now() - started <= o.timeoutMs) return
      clearInterval(tick)
      const why = o.closed() ? "the link was closed" : refused ? o.lastError() : `${o.lastError()} (timed out)`
      const err = new Error(`cannot connect to the ${o.broker} broker at ${o.where}: ${why}`)
      if (o.keepTrying) reject(err)
      else void o.close().then(() => reject(err))
    }, 20)
  })
}
