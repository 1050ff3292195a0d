import { concatFrames } from "../protocol/frames.ts"

export interface Uploader {
  /** Queues an encoded frame; resolves once the unacknowledged backlog is under the limit (backpressure). */
  push(frame: Uint8Array): Promise<void>
  /** Resolves when every queued frame was acknowledged; rejects if sending failed for good. */
  drain(): Promise<void>
  /** Stops sending; pending frames are dropped. */
  close(): void
}

/**
 * Sends frames in order with at most one request in flight: a frame pushed while the line is idle goes
 * out at once (low latency for `\r` progress lines), frames pushed meanwhile are batched into the next
 * request (throughput for binary pipes). A failed send keeps the batch and retries it; receivers treat
 * repeated sequence numbers as duplicates, so a retry never duplicates output.
 */
export function createUploader(opts: {
  send(body: Uint8Array): Promise<void>
  /** Decides whether an error is worth retrying; non-retryable errors fail the uploader. */
  retryable(err: unknown): boolean
  delay(attempt: number): number
  maxBatch?: number
  maxBacklog?: number
}): Uploader {
  const maxBatch = opts.maxBatch ?? 4 * 1024 * 1024
  const maxBacklog = opts.maxBacklog ?? 64 * 1024 * 1024
  const queue: Uint8Array[] = []
  let queued = 0
  let sending = false
  let failed: unknown
  let closed = false
  let waiters: (() => void)[] = []
  let roomWaiters: (() => void)[] = []

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

  const pump = async () => {
    if (sending) return
    sending = true
    let attempt = 0
    while (queue.length && !closed && !failed) {
      let n = 0
      let size = 0
      while (n < queue.length && (n === 0 || size + queue[n].length <= maxBatch)) size += queue[n++].length
      const batch = queue.slice(0, n)
      try {
        await opts.send(n === 1 ? batch[0] : concatFrames(batch))
        queue.splice(0, n)
        queued -= size
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
    async push(frame) {
      if (failed) throw failed
      if (closed) return
      queue.push(frame)
      queued += frame.length
      void pump()
      if (queued >= maxBacklog) await new Promise<void>((r) => roomWaiters.push(r))
      if (failed) throw failed
    },
    async drain() {
      while (queue.length && !failed && !closed) await new Promise<void>((r) => waiters.push(r))
      if (failed) throw failed
    },
    close() {
      closed = true
      wake()
      wakeRoom()
    },
  }
}
