#!/usr/bin/env bun
/**
 * Info-command latency (issue 12 item 4): whole-process wall time of `ffmpeg -hide_banner -h encoder=X`
 * run locally, through the proxy the first time (the coordinator asks its reference worker: a job pinned
 * to it, a worker round trip) and through the proxy again (answered from the coordinator's cache: the job
 * is created already ended, no worker). Distinct encoders make each first call a cache miss. Also
 * `ffmpeg -version` repeated. Starts a real cluster of the compiled binary on 127.0.0.1 (coordinator + 1
 * worker, SQLite). Prints a Markdown report (paste into docs/performance.md).
 * Run: `bun run bench:info` (builds first if dist/dffmpeg is missing). Options: --runs N (default 20).
 * `infoLatency(cluster, runs)` is exported for other benchmarks (bench:lanes) to call on their cluster.
 */
import { cpus, totalmem } from "node:os"
import { join } from "node:path"
import { Cluster } from "../test/helpers/cluster.ts"
import { BIN } from "../test/helpers/bin.ts"
import { ensureBuilt, f, pct, timed } from "./_common.ts"
import { parseCodecs } from "../src/worker/capabilities.ts"

export interface InfoLatency {
  runs: number
  local: number[]
  uncached: number[]
  cached: number[]
  versionCached: number[]
  /** Ten identical uncached commands at once (`-h filter=X`, a new X each round): each call's time. */
  burst: number[]
  /** The same ten at once run locally. */
  localBurst: number[]
}

const clientEnv = (c: Cluster) => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: c.dir,
  DFFMPEG_CLIENT_CONFIG: c.clientConfig,
})

/** A media server starting: the same question ten times at once, never asked before (five rounds). */
export async function burstLatency(c: Cluster, cmd: (args: string[]) => string[]): Promise<number[]> {
  const out: number[] = []
  for (const name of ["scale", "overlay", "yadif", "crop", "pad"]) {
    const args = cmd(["-hide_banner", "-h", `filter=${name}`])
    out.push(...(await Promise.all(Array.from({ length: 10 }, () => timed(args, clientEnv(c))))))
  }
  return out
}

/** Runs the measurement on a started cluster; each encoder name must not have been asked before. */
export async function infoLatency(c: Cluster, runs: number): Promise<InfoLatency> {
  const listed = Bun.spawnSync(["ffmpeg", "-hide_banner", "-encoders"], { stdout: "pipe" }).stdout.toString()
  const encoders = parseCodecs(listed).slice(0, runs)
  const env = clientEnv(c)
  const proxy = join(c.binDir, "ffmpeg")
  const out: InfoLatency = {
    runs: encoders.length,
    local: [],
    uncached: [],
    cached: [],
    versionCached: [],
    burst: [],
    localBurst: [],
  }
  // Warm up: the binary's pages, the worker's first job, the coordinator's first submission.
  await timed([proxy, "-version"], env)
  for (const e of encoders) {
    const args = ["-hide_banner", "-h", `encoder=${e}`]
    out.local.push(await timed(["ffmpeg", ...args], env))
    out.uncached.push(await timed([proxy, ...args], env))
    out.cached.push(await timed([proxy, ...args], env))
    out.versionCached.push(await timed([proxy, "-version"], env))
  }
  out.localBurst = await burstLatency(c, (args) => ["ffmpeg", ...args])
  out.burst = await burstLatency(c, (args) => [proxy, ...args])
  return out
}

export function infoReport(r: InfoLatency, noCacheBurst?: number[]): string {
  const row = (name: string, xs: number[]) =>
    `| ${name} | ${f(pct(xs, 0))} | ${f(pct(xs, 50))} | ${f(pct(xs, 90))} | ${f(pct(xs, 100))} |`
  return [
    `${r.runs} runs each, ms (whole process):`,
    "",
    "| | min | p50 | p90 | max |",
    "|---|---|---|---|---|",
    row("local `ffmpeg -h encoder=X`", r.local),
    row("proxy, first time (reference worker)", r.uncached),
    row("proxy, again (info cache)", r.cached),
    row("proxy `-version` (info cache)", r.versionCached),
    row("local, 10 identical at once (each call)", r.localBurst),
    row("proxy, 10 identical at once, uncached (each call)", r.burst),
    ...(noCacheBurst ? [row("same, `info_cache_entries: 0` (each call)", noCacheBurst)] : []),
    "",
    `cache saves ${f(pct(r.uncached, 50) - pct(r.cached, 50))} ms at p50; cached overhead over local ${f(pct(r.cached, 50) - pct(r.local, 50))} ms at p50`,
  ].join("\n")
}

if (import.meta.main) {
  const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 20
  ensureBuilt()
  const c = await Cluster.start({ workers: 1, maxJobs: 4 })
  let r: InfoLatency
  try {
    r = await infoLatency(c, runs)
  } finally {
    await c.stop()
  }
  // The same burst without the cache (and so without sharing one answer): every call runs on the worker.
  const off = await Cluster.start({ workers: 1, maxJobs: 4, coordinatorConfig: { info_cache_entries: 0 } })
  let noCache: number[]
  try {
    noCache = await burstLatency(off, (args) => [join(off.binDir, "ffmpeg"), ...args])
  } finally {
    await off.stop()
  }
  const cpu = cpus()[0]?.model ?? "?"
  console.log(
    `### ${new Date().toISOString().slice(0, 10)} — ${cpus().length} vCPU ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}\n`,
  )
  console.log(infoReport(r, noCache))
}
