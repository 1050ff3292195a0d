/**
 * What the benchmarks share: the compiled binary built when missing, whole-process timing, percentiles,
 * and the 30 s 720p input they probe. Each benchmark prints a Markdown report for docs/performance.md.
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { BIN } from "../test/helpers/bin.ts"
import { makeMedia } from "../test/helpers/media.ts"

/** Builds dist/dffmpeg first when it is missing. */
export function ensureBuilt(): void {
  if (!existsSync(BIN))
    Bun.spawnSync(["bun", "scripts/build.ts", "--single"], {
      stdout: "inherit",
      stderr: "inherit",
      cwd: join(import.meta.dir, ".."),
    })
}

/** The p-th percentile (nearest rank). */
export const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}
export const f = (x: number) => x.toFixed(1)

/** Wall time of one whole process (ms); throws with its stderr when it fails. */
export async function timed(cmd: string[], env: Record<string, string>): Promise<number> {
  const t = performance.now()
  const p = Bun.spawn(cmd, { env, stdin: "ignore", stdout: "ignore", stderr: "pipe" })
  const err = await new Response(p.stderr).text()
  if ((await p.exited) !== 0) throw new Error(`${cmd.join(" ")} failed: ${err}`)
  return performance.now() - t
}

/** Writes the benchmarks' input: 30 s of 720p x264 and AAC in Matroska. */
export function benchInput(path: string): void {
  makeMedia([
    "-f",
    "lavfi",
    "-i",
    "testsrc2=duration=30:size=1280x720:rate=25",
    "-f",
    "lavfi",
    "-i",
    "sine=duration=30",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-c:a",
    "aac",
    "-shortest",
    path,
  ])
}

/** The process's CPU time (ms) and peak RSS (MiB), from /proc. */
export function usage(pid: number): { cpuMs: number; peakMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
  const cpuMs = (Number(fields[11]) + Number(fields[12])) * 10
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return { cpuMs, peakMiB: hwm ? Number(hwm[1]) / 1024 : NaN }
}
