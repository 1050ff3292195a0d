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
  notify(topic: string): void
  /** Number of topics this process waits on (for /health, metrics and tests). */
  readonly size: number
}

/** The in-memory notifier: wakes waiters of this process only. */
export class Hub implements Notifier {
  readonly kind = "memory"
  private waiters = new Map<string, Set<() => void>>()

  wait(topic: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(topic)
      if (!set) this.waiters.set(topic, (set = new Set()))
      const done = () => {
        clearTimeout(timer)
        signal?.removeEventListener("abort", done)
        const s = this.waiters.get(topic)
        if (s) {
          s.delete(done)
          if (!s.size) this.waiters.delete(topic)
        }
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal?.addEventListener("abort", done, { once: true })
      set.add(done)
    })
  }

  notify(topic: string): void {
    const set = this.waiters.get(topic)
    if (!set) return
    for (const fn of [...set]) fn()
  }

  get size(): number {
    return this.waiters.size
  }
}

export const topic = {
  output: (job: string) => `job:${job}:output`,
  input: (job: string) => `job:${job}:input`,
  worker: (id: string) => `worker:${id}`,
  /** Any job or worker changed (dashboards re-read). */
  changes: "changes",
}
