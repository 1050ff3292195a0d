import type { Job } from "../shared/protocol/schemas.ts"

/**
 * Wake-ups for waiting requests. The store is the source of truth; a notifier only tells waiters that
 * something changed so they re-read it (no fixed polling interval in the hot path). A lost wake-up
 * costs at most one keep-alive period, because every waiter also re-reads on its own timer. Only the
 * store's change hook notifies (coordinator/wakeups.ts), after the change committed; the notifiers of
 * coordinator/notify/ carry the topics to the other coordinators on the same database.
 *
 * A notification may carry a `Hint` of what changed, so that a waiter can skip reads it would only
 * make to learn what it was just told. Hints are an optimisation, never a duty: a notifier that carries
 * none (one across coordinators, or a notify without a payload) wakes its subscribers with `undefined`,
 * and they read everything as if no notifier helped.
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
  /** Wakes the topic's waiters; `hint`, when given, is all that changed (see `Hint`). */
  notify(topic: string, hint?: Hint): void
  /** Number of topics this process waits on (for /health, metrics and tests). */
  readonly size: number
  /**
   * Whether other coordinators' changes reach this one now (/health): false while a notifier across
   * coordinators has lost its connection (its waiters then wake by their own timers, and all of them
   * once it is back). Absent: nothing to lose (the in-memory notifier).
   */
  readonly connected?: boolean
  /** Stops listening to other coordinators after sending what it has not sent yet; absent: nothing to close. */
  close?(): Promise<void>
}

/**
 * What a notification says changed, in full: given with a change committed before the notify, so a
 * waiter woken by it finds at least this in the store.
 * - `job`: a transition of the job committed, leaving it as this (the whole job as the store wrote it);
 * - `output`: output (or progress) of the job was stored;
 * - `input`: input of the job (its caller's stdin) was stored.
 * A hint with none of them says nothing and counts as none.
 */
export interface Hint {
  job?: Job
  output?: boolean
  input?: boolean
}

export interface Subscription {
  /**
   * Resolves at once if notified since the last wait (or since subscribing), else as `Notifier.wait`.
   * Resolves to what it was told since the last wait: the latest `job` of the hints and whether any
   * said `output` or `input` (bounded, whatever the number of notifications); `undefined` when nothing was told
   * (it woke by its timer, an abort or a close) or when any notification since the last wait came
   * without a hint (its change is unknown: read everything).
   */
  wait(ms: number, signal?: AbortSignal): Promise<Hint | undefined>
  close(): void
}

/** The in-memory notifier: wakes waiters of this process only. */
export class Hub implements Notifier {
  readonly kind = "memory"
  private listeners = new Map<string, Set<(hint?: Hint) => void>>()

  async wait(topic: string, ms: number, signal?: AbortSignal): Promise<void> {
    const sub = this.subscribe(topic)
    await sub.wait(ms, signal).finally(() => sub.close())
  }

  subscribe(topic: string): Subscription {
    // What was told since the last wait; `blind`: some notification carried no hint.
    let told: { job?: Job; output: boolean; input: boolean; blind: boolean } | undefined
    let wake: (() => void) | undefined
    const listener = (hint?: Hint) => {
      const t = (told ??= { output: false, input: false, blind: false })
      if (!hint || (!hint.job && !hint.output && !hint.input)) t.blind = true
      else {
        if (hint.job) t.job = hint.job
        if (hint.output) t.output = true
        if (hint.input) t.input = true
      }
      wake?.()
    }
    // Taken when the waiter runs, not when the first notification wakes it: the changes of one commit are
    // notified one after another in one go, and the waiter must hear all of them in one wake-up.
    const take = (): Hint | undefined => {
      const t = told
      told = undefined
      if (!t || t.blind) return undefined
      return {
        ...(t.job ? { job: t.job } : {}),
        ...(t.output ? { output: true } : {}),
        ...(t.input ? { input: true } : {}),
      }
    }
    let set = this.listeners.get(topic)
    if (!set) this.listeners.set(topic, (set = new Set()))
    set.add(listener)
    return {
      wait(ms, signal) {
        if (told || signal?.aborted) return Promise.resolve().then(take)
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
        }).then(take)
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

  notify(topic: string, hint?: Hint): void {
    const set = this.listeners.get(topic)
    if (!set) return
    for (const fn of [...set]) fn(hint)
  }

  get size(): number {
    return this.listeners.size
  }

  /** The topics someone waits on: a notifier that may have missed changes wakes all of them (a resync). */
  topics(): string[] {
    return [...this.listeners.keys()]
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
