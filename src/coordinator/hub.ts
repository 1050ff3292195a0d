/**
 * Wake-ups for waiting requests. The store is the source of truth; a notifier only tells waiters that
 * something changed so they re-read it (no fixed polling interval in the hot path). A lost wake-up
 * costs at most one keep-alive period, because every waiter also re-reads on its own timer. Only the
 * store's change hook notifies (coordinator/wakeups.ts); an implementation shared by several
 * coordinators would carry these topics between them.
 */
export interface Notifier {
  /** Which implementation, as /health reports it ("memory": this process only). */
  readonly kind: string
  /** Resolves at the next `notify(topic)`, after `ms`, or when `signal` aborts; whichever is first. */
  wait(topic: string, ms: number, signal?: AbortSignal): Promise<void>
  /**
   * Listens to `topic` from now on, for a loop that reads the store and then waits: a notification that
   * arrives while it reads is kept, and its next `wait` returns at once. (`wait` alone, called after the
   * read, would miss a change committed during the read until its timer fires.) Close it when done.
   */
  subscribe(topic: string): Subscription
  notify(topic: string): void
  /** Number of topics this process waits on (for /health, metrics and tests). */
  readonly size: number
}

export interface Subscription {
  /** Resolves at once if notified since the last wait (or since subscribing), else as `Notifier.wait`. */
  wait(ms: number, signal?: AbortSignal): Promise<void>
  close(): void
}

/** The in-memory notifier: wakes waiters of this process only. */
export class Hub implements Notifier {
  readonly kind = "memory"
  private listeners = new Map<string, Set<() => void>>()

  wait(topic: string, ms: number, signal?: AbortSignal): Promise<void> {
    const sub = this.subscribe(topic)
    return sub.wait(ms, signal).finally(() => sub.close())
  }

  subscribe(topic: string): Subscription {
    let pending = false
    let wake: (() => void) | undefined
    const listener = () => {
      if (wake) wake()
      else pending = true
    }
    let set = this.listeners.get(topic)
    if (!set) this.listeners.set(topic, (set = new Set()))
    set.add(listener)
    return {
      wait(ms, signal) {
        if (pending || signal?.aborted) {
          pending = false
          return Promise.resolve()
        }
        return new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer)
            signal?.removeEventListener("abort", done)
            wake = undefined
            resolve()
          }
          const timer = setTimeout(done, ms)
          signal?.addEventListener("abort", done, { once: true })
          wake = done
        })
      },
      close: () => {
        wake?.()
        const s = this.listeners.get(topic)
        if (!s) return
        s.delete(listener)
        if (!s.size) this.listeners.delete(topic)
      },
    }
  }

  notify(topic: string): void {
    const set = this.listeners.get(topic)
    if (!set) return
    for (const fn of [...set]) fn()
  }

  get size(): number {
    return this.listeners.size
  }
}

export const topic = {
  output: (job: string) => `job:${job}:output`,
  input: (job: string) => `job:${job}:input`,
  /** The caller acknowledged output of the job (room in its window). */
  acked: (job: string) => `job:${job}:acked`,
  worker: (id: string) => `worker:${id}`,
  /** Any job or worker changed (dashboards re-read). */
  changes: "changes",
}
