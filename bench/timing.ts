import { existsSync } from "node:fs"

/** What the benchmarks that time whole processes share: percentiles, the number format, one timed run. */

/** The p-th percentile (nearest rank) of `xs`. */
export const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}
export const f = (x: number) => x.toFixed(1)

/** Wall time (ms) of one process run to its end; throws with its stderr when it fails. */
export async function timed(cmd: string[], env: Record<string, string>): Promise<number> {
  const t = performance.now()
  const p = Bun.spawn(cmd, { env, stdin: "ignore", stdout: "ignore", stderr: "pipe" })
  const err = await new Response(p.stderr).text()
  if ((await p.exited) !== 0) throw new Error(`${cmd.join(" ")} failed: ${err}`)
  return performance.now() - t
}

/** Builds dist/dffmpeg first when it is missing (benchmarks run the compiled binary). */
export function ensureBinary(bin: string, root: string): void {
  if (existsSync(bin)) return
  Bun.spawnSync(["bun", "scripts/build.ts", "--single"], { stdout: "inherit", stderr: "inherit", cwd: root })
}
