import { escapeControls } from "../shared/text.ts"
import { clock } from "../shared/time.ts"

/**
 * A cell as a terminal may show it: worker- and client-supplied strings (a worker's version, a job's
 * arguments, a reason) have their control and bidi characters written visibly (`\x1b`, `\n`, `\u202e`), so
 * none can move the cursor, retitle the window, forge a line or reorder what is shown. `--json` keeps them.
 */
export const cell = (c: string | number | null | undefined): string =>
  c === null || c === undefined ? "-" : escapeControls(String(c))

/** Plain aligned columns for people (cells escaped, see `cell`); `--json` output is produced by the callers. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = rows.map((r) => r.map(cell))
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)))
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ")
  return [fmt(headers), ...cells.map(fmt)].join("\n") + "\n"
}

export function time(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-"
  return new Date(ms)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "Z")
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-"
  if (ms < 1000) return `${ms}ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  return `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, "0")}s`
}

export { clock }

/** How long ago: `12s`, `3m`, `2h`, `4d` (one unit: table cells stay short). */
export function ago(ms: number | null | undefined, now: number): string {
  if (ms === null || ms === undefined) return "-"
  const s = Math.max(0, Math.floor((now - ms) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86_400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

/** The fields of a job's progress report that a progress cell shows. */
export interface ProgressLike {
  timeMs: number
  percent: number | null
  speed: number | null
  etaMs: number | null
}

/**
 * One progress cell: `42% 1.8x eta 0:31`. Without a known duration (live input, no `-t`) there is no
 * percentage or eta, so the position reached is shown instead: `at 1:02:03 1.8x`.
 */
export function progress(p: ProgressLike | null | undefined): string {
  if (!p) return "-"
  const parts = [p.percent !== null ? `${Math.floor(p.percent)}%` : `at ${clock(p.timeMs)}`]
  if (p.speed !== null) parts.push(`${+p.speed.toFixed(p.speed < 10 ? 2 : 1)}x`)
  if (p.percent !== null && p.etaMs !== null) parts.push(`eta ${clock(p.etaMs)}`)
  return parts.join(" ")
}

/** `[###-------]`: a fixed-width gauge of used against total. */
export function bar(used: number, total: number, width = 10): string {
  const filled = total > 0 ? Math.min(width, Math.round((used / total) * width)) : 0
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`
}

export function truncate(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + "…" : s
}

/** `key   value` lines, keys padded to one column (single-record views such as `jobs show`); values escaped like cells. */
export function fields(rows: [string, string | number | null | undefined][]): string {
  const width = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, val]) => `${k.padEnd(width)}  ${val === "" ? "-" : cell(val)}`).join("\n") + "\n"
}
