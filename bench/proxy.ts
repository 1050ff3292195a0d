#!/usr/bin/env bun
/**
 * Proxy overhead benchmark (issue: walking skeleton). Starts a real cluster of the compiled binary on
 * 127.0.0.1 (coordinator + 1 worker, SQLite), then:
 *  1. 30 interleaved runs of local ffprobe vs ffprobe through the proxy on a 30 s 720p mkv, whole process
 *     wall time: min, p50, p90, p99, max, and the overhead (proxy − local) at each percentile;
 *  2. 100 trivial calls (`ffprobe -version`), 10 at a time: jobs/s and per-call latency, local vs proxy.
 * Prints a Markdown report (paste into docs/performance.md). Run: `bun run bench:proxy` (builds first
 * if dist/dffmpeg is missing). Options: --runs N (default 30).
 */
import { cpus, totalmem } from "node:os"
import { join } from "node:path"
import { Cluster } from "../test/helpers/cluster.ts"
import { benchInput, ensureBuilt, f, pct, timed } from "./_common.ts"

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 30
ensureBuilt()

const c = await Cluster.start({ workers: 1, maxJobs: 10 })
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

  const batch = async (cmd: string[]) => {
    const lat: number[] = []
    const t = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < 100) {
          next++
          lat.push(await timed(cmd, env))
        }
      }),
    )
    return { rate: 100 / ((performance.now() - t) / 1000), lat }
  }
  const tl = await batch(["ffprobe", "-version"])
  const tr = await batch([proxy, "-version"])

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
    "100 trivial calls (`ffprobe -version`), 10 at a time:",
    "",
    "| | jobs/s | p50 ms | p90 ms | max ms |",
    "|---|---|---|---|---|",
    `| local | ${f(tl.rate)} | ${f(pct(tl.lat, 50))} | ${f(pct(tl.lat, 90))} | ${f(Math.max(...tl.lat))} |`,
    `| through the proxy | ${f(tr.rate)} | ${f(pct(tr.lat, 50))} | ${f(pct(tr.lat, 90))} | ${f(Math.max(...tr.lat))} |`,
    "",
  ]
  console.log(lines.join("\n"))
} finally {
  await c.stop()
}
