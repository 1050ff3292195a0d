import { existsSync } from "node:fs"
import { join } from "node:path"

export const ROOT = join(import.meta.dir, "..", "..")
/** The compiled binary under test (built by `bun run test` before the suite runs). */
export const BIN = join(ROOT, "dist", "dffmpeg")

export function requireBinary(): string {
  if (!existsSync(BIN))
    throw new Error(`${BIN} is missing: run \`bun run build\` (or \`bun run test\`, which builds first)`)
  return BIN
}

/** Polls `fn` until it returns a truthy value or the deadline passes (no fixed sleeps in tests). */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000)
  for (;;) {
    const v = await fn()
    if (v) return v as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? "condition"}`)
    await Bun.sleep(opts.intervalMs ?? 20)
  }
}

/** Pids of processes whose command line contains `marker` (e.g. a unique output file name). */
export function pidsOf(marker: string): number[] {
  const r = Bun.spawnSync(["pgrep", "-f", "--", marker])
  return r.stdout
    .toString()
    .split("\n")
    .filter(Boolean)
    .map(Number)
    .filter((p) => p !== process.pid)
}
