/**
 * Which coordinator a request goes to (docs/protocol.md, "Several coordinators"). Every request starts
 * at the coordinator that last answered and tries the others in their configured order after it; the
 * first that answers becomes the one every later request starts at (sticky, never round robin: a
 * cluster behind one load balancer URL is one entry, and the balancer spreads it). Pure: the HTTP client
 * decides what a failure is (`Verdict`), this decides where to go next.
 */
export interface Failover {
  /** How many coordinators there are. */
  readonly size: number
  /** The coordinator requests start at now. */
  readonly current: number
  /** The order of one pass: `current` first, then the rest in configured order, wrapping around. */
  order(): number[]
  /** Coordinator `i` answered: later requests start there. */
  answered(i: number): void
}

export function createFailover(size: number): Failover {
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError(`a failover needs at least one coordinator, not ${size}`)
  let current = 0
  return {
    size,
    get current() {
      return current
    },
    order: () => Array.from({ length: size }, (_, k) => (current + k) % size),
    answered(i) {
      current = i
    },
  }
}

/**
 * What one attempt's failure means: `next` (it surely did not reach a coordinator that acted on it, or
 * repeating it is harmless: try the next one), or `stop` (an answer, or a request that may have been
 * acted on and must not be sent twice: the caller gets it).
 */
export type Verdict = "next" | "stop"

/**
 * Error codes of a connection that never carried the request: nothing was sent, so any request, even
 * one that is not idempotent, may go to the next coordinator.
 */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EAI_NONAME", "EHOSTUNREACH", "ENETUNREACH"])

/** True when an error code says the request never left (refused, no such host, no route). */
export const notSent = (code: string | undefined): boolean => code !== undefined && NOT_SENT.has(code)

/** HTTP statuses that say "not this coordinator, now" (a reverse proxy or balancer before one that is down, or a coordinator stopping). */
export const failoverStatus = (status: number): boolean => status === 502 || status === 503 || status === 504

/**
 * Runs `attempt` on each coordinator of one pass in order until one does not ask for the next; that
 * one becomes current. Returns its result, or throws the failure of the last attempt when every
 * coordinator asked for the next. There is no pause inside a pass: the callers' retry loops (a job's
 * stream, uploads, the worker's poll) back off with jitter between passes, within their own deadlines.
 */
export async function onePass<T>(
  f: Failover,
  attempt: (i: number) => Promise<{ verdict: "done"; value: T } | { verdict: Verdict; error: unknown; value?: T }>,
): Promise<T> {
  let last: { error: unknown; value?: T } | undefined
  for (const i of f.order()) {
    const r = await attempt(i)
    if (r.verdict === "done") {
      f.answered(i)
      return r.value
    }
    if (r.verdict === "stop") {
      if (r.value === undefined) throw r.error
      // An answer, even a refusal, comes from a coordinator that is up: stay on it.
      f.answered(i)
      return r.value
    }
    last = r
  }
  if (last?.value !== undefined) return last.value
  throw last?.error
}
