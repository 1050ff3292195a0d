/** Plain aligned columns for people; `--json` output is produced by the callers. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? "-" : String(c))))
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)))
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ")
  return [fmt(headers), ...cells.map(fmt)].join("\n") + "\n"
}

export function time(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-"
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z")
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-"
  if (ms < 1000) return `${ms}ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  return `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, "0")}s`
}
