import { expect, test } from "bun:test"
import { join } from "node:path"
import type { Summary } from "../../scripts/fuzz.ts"
import { ROUTES } from "../../scripts/fuzz/routes.ts"
import { ROOT, requireBinary } from "../helpers/bin.ts"

/**
 * `bun run fuzz` with its CI default of 10,000 requests against the compiled coordinator and a real
 * worker. The seed is random and printed: a failure reproduces with `bun run fuzz --seed N`.
 */
test("10,000 fuzzed requests: no 5xx, no crash, no spawn from a rejected input, RSS bounded", async () => {
  requireBinary()
  const seed = (Math.random() * 2 ** 31) >>> 0
  const p = Bun.spawn(
    [
      "bun",
      join(ROOT, "scripts", "fuzz.ts"),
      "--count",
      "10000",
      "--max-seconds",
      "540",
      "--seed",
      String(seed),
      "--json",
      "--quiet",
    ],
    {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" },
    },
  )
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
  let s: Summary
  try {
    s = JSON.parse(out)
  } catch {
    throw new Error(`fuzz (seed ${seed}) printed no summary (exit ${code}):\n${err.slice(-4000)}\n${out.slice(-2000)}`)
  }
  const where = `seed ${seed}; reproduce with: bun run fuzz --seed ${seed}`
  expect({ violations: s.violations, where }).toEqual({ violations: [], where })
  expect({ code, where }).toEqual({ code: 0, where })
  expect(s.sent).toBe(10_000)
  // The checks must have had something to check: every route was hit, jobs were accepted and ran,
  // hostile arguments were sent, and refusals of every kind happened.
  expect(Object.keys(s.byRoute).sort()).toEqual(ROUTES.map((r) => r.name).sort())
  expect(s.jobs.accepted).toBeGreaterThan(0)
  expect(s.jobs.acceptedHostile).toBeGreaterThan(0)
  expect(s.spawns.fromAcceptedJobs).toBeGreaterThan(0)
  expect(s.spawns.unexplained).toBe(0)
  for (const status of ["200", "201", "400", "401", "403", "404", "413"])
    expect({ status, n: s.byStatus[status] ?? 0 }).not.toEqual({ status, n: 0 })
  // The only 5xx allowed is Bun's own 505 to a raw request line with a malformed HTTP version.
  expect(Object.keys(s.byStatus).filter((k) => k.startsWith("5") && k !== "505")).toEqual([])
  expect(Object.entries(s.byRoute).reduce((n, [route, c]) => n + (route === "raw HTTP" ? 0 : c["5xx"]), 0)).toBe(0)
  expect(s.rss.peakMb).toBeLessThan(s.rss.boundMb)
  console.log(
    `fuzz seed ${seed}: ${s.sent} requests in ${s.elapsedSeconds} s (${s.requestsPerSecond} req/s), RSS peak ${s.rss.peakMb} MB, ${s.jobs.accepted} jobs accepted, ${s.spawns.fromAcceptedJobs} spawns`,
  )
}, 600_000)
