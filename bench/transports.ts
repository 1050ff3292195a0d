#!/usr/bin/env bun
/**
 * Broker transports benchmark (issue 15). For each transport (HTTP, MQTT through the local Mosquitto,
 * RabbitMQ through the local RabbitMQ) it starts a real cluster of the compiled binary (coordinator + 1
 * worker, SQLite) with the worker and the proxy on that transport only, then times `--runs N` (default
 * 100) whole `ffprobe -v error -show_format` calls through the proxy on a 30 s 720p mkv, interleaved with
 * local ffprobe on the same file: p50 / p90 / p99 and the overhead over local at each. Target: a broker
 * adds no more than HTTP does (p50 within 5 ms of HTTP's). Prints a Markdown report for
 * docs/performance.md. Run: `bun run bench:transports` (builds first if dist/dffmpeg is missing).
 */
import { cpus, totalmem } from "node:os"
import { copyFileSync } from "node:fs"
import { join } from "node:path"
import { brokerTransports } from "../test/helpers/brokers.ts"
import { Cluster } from "../test/helpers/cluster.ts"
import { benchInput, ensureBuilt, f, pct, timed } from "./_common.ts"

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) || dflt : dflt
}
const runs = arg("--runs", 100)
ensureBuilt()

const args = ["-v", "error", "-show_format"]
const rows: string[] = []
let input: string | undefined
for (const kind of ["http_polling", "mqtt", "rabbitmq"] as const) {
  const transports = kind === "http_polling" ? undefined : brokerTransports(kind)
  const c = await Cluster.start({
    workers: 1,
    ...(transports
      ? { coordinatorConfig: { transports }, workerConfig: { transports }, clientConfig: { transports } }
      : {}),
  })
  try {
    const file = join(c.storage, "bench.mkv")
    if (!input) {
      benchInput(file)
      input = join(c.dir, "..", `dffmpeg-bench-${process.pid}.mkv`)
      copyFileSync(file, input)
    } else copyFileSync(input, file)
    const env = { PATH: process.env.PATH!, HOME: c.dir, DFFMPEG_CLIENT_CONFIG: c.clientConfig }
    const proxy = join(c.binDir, "ffprobe")
    const remoteFile = join(c.clientMedia, "bench.mkv")
    for (let i = 0; i < 5; i++) {
      await timed(["ffprobe", ...args, file], env)
      await timed([proxy, ...args, remoteFile], env)
    }
    const local: number[] = []
    const remote: number[] = []
    for (let i = 0; i < runs; i++) {
      local.push(await timed(["ffprobe", ...args, file], env))
      remote.push(await timed([proxy, ...args, remoteFile], env))
    }
    const over = (p: number) => pct(remote, p) - pct(local, p)
    rows.push(
      `| ${kind} | ${f(pct(local, 50))} | ${f(pct(remote, 50))} | ${f(pct(remote, 90))} | ${f(pct(remote, 99))} | +${f(over(50))} | +${f(over(90))} | +${f(over(99))} |`,
    )
  } finally {
    await c.stop()
  }
}
console.log(`## Broker transports (bench/transports.ts), ${new Date().toISOString().slice(0, 10)}`)
console.log(
  `Machine: ${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GiB; ${runs} runs each, ffprobe -show_format of a 30 s 720p mkv, whole process wall time (ms).\n`,
)
console.log("| transport | local p50 | proxy p50 | proxy p90 | proxy p99 | overhead p50 | p90 | p99 |")
console.log("|---|---|---|---|---|---|---|---|")
for (const r of rows) console.log(r)
