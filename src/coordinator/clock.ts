import type { Logger } from "../shared/log.ts"

/** How often the offset to the database's clock is measured again while the coordinator runs. */
export const CLOCK_REFRESH_MS = 60_000
/** Never measured more often than this, however often `sync` is asked for. */
export const CLOCK_MIN_GAP_MS = 5_000
/** An offset larger than this is logged: this host's clock is off and should run NTP. */
export const CLOCK_WARN_MS = 1_000
/** A sample whose round trip took longer than this says little about the offset: it is dropped. */
export const CLOCK_MAX_RTT_MS = 1_000

export interface Clock {
  /** Milliseconds since the epoch on the database's clock: Date.now() plus the measured offset. */
  now(): number
  /** The offset last measured (database − host, ms). */
  offset(): number
  /** Measures the offset now (at most once per CLOCK_MIN_GAP_MS; a call within it returns the last result). */
  sync(): Promise<number>
  /** Measures it every CLOCK_REFRESH_MS until `stop`. */
  start(): void
  stop(): void
}

/**
 * One clock for every coordinator on a database. Liveness is compared across coordinators (a heartbeat
 * written by one, judged stale by another's janitor), so each reads the database's clock and keeps its
 * own `now` at Date.now() plus the offset to it: the read's round-trip midpoint, the best of three samples
 * at start. A failed measure keeps the last offset. The offset moves only by what was measured, so `now`
 * steps at most by the hosts' drift over a refresh (tens of ms a minute on a host without NTP).
 */
export function createClock(deps: {
  /** The database's clock (Store.clock). */
  read: () => Promise<number>
  log: Logger
  local?: () => number
  refreshMs?: number
  minGapMs?: number
}): Clock {
  const local = deps.local ?? Date.now
  const refreshMs = deps.refreshMs ?? CLOCK_REFRESH_MS
  const minGapMs = deps.minGapMs ?? CLOCK_MIN_GAP_MS
  let offset = 0
  let measured = false
  let lastAt = -Infinity
  let pending: Promise<number> | undefined
  let timer: ReturnType<typeof setInterval> | undefined
  let warned = false

  const sample = async () => {
    const t0 = local()
    const db = await deps.read()
    const t1 = local()
    return { rtt: t1 - t0, offset: db - (t0 + t1) / 2 }
  }

  const measure = async (): Promise<number> => {
    lastAt = local()
    // Three samples the first time, one after; the one with the shortest round trip wins.
    let best: { rtt: number; offset: number } | undefined
    for (let i = 0; i < (measured ? 1 : 3); i++) {
      const s = await sample()
      if (!Number.isFinite(s.offset) || s.rtt > CLOCK_MAX_RTT_MS) continue
      if (!best || s.rtt < best.rtt) best = s
    }
    if (!best) return offset
    offset = Math.round(best.offset)
    measured = true
    const large = Math.abs(offset) > CLOCK_WARN_MS
    if (large && !warned)
      deps.log.warn("this host's clock is off from the database's; times are taken from the database", {
        offset_ms: offset,
        round_trip_ms: +best.rtt.toFixed(2),
      })
    warned = large
    return offset
  }

  const sync = (): Promise<number> => {
    if (pending) return pending
    if (local() - lastAt < minGapMs) return Promise.resolve(offset)
    pending = measure().finally(() => {
      pending = undefined
    })
    return pending
  }

  return {
    now: () => local() + offset,
    offset: () => offset,
    sync,
    start() {
      timer ??= setInterval(() => {
        sync().catch((err) => deps.log.warn("could not read the database's clock; keeping the last offset", err))
      }, refreshMs)
      timer.unref?.()
    },
    stop() {
      clearInterval(timer)
      timer = undefined
    },
  }
}
