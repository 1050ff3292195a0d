import { concatFrames } from "../protocol/frames.ts"

export interface Uploader<T = Uint8Array> {
  /** Queues an item (an encoded frame by default); resolves once the unacknowledged backlog is under the limit (backpressure). */
  push(item: T): Promise<void>
  /** Sends what is queued at once (ending a linger), resolves when every queued frame was acknowledged; rejects if sending failed for good. */
  drain(): Promise<void>
  /** Stops sending; pending frames are dropped. */
  close(): void
}

/**
 * Sends frames in order with at most one request in flight: a frame pushed while the line is idle goes
 * out at once (low latency for `\r` progress lines), frames pushed meanwhile are batched into the next
 * request (throughput for binary pipes). A batch is encoded into its body once, and a failed send retries
 * that same body; receivers treat repeated sequence numbers as duplicates, so a retry never duplicates
 * output. Items are encoded frames unless `encode` says otherwise (the worker queues raw output and
 * frames a batch in one copy, `worker/output-batch.ts`).
 *
 * With `linger`, a small batch (under `lingerBytes`) pushed while the line is idle waits up to that many
 * ms for more before it goes, so what follows within it (the worker: a process's last output, then its
 * exit) shares one request; `drain()` or a batch reaching `lingerBytes` sends at once. A busy line never
 * lingers: what queued during a request goes as soon as it is answered.
 */
export function createUploader<T = Uint8Array>(opts: {
  send(body: Uint8Array): Promise<void>
  /** Decides whether an error is worth retrying; non-retryable errors fail the uploader. */
  retryable(err: unknown): boolean
  delay(attempt: number): number
  maxBatch?: number
  maxBacklog?: number
  /** Bytes an item counts for in a batch and the backlog (default: its length). */
  size?: (item: T) => number
  /** One request's body from a batch of items (default: the frames joined). */
  encode?: (items: T[]) => Uint8Array
  /** Ms a small batch waits on an idle line for more (default 0: it goes at once). */
  linger?: number
  /** A batch this large never lingers (default 64 KiB). */
  lingerBytes?: number
}): Uploader<T> {
  const linger = opts.linger ?? 0
  const lingerBytes = opts.lingerBytes ?? 64 * 1024
  const maxBatch = opts.maxBatch ?? 4 * 1024 * 1024
  const maxBacklog = opts.maxBacklog ?? 64 * 1024 * 1024
  const size = opts.size ?? ((f: T) => (f as Uint8Array).length)
  const encode =
    opts.encode ?? ((fs: T[]) => (fs.length === 1 ? (fs[0] as Uint8Array) : concatFrames(fs as Uint8Array[])))
  const queue: T[] = []
  let queued = 0
  let sending = false
  let failed: unknown
  let closed = false
  let waiters: (() => void)[] = []
  let roomWaiters: (() => void)[] = []
  let lingering: ReturnType<typeof setTimeout> | undefined

  const wake = () => {
    const w = waiters
    waiters = []
    for (const f of w) f()
  }
  const wakeRoom = () => {
    if (queued >= maxBacklog && !failed && !closed) return
    const w = roomWaiters
    roomWaiters = []
    for (const f of w) f()
  }

  const stopLinger = () => {
    if (lingering === undefined) return
    clearTimeout(lingering)
    lingering = undefined
  }
  /** Sends now, or, for a small batch on an idle line, once the linger is over. */
  const kick = (now: boolean) => {
    if (sending) return
    if (!now && linger > 0 && queued < lingerBytes) {
      lingering ??= setTimeout(() => {
        lingering = undefined
        void pump()
      }, linger)
      return
    }
    stopLinger()
    void pump()
  }

  const pump = async () => {
    if (sending) return
    stopLinger()
    sending = true
    let attempt = 0
    let body: { bytes: Uint8Array; n: number; size: number } | undefined
    while (queue.length && !closed && !failed) {
      if (!body) {
        let n = 0
        let bytes = 0
        while (n < queue.length && (n === 0 || bytes + size(queue[n]!) <= maxBatch)) bytes += size(queue[n++]!)
        body = { bytes: encode(queue.slice(0, n)), n, size: bytes }
      }
      try {
        await opts.send(body.bytes)
        queue.splice(0, body.n)
        queued -= body.size
        body = undefined
        attempt = 0
        wakeRoom()
      } catch (err) {
        if (!opts.retryable(err)) {
          failed = err
          break
        }
        await Bun.sleep(opts.delay(attempt++))
      }
    }
    sending = false
    wake()
    wakeRoom()
  }

  return {
    async push(item) {
      if (failed) throw failed
      if (closed) return
      queue.push(item)
      queued += size(item)
      kick(false)
      if (queued >= maxBacklog) await new Promise<void>((r) => roomWaiters.push(r))
      if (failed) throw failed
    },
    async drain() {
      if (queue.length && !failed && !closed) kick(true)
      while (queue.length && !failed && !closed) await new Promise<void>((r) => waiters.push(r))
      if (failed) throw failed
    },
    close() {
      closed = true
      stopLinger()
      wake()
      wakeRoom()
    },
  }
}
