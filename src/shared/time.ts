/**
 * Points in time given by people and scripts: `--since 2h` on the command line, `?since=` on the API.
 * Deliberately strict: `Date.parse` accepts "2", "March 7" or "2024-02-31", and a filter built on a
 * misread date silently shows the wrong jobs.
 */

/** `2026-11-27`, `2026-11-27T03:00`, `2026-11-27 03:00:15.5Z`, `2026-11-27T03:00:00+01:00`. */
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/
const RELATIVE = /^(\d{1,9})(s|m|h|d|w)$/
const UNIT: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/**
 * Milliseconds since the epoch (digits), or an ISO 8601 date or date-time. A date alone is midnight
 * UTC; a date-time without an offset is the local time of the process that parses it (as in
 * JavaScript). Undefined when `s` is neither, or names a day that does not exist.
 */
export function parseInstant(s: string): number | undefined {
  if (/^\d{1,15}$/.test(s)) return Number(s)
  const m = ISO.exec(s)
  if (!m) return undefined
  const [, y, mo, d, h = "0", mi = "0", sec = "0"] = m
  if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59)
    return undefined
  // Feb 30 and friends: JavaScript would roll them over into the next month.
  if (Number(d) > new Date(Date.UTC(Number(y), Number(mo), 0)).getUTCDate()) return undefined
  const ms = Date.parse(s.replace(" ", "T"))
  return Number.isNaN(ms) ? undefined : ms
}

/** A relative age (`90s`, `10m`, `2h`, `7d`, `1w`: that long before `now`) or an instant (`parseInstant`). */
export function parseSince(s: string, now: number): number | undefined {
  const m = RELATIVE.exec(s)
  if (m) return now - Number(m[1]) * UNIT[m[2]]
  return parseInstant(s)
}

export const SINCE_HELP =
  "a duration such as 90s, 10m, 2h, 7d or 1w, or an ISO date such as 2026-11-27 or 2026-11-27T03:00:00Z"

/** `0:07`, `12:05`, `1:02:03`: how ffmpeg users read media time and time left. */
export function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = String(s % 60).padStart(2, "0")
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`
}
