import type { CoordinatorConfig } from "../shared/config/server-schema.ts"
import { TooManyError } from "../shared/errors.ts"

type Limits = CoordinatorConfig["limits"]

/** Gives back what `take` counted; safe to call more than once. */
export type Release = () => void

/** One kind of counted connection: its limit and how a refusal explains it. */
interface Counter {
  max: number
  /** The refusal's message for `key` (what was counted, the key `limits:` sets it). */
  refuse: (key: string, max: number) => string
}

/**
 * Open long-lived connections of this process (dashboard live events, worker long polls, job output
 * streams), counted per key: one more than a limit allows is refused with 429 before any work is done
 * for it. Every count taken is given back when the connection ends, however it ends.
 */
export interface Connections {
  /** Live dashboard events from one client address (and in all). */
  dashboard(address: string, signal: AbortSignal): Release
  /** A worker identity's long poll. */
  poll(identity: string, signal: AbortSignal): Release
  /** A stream of a job's output (or, for its worker, of its input), held by `identity`. */
  stream(job: string | undefined, identity: string, signal: AbortSignal): Release
  /** Open connections counted under `kind:key` (tests, metrics). */
  open(kind: string, key?: string): number
}

export function createConnections(limits: Limits): Connections {
  const counts = new Map<string, number>()
  const counters: Record<string, Counter> = {
    dashboardAll: {
      max: limits.max_dashboard_connections,
      refuse: (_k, max) =>
        `too many dashboard live connections: ${max} are open (limits.max_dashboard_connections); close a dashboard tab and retry`,
    },
    dashboardIp: {
      max: limits.max_dashboard_connections_per_ip,
      refuse: (k, max) =>
        `too many dashboard live connections from ${k}: ${max} are open (limits.max_dashboard_connections_per_ip); close a dashboard tab and retry`,
    },
    poll: {
      max: limits.max_polls_per_worker,
      refuse: (k, max) =>
        `worker ${k} already has ${max} long polls open (limits.max_polls_per_worker); a worker keeps one`,
    },
    job: {
      max: limits.max_streams_per_job,
      refuse: (k, max) => `job ${k} already has ${max} output streams open (limits.max_streams_per_job)`,
    },
    identity: {
      max: limits.max_streams_per_identity,
      refuse: (k, max) => `${k} already holds ${max} open streams and polls (limits.max_streams_per_identity)`,
    },
  }

  const release = (key: string) => {
    const n = (counts.get(key) ?? 1) - 1
    if (n > 0) counts.set(key, n)
    else counts.delete(key)
  }

  /** Takes one of each `[counter, key]`, or none (429) when any is full; released on `signal` too. */
  const take = (signal: AbortSignal, ...wanted: [string, string][]): Release => {
    for (const [name, key] of wanted) {
      const c = counters[name]
      if ((counts.get(`${name}:${key}`) ?? 0) >= c.max) throw new TooManyError(c.refuse(key, c.max), { limit: c.max })
    }
    const keys = wanted.map(([name, key]) => `${name}:${key}`)
    for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1)
    let done = false
    const give = () => {
      if (done) return
      done = true
      signal.removeEventListener("abort", give)
      for (const k of keys) release(k)
    }
    // A request that ends before its stream starts (or whose stream never does) still gives back.
    if (signal.aborted) give()
    else signal.addEventListener("abort", give, { once: true })
    return give
  }

  return {
    dashboard: (address, signal) => take(signal, ["dashboardAll", "*"], ["dashboardIp", address]),
    poll: (identity, signal) => take(signal, ["poll", identity], ["identity", identity]),
    stream: (job, identity, signal) =>
      job === undefined ? take(signal, ["identity", identity]) : take(signal, ["job", job], ["identity", identity]),
    open: (kind, key = "*") => counts.get(`${kind}:${key}`) ?? 0,
  }
}
