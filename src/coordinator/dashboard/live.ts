import type { Context } from "hono"
import { streamSSE } from "hono/streaming"
import type { Logger } from "../../shared/log.ts"
import type { Store } from "../../store/index.ts"
import type { AuthEnv } from "../api/middleware/hmac.ts"
import { pause } from "../../shared/pause.ts"
import { topic, type Notifier } from "../hub.ts"
import { readTail, type LogReader } from "./log-text.ts"
import { LIVE_ARGS_CHARS, TAIL_CHUNKS, jobView, readState, type DashboardState, type JobDetail } from "./views.ts"

export interface LiveTiming {
  /** Fewest milliseconds between two updates of one page: bursts of changes become one update. */
  minGapMs: number
  /**
   * Re-read this often even when nothing was announced: the hub only hears of changes made through
   * this coordinator, not of those made by another one sharing the database.
   */
  refreshMs: number
  /** A comment is sent when nothing else was for this long (proxies close silent connections). */
  keepaliveMs: number
}

/** At most 4 updates a second; a keep-alive within 15 s (a refresh round comes at least every 5 s). */
export const TIMING: LiveTiming = { minGapMs: 250, refreshMs: 5000, keepaliveMs: 10_000 }

export interface LiveDeps {
  store: Store
  hub: Notifier
  log: Logger
  now: () => number
  staleMs: number
}

/** A `job` event: the job, its timeline, and the log text added since the last one (all of it on `reset`). */
export type JobUpdate = (JobDetail & { log: JobDetail["log"] & { reset: boolean } }) | { id: string; gone: true }

/**
 * One state read shared by every open page of a coordinator. Pages woken by the same change ask within
 * the same few milliseconds; each reuses a read that started after the moment it was woken, so N open
 * pages cost one read per change instead of N, and none misses the change that woke it.
 */
const shared = new WeakMap<Store, { startedAt: number; value: Promise<DashboardState> }>()
function sharedState(deps: LiveDeps, notBefore: number): Promise<DashboardState> {
  const last = shared.get(deps.store)
  if (last && last.startedAt >= notBefore) return last.value
  const entry = { startedAt: performance.now(), value: readState(deps) }
  shared.set(deps.store, entry)
  // A failed read must not be handed to the next page.
  entry.value.catch(() => shared.get(deps.store) === entry && shared.delete(deps.store))
  return entry.value
}

/** Resolves true when something changed, false when `ms` passed first (or when `signal` aborted). */
async function changed(hub: Notifier, ms: number, signal: AbortSignal): Promise<boolean> {
  const t0 = performance.now()
  await hub.wait(topic.changes, ms, signal)
  return performance.now() - t0 < ms
}

/**
 * Follows one job for a page: each call answers what changed since the previous call, or undefined.
 * The log is sent as increments; it starts over (`reset`) on the first call, when a new attempt
 * replaced the output, or when more arrived between two calls than one tail read holds. The job is
 * read as a bounded summary: the page has the whole command from its first load (`readJob`).
 */
export function followJob(store: Store, id: string) {
  let shown = ""
  let cursor = -1
  let epoch = -1
  let reader: LogReader | undefined
  let gone = false
  return async (): Promise<JobUpdate | undefined> => {
    const job = await store.getJobSummary(id, { argsChars: LIVE_ARGS_CHARS })
    if (!job) {
      if (gone) return undefined
      gone = true
      return { id, gone: true }
    }
    const [events, tail] = await Promise.all([store.events(id), store.lastOutput(id, "stderr", TAIL_CHUNKS)])
    const fresh = tail.filter((r) => r.pos > cursor)
    const last = tail.at(-1)?.pos ?? -1
    // A full read of only new chunks may have skipped some; a tail behind the cursor was replaced.
    const reset = !reader || job.epoch !== epoch || fresh.length === TAIL_CHUNKS || last < cursor
    let log: JobDetail["log"]
    if (reset) {
      const start = readTail(tail.map((r) => r.data))
      reader = start.reader
      log = start.text
    } else {
      log = reader!.push(fresh.map((r) => r.data))
    }
    const key = [
      job.status,
      job.updatedAt,
      job.workerId,
      job.cancelRequestedAt,
      job.progress?.at,
      events.length,
      log.partial,
    ].join("|")
    const quiet = !reset && !log.lines && key === shown
    cursor = last
    epoch = job.epoch
    shown = key
    if (quiet) return undefined
    return { job: jobView(job), events, log: { ...log, reset } }
  }
}

export interface LiveOptions {
  /** Also follow this job (`job` events). */
  job?: string
  timing?: LiveTiming
  /**
   * Checked before every round when reading needs a sign-in: the stream ends once the session no
   * longer holds (key rotated, user removed, expired), and the page then asks to sign in again.
   */
  authorized?: () => Promise<boolean>
  /** Called once when the stream has ended (the connection's slot is given back). */
  onEnd?: () => void
}

/**
 * Server-Sent Events for a page: `state` at once and after every change (at most one per `minGapMs`),
 * `job` events for `?job=ID`, and a comment when the line has been quiet. Ends, with no waiter left
 * in the hub, when the browser goes away.
 */
export function liveEvents(c: Context<AuthEnv>, deps: LiveDeps, opts: LiveOptions = {}) {
  const timing = opts.timing ?? TIMING
  const jobId = opts.job
  // Bun closes a connection idle for its idleTimeout; this one is quiet between changes by design.
  c.env?.server?.timeout(c.req.raw, 0)
  c.header("X-Accel-Buffering", "no")
  return streamSSE(c, async (s) => {
    const ac = new AbortController()
    s.onAbort(() => ac.abort())
    c.req.raw.signal.addEventListener("abort", () => ac.abort(), { once: true })
    const signal = ac.signal
    const job = jobId ? followJob(deps.store, jobId) : undefined
    let shown = ""
    let sentAt = -Infinity
    let wroteAt = performance.now()
    let first = true
    let wake = Promise.resolve(true)
    try {
      while (!signal.aborted) {
        const woken = await wake
        // Any read that starts from here on has seen what woke this round.
        const wokeAt = performance.now()
        if (woken) await pause(sentAt + timing.minGapMs - performance.now(), signal)
        if (signal.aborted) break
        if (opts.authorized && !(await opts.authorized())) break
        // Armed before reading, so that a change made while we read wakes the next round.
        wake = changed(deps.hub, timing.refreshMs, signal)
        const state = await sharedState(deps, wokeAt)
        const key = JSON.stringify({ ...state, now: 0 })
        if (key !== shown) {
          shown = key
          // `retry` tells EventSource how soon to reconnect after the coordinator restarts.
          await s.writeSSE({ event: "state", data: JSON.stringify(state), ...(first ? { retry: 2000 } : {}) })
          first = false
          sentAt = wroteAt = performance.now()
        }
        const update = await job?.()
        if (update) {
          await s.writeSSE({ event: "job", data: JSON.stringify(update) })
          sentAt = wroteAt = performance.now()
        }
        if (performance.now() - wroteAt >= timing.keepaliveMs) {
          await s.write(": keep-alive\n\n")
          wroteAt = performance.now()
        }
      }
    } catch (err) {
      deps.log.error("dashboard event stream failed", { job: jobId }, err as Error)
    } finally {
      // Releases the armed waiter at once if the loop ended by an error rather than by the browser.
      ac.abort()
      await wake
      opts.onEnd?.()
    }
  })
}
