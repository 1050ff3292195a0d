#!/usr/bin/env bun
/**
 * Proxy overhead benchmark (issue: walking skeleton). Starts a real cluster of the compiled binary on
 * 127.0.0.1 (coordinator + 1 worker, SQLite), then:
 *  1. --runs N (default 100) interleaved runs of local ffprobe vs ffprobe through the proxy on a 30 s 720p
 *     mkv, whole process wall time: min, p50, p90, p99, max, and the overhead (proxy − local) at each
 *     percentile (targets, issue 13: p50 <= +10 ms, p99 <= +25 ms);
 *  2. --trivial N (default 200) trivial calls (`ffprobe -version`) 10 and then 50 at a time: jobs/s and
 *     per-call latency, local vs proxy at the same concurrency (target: >= 90% of local's jobs/s).
 * Prints a Markdown report (paste into docs/performance.md). Run: `bun run bench:proxy` (builds first
 * if dist/dffmpeg is missing).
 */
import { cpus, totalmem } from "node:os"
import { join } from "node:path"
import { Cluster } from "../test/helpers/cluster.ts"
import { benchInput, ensureBuilt, f, pct, timed } from "./_common.ts"

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) || dflt : dflt
}
const runs = arg("--runs", 100)
const trivial = arg("--trivial", 200)
const CONCURRENCY = [10, 50]
ensureBuilt()

const c = await Cluster.start({ workers: 1, maxJobs: Math.max(...CONCURRENCY) })
try {
  const input = join(c.storage, "bench.mkv")
  benchInput(input)
  const probeArgs = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
  const env = { PATH: process.env.PATH!, HOME: c.dir, DFFMPEG_CLIENT_CONFIG: c.clientConfig }
  const proxy = join(c.binDir, "ffprobe")

  // Warm-up: page cache, worker and coordinator connections.
  for (let i = 0; i < 3; i++) {
    await timed(["ffprobe", ...probeArgs, input], env)
    await timed([proxy, ...probeArgs, join(c.clientMedia, "bench.mkv")], env)
  }
  const local: number[] = []
  const remote: number[] = []
  for (let i = 0; i < runs; i++) {
    local.push(await timed(["ffprobe", ...probeArgs, input], env))
    remote.push(await timed([proxy, ...probeArgs, join(c.clientMedia, "bench.mkv")], env))
  }

  const batch = async (cmd: string[], concurrency: number) => {
    const lat: number[] = []
    const t = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < trivial) {
          next++
          lat.push(await timed(cmd, env))
        }
      }),
    )
    return { rate: trivial / ((performance.now() - t) / 1000), lat }
  }
  const batches = []
  for (const n of CONCURRENCY) {
    const tl = await batch(["ffprobe", "-version"], n)
    const tr = await batch([proxy, "-version"], n)
    batches.push({ n, tl, tr })
  }

  const cpu = cpus()[0]?.model ?? "unknown CPU"
  const ff = Bun.spawnSync(["ffprobe", "-version"]).stdout.toString().split("\n")[0]
  const lines = [
    `### ${new Date().toISOString().slice(0, 10)} — ${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}, ${ff}`,
    "",
    `ffprobe \`${probeArgs.join(" ")}\` on a 30 s 720p mkv, whole process, ${runs} interleaved runs each (ms):`,
    "",
    "| | min | p50 | p90 | p99 | max |",
    "|---|---|---|---|---|---|",
    `| local ffprobe | ${f(Math.min(...local))} | ${f(pct(local, 50))} | ${f(pct(local, 90))} | ${f(pct(local, 99))} | ${f(Math.max(...local))} |`,
    `| through the proxy | ${f(Math.min(...remote))} | ${f(pct(remote, 50))} | ${f(pct(remote, 90))} | ${f(pct(remote, 99))} | ${f(Math.max(...remote))} |`,
    `| overhead | ${f(Math.min(...remote) - Math.min(...local))} | **+${f(pct(remote, 50) - pct(local, 50))}** | +${f(pct(remote, 90) - pct(local, 90))} | **+${f(pct(remote, 99) - pct(local, 99))}** | +${f(Math.max(...remote) - Math.max(...local))} |`,
    "",
    `${trivial} trivial calls (\`ffprobe -version\`) at each concurrency:`,
    "",
    "| concurrency | | jobs/s | of local | p50 ms | p90 ms | p99 ms |",
    "|---|---|---|---|---|---|---|",
    ...batches.flatMap(({ n, tl, tr }) => [
      `| ${n} | local | ${f(tl.rate)} | | ${f(pct(tl.lat, 50))} | ${f(pct(tl.lat, 90))} | ${f(pct(tl.lat, 99))} |`,
      `| ${n} | through the proxy | ${f(tr.rate)} | **${f((100 * tr.rate) / tl.rate)}%** | ${f(pct(tr.lat, 50))} | ${f(pct(tr.lat, 90))} | ${f(pct(tr.lat, 99))} |`,
    ]),
    "",
  ]
  console.log(lines.join("\n"))
} finally {
  await c.stop()
}
