#!/usr/bin/env bun
/**
 * Probe lane benchmark (issue 12). Starts a real cluster of the compiled binary on 127.0.0.1
 * (coordinator + 1 worker with max_jobs 2 and max_probe_jobs 4, SQLite), then in one run:
 *  1. idle cluster: local ffprobe vs ffprobe through the proxy on a 30 s 720p mkv, interleaved;
 *  2. every transcode slot busy (two real-time transcodes, light on CPU so that only the scheduling shows):
 *     the same pair again, interleaved;
 *  3. an info command (`ffmpeg -version`) through the proxy, idle and busy, against local.
 * Whole-process wall times; prints a Markdown report (paste into docs/performance.md). Run:
 * `bun run bench:lanes` (builds first if dist/dffmpeg is missing). Options: --runs N (default 20).
 */
import { cpus, totalmem } from "node:os"
import { join } from "node:path"
import { Cluster } from "../test/helpers/cluster.ts"
import { waitFor } from "../test/helpers/bin.ts"
import { slowEncode } from "../test/helpers/media.ts"
import { benchInput, ensureBuilt, f, pct, timed } from "./_common.ts"

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 20
ensureBuilt()

const c = await Cluster.start({ workers: 1, maxJobs: 2, workerConfig: { max_probe_jobs: 4 } })
try {
  const input = join(c.storage, "bench.mkv")
  benchInput(input)
  const probeArgs = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
  const env = { PATH: process.env.PATH!, HOME: c.dir, DFFMPEG_CLIENT_CONFIG: c.clientConfig }
  const proxyProbe = [join(c.binDir, "ffprobe"), ...probeArgs, join(c.clientMedia, "bench.mkv")]
  const localProbe = ["ffprobe", ...probeArgs, input]
  const proxyInfo = [join(c.binDir, "ffmpeg"), "-version"]
  const localInfo = ["ffmpeg", "-version"]

  const series = async (cmds: string[][]) => {
    const out = cmds.map(() => [] as number[])
    for (let i = 0; i < 3; i++) for (const cmd of cmds) await timed(cmd, env)
    for (let i = 0; i < runs; i++) for (const [k, cmd] of cmds.entries()) out[k].push(await timed(cmd, env))
    return out
  }

  const [idleLocal, idleProxy, idleInfoLocal, idleInfo] = await series([localProbe, proxyProbe, localInfo, proxyInfo])

  // Fill both transcode slots with real-time encodes that outlast the measurement.
  const transcodes = [1, 2].map((i) =>
    Bun.spawn([join(c.binDir, "ffmpeg"), ...slowEncode(c.clientMedia, `busy-${i}.mkv`, 600)], {
      env,
      stdin: "pipe",
      stdout: "ignore",
      stderr: "ignore",
    }),
  )
  await waitFor(async () => (await c.jobs()).filter((j) => j.status === "running").length === 2, {
    timeoutMs: 20_000,
    what: "both transcode slots to be busy",
  })
  const [busyLocal, busyProxy, busyInfoLocal, busyInfo] = await series([localProbe, proxyProbe, localInfo, proxyInfo])
  const stillBusy = (await c.jobs()).filter((j) => j.status === "running").length
  for (const t of transcodes) t.kill("SIGINT")
  await Promise.all(transcodes.map((t) => t.exited))

  const row = (name: string, xs: number[]) =>
    `| ${name} | ${f(Math.min(...xs))} | ${f(pct(xs, 50))} | ${f(pct(xs, 90))} | ${f(Math.max(...xs))} |`
  const cpu = cpus()[0]?.model ?? "unknown CPU"
  const ff = Bun.spawnSync(["ffprobe", "-version"]).stdout.toString().split("\n")[0]
  const lines = [
    `### ${new Date().toISOString().slice(0, 10)} — probe lane, ${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}, ${ff}`,
    "",
    `One worker, \`max_jobs: 2\`, \`max_probe_jobs: 4\`. "busy": both transcode slots hold a real-time 160×120 x264 encode through the proxy (${stillBusy} still running at the end). ffprobe \`${probeArgs.join(" ")}\` on a 30 s 720p mkv and \`ffmpeg -version\`, whole process, ${runs} interleaved runs each (ms):`,
    "",
    "| | min | p50 | p90 | max |",
    "|---|---|---|---|---|",
    row("local ffprobe, idle", idleLocal),
    row("proxied ffprobe, idle cluster", idleProxy),
    row("local ffprobe, while busy", busyLocal),
    row("proxied ffprobe, every transcode slot busy", busyProxy),
    row("local `ffmpeg -version`, idle", idleInfoLocal),
    row("proxied `ffmpeg -version`, idle cluster", idleInfo),
    row("local `ffmpeg -version`, while busy", busyInfoLocal),
    row("proxied `ffmpeg -version`, every transcode slot busy", busyInfo),
    "",
    `Busy − idle, proxied ffprobe: p50 ${f(pct(busyProxy, 50) - pct(idleProxy, 50))} ms, p90 ${f(pct(busyProxy, 90) - pct(idleProxy, 90))} ms (local moved p50 ${f(pct(busyLocal, 50) - pct(idleLocal, 50))} ms under the same load). Proxied \`-version\`: p50 ${f(pct(busyInfo, 50) - pct(idleInfo, 50))} ms.`,
    "",
  ]
  console.log(lines.join("\n"))
} finally {
  await c.stop()
}
