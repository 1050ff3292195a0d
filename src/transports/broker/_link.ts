import { MAX_MESSAGE_BYTES, PREFIX } from "./types.ts"

/** First reconnect delay, doubled after each failed attempt up to RECONNECT_MAX_MS (both adapters). */
export const RECONNECT_MIN_MS = 250
export const RECONNECT_MAX_MS = 5_000

/** Throws when a configured prefix or exchange name would not make a safe topic or queue name. */
export function checkPrefix(what: string, value: string): string {
  if (!PREFIX.test(value)) throw new Error(`not a valid broker ${what}: ${JSON.stringify(value)}`)
  return value
}

/** Rejects a message the link must never send (see MAX_MESSAGE_BYTES). */
export function checkSize(bytes: Uint8Array): void {
  if (bytes.byteLength > MAX_MESSAGE_BYTES)
    throw new Error(`message of ${bytes.byteLength} bytes is over the ${MAX_MESSAGE_BYTES}-byte limit`)
}

/** A short reason for a connection error, for `ready`'s rejection and the logs (never a password). */
export function describe(err: unknown): string {
  const code = typeof err === "object" && err && "code" in err ? String(err.code) : ""
  const msg = err instanceof Error ? err.message : String(err)
  if (code === "ECONNREFUSED") return "connection refused"
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "host not found"
  if (code === "ETIMEDOUT" || code === "CONNECTION_TIMEOUT") return "connection timed out"
  if (code === "ACCESS_REFUSED" || /not authori[sz]ed|bad user name or password|ACCESS_REFUSED/i.test(msg))
    return "authentication failed"
  if (/certificate|self.signed|tls|ssl/i.test(code + " " + msg)) return `TLS: ${msg}`
  return msg || code || "unknown error"
}

/** A connection error that will not go away by waiting a few seconds: refused, no such host, login, TLS. */
export const definite = (detail: string): boolean =>
  detail === "authentication failed" ||
  detail === "connection refused" ||
  detail === "host not found" ||
  detail.startsWith("TLS")

/**
 * The connected state both adapters report: one value, onState on every change, and `ready` waiting for
 * the first `true` (or failing at its deadline with the last error seen, or at once on `fail`).
 */
export class LinkState {
  private value = false
  private lastError = "no answer yet"
  private waiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>()

  constructor(
    private readonly label: string,
    private readonly where: string,
    private readonly onState?: (connected: boolean, detail: string) => void,
  ) {}

  get connected(): boolean {
    return this.value
  }

  set(connected: boolean, detail: string): void {
    if (connected === this.value) return
    this.value = connected
    if (connected) for (const w of this.waiters) w.resolve()
    this.onState?.(connected, detail)
  }

  /** A connection error: remembered for `ready`; `fatal` ones (authentication) fail `ready` at once. */
  error(detail: string, fatal = false): void {
    this.lastError = detail
    if (fatal) for (const w of this.waiters) w.reject(this.failure())
  }

  private failure(): Error {
    return new Error(`cannot connect to the ${this.label} broker at ${this.where}: ${this.lastError}`)
  }

  /** Waits for the first connection; on failure calls `giveUp` (which closes the link) before rejecting. */
  wait(timeoutMs: number, giveUp: () => Promise<void>): Promise<void> {
    if (this.value) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const w = {
        resolve: () => {
          done()
          resolve()
        },
        reject: (e: Error) => {
          done()
          void giveUp().finally(() => reject(e))
        },
      }
      const timer = setTimeout(() => {
        this.lastError = `${this.lastError} (gave up after ${timeoutMs} ms)`
        w.reject(this.failure())
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(w)
      }
      this.waiters.add(w)
    })
  }

  /**
   * `BrokerLink.ready` for both adapters: refused on a closed link; otherwise `wait`, whose failure closes
   * the link unless `keepTrying`.
   */
  ready(closed: boolean, timeoutMs: number, keepTrying: boolean, close: () => Promise<void>): Promise<void> {
    if (closed) return Promise.reject(new Error(`the ${this.label} link to ${this.where} was closed`))
    return this.wait(timeoutMs, keepTrying ? async () => {} : close)
  }

  /** Rejects every `ready` still waiting (the link was closed). */
  abort(): void {
    for (const w of this.waiters) w.reject(new Error(`the ${this.label} link to ${this.where} was closed`))
  }
}

/** Promises of publishes in flight, so a disconnect or close rejects them instead of leaving them hanging. */
export class Pending {
  private readonly set = new Set<(e: Error) => void>()

  track<T>(start: (resolve: (v: T) => void, reject: (e: Error) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = (e: Error) => {
        this.set.delete(fail)
        reject(e)
      }
      this.set.add(fail)
      start((v) => {
        this.set.delete(fail)
        resolve(v)
      }, fail)
    })
  }

  rejectAll(why: string): void {
    for (const fail of [...this.set]) fail(new Error(why))
  }
}
