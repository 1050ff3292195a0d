#!/usr/bin/env bun
/**
 * What the coordinator spends on a job (issue 13): statements, write transactions and CPU per trivial
 * attached job (`ffprobe -v error -show_format` of a one-frame file through the proxy), and signed
 * requests/s at 1, 10 and 50 connections (GET /api/v1/jobs?limit=1 as a client).
 *
 * A real cluster of the compiled binary on 127.0.0.1 (1 worker, SQLite), except the coordinator: it runs
 * from the sources in its own process (this file with `--serve`) with a store that counts every statement
 * it runs (SqliteOptions.onStatement), and reports its counters and its own CPU time when asked on stdin.
 * A write transaction is a BEGIN IMMEDIATE, or a write statement outside one (SQLite's autocommit).
 * Figures per job include what the worker's polls and heartbeats cost while the jobs run.
 * Run: `bun run bench:coordinator` (builds first if dist/dffmpeg is missing). Options: --jobs N (default 40); --linger MS (the worker's output_linger_ms, 0: none); --detail lists each statement's runs per job on stderr; --profile DIR writes the coordinator's CPU profile (markdown) into DIR.
 */
import { cpus, totalmem } from "node:os"
import { join } from "node:path"
import { Cluster } from "../test/helpers/cluster.ts"
import { Proc } from "../test/helpers/proc.ts"
import { makeMedia } from "../test/helpers/media.ts"
import { signedFetch } from "../test/helpers/signed.ts"
import { ensureBuilt, f, pct, timed, usage } from "./_common.ts"

interface Counters {
  /** Each statement's SQL and how many times it ran (`--detail`). */
  shapes?: [string, number][]
  statements: number
  selects: number
  writes: number
  transactions: number
  cpuMs: number
}

async function serve(configPath: string): Promise<void> {
  const { loadConfig } = await import("../src/shared/config/load.ts")
  const { CoordinatorConfig, heldBudgetMb } = await import("../src/shared/config/server-schema.ts")
  const { createLogger } = await import("../src/shared/log.ts")
  const { startCoordinator } = await import("../src/coordinator/index.ts")
  const { storePaths } = await import("../src/store/index.ts")
  const { createSqliteStore } = await import("../src/store/sqlite/index.ts")
  const { fileKeyring } = await import("../src/shared/auth/secret-file.ts")
  const { createHeldOutput } = await import("../src/store/held.ts")
  const { config, base } = await loadConfig("coordinator", CoordinatorConfig, configPath, {})
  const log = createLogger({ level: "info" })
  const paths = storePaths(config, base)
  const n: Omit<Counters, "cpuMs"> = { statements: 0, selects: 0, writes: 0, transactions: 0 }
  let inTx = false
  const shapes = new Map<string, number>()
  const store = createSqliteStore({
    path: paths.database,
    keys: fileKeyring(paths.secret!),
    held: createHeldOutput(heldBudgetMb(config) * 1024 * 1024),
    onStatement: (sql) => {
      n.statements++
      shapes.set(sql, (shapes.get(sql) ?? 0) + 1)
      const verb = sql.trimStart().slice(0, 7).toLowerCase()
      if (verb.startsWith("begin")) {
        inTx = true
        n.transactions++
      } else if (verb.startsWith("commit") || verb.startsWith("rollbac")) inTx = false
      else if (verb.startsWith("select")) n.selects++
      else if (/^(insert|update|delete|replace)/.test(verb)) {
        n.writes++
        if (!inTx) n.transactions++
      }
    },
  })
  await store.migrate()
  await startCoordinator(config, { log, base, store })
  for await (const _ of console) {
    const u = process.cpuUsage()
    process.stdout.write(JSON.stringify({ ...n, cpuMs: (u.user + u.system) / 1000, shapes: [...shapes] }) + "\n")
  }
  // The bench closed our stdin: exit on our own, so that `--cpu-prof` writes its profile.
  process.exit(0)
}

if (process.argv[2] === "--serve") {
  await serve(process.argv[3]!)
} else {
  await main()
}

async function main() {
  const jobs = Number(process.argv[process.argv.indexOf("--jobs") + 1]) || 40
  ensureBuilt()
  let stats!: () => Promise<Counters>
  let stopProfiled!: () => Promise<void>
  const compiledStart = Cluster.prototype.startCoordinator
  // The coordinator from the sources, with counters (see the header).
  Cluster.prototype.startCoordinator = async function (this: Cluster) {
    // `--profile DIR`: the coordinator writes a CPU profile (markdown) there when it exits.
    const pi = process.argv.indexOf("--profile")
    const prof = pi > 0 ? ["--cpu-prof-md", `--cpu-prof-dir=${process.argv[pi + 1]}`] : []
    const p = Bun.spawn(["bun", ...prof, join(import.meta.dir, "coordinator.ts"), "--serve", this.coordinatorConfig], {
      cwd: this.dir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: this.dir },
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    })
    this.coordinator = new Proc("coordinator", p)
    const m = await this.coordinator.waitForLine(/listening on (https?:\/\/127\.0\.0\.1:(\d+))/)
    this.url = m[1]!
    this.port = Number(m[2])
    const lines = p.stdout.pipeThrough(new TextDecoderStream()).getReader()
    let buf = ""
    stopProfiled = async () => {
      p.stdin.end()
      await p.exited
    }
    stats = async () => {
      p.stdin.write("stats\n")
      p.stdin.flush()
      while (!buf.includes("\n")) {
        const r = await lines.read()
        if (r.done) throw new Error("coordinator exited")
        buf += r.value
      }
      const i = buf.indexOf("\n")
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      return JSON.parse(line)
    }
    return this.coordinator
  }
  // The worker's `output_linger_ms` (`--linger MS`; default: its own).
  const li = process.argv.indexOf("--linger")
  const workerConfig = li > 0 ? { output_linger_ms: Number(process.argv[li + 1]) } : undefined
  await using c = await Cluster.start({ workers: 1, workerConfig })
  const { probe, env } = tinyProbe(c)
  for (let i = 0; i < 5; i++) await timed(probe, env)
  // The same span idle, so that the worker's background traffic can be told apart.
  const walls: number[] = []
  const a = await stats()
  for (let i = 0; i < jobs; i++) walls.push(await timed(probe, env))
  const b = await stats()
  const span = walls.reduce((x, y) => x + y, 0)
  const i0 = await stats()
  await Bun.sleep(span)
  const i1 = await stats()
  // Profiled: the jobs (and the idle span) only; the request rates below are not measured.
  const profiled = process.argv.includes("--profile")
  if (profiled) await stopProfiled()
  if (process.argv.includes("--detail")) {
    const was = new Map(a.shapes)
    const top = b.shapes!.map(([q, n]) => [q, (n - (was.get(q) ?? 0)) / jobs] as const).filter(([, n]) => n > 0)
    for (const [q, n] of top.sort((x, y) => y[1] - x[1]))
      console.error(n.toFixed(2).padStart(6), q.slice(0, 220) + (q.length > 220 ? " ..." + q.slice(-160) : ""))
  }
  const per = (k: Exclude<keyof Counters, "shapes">) => (b[k] - a[k]) / jobs
  const idle = (k: Exclude<keyof Counters, "shapes">) => (i1[k] - i0[k]) / jobs

  const key = c.key("client1")
  const rates: { conns: number; perSec: number }[] = []
  for (const conns of profiled ? [] : [1, 10, 50]) {
    const total = conns === 1 ? 1000 : 4000
    let next = 0
    const t = performance.now()
    await Promise.all(
      Array.from({ length: conns }, async () => {
        while (next++ < total) {
          const r = await signedFetch(c.url, {
            client: "client1",
            key,
            method: "GET",
            path: "/api/v1/jobs",
            query: "limit=1",
          })
          if (r.status !== 200) throw new Error(`GET /api/v1/jobs: ${r.status} ${await r.text()}`)
          await r.arrayBuffer()
        }
      }),
    )
    rates.push({ conns, perSec: total / ((performance.now() - t) / 1000) })
  }

  // The same jobs against the compiled coordinator (minified, bytecode: what users run), CPU from /proc.
  Cluster.prototype.startCoordinator = compiledStart
  const compiled = await compiledCpu(jobs, workerConfig)

  const row = (name: string, k: Exclude<keyof Counters, "shapes">, digits = 1) =>
    `| ${name} | ${per(k).toFixed(digits)} | ${idle(k).toFixed(digits)} | ${(per(k) - idle(k)).toFixed(digits)} |`
  console.log(
    [
      `### bench:coordinator, ${new Date().toISOString().slice(0, 10)}`,
      "",
      `Machine: ${cpus()[0]?.model ?? "?"} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Bun ${Bun.version}. ` +
        `${jobs} trivial attached jobs (\`ffprobe -v error -show_format\` of a one-frame file), one at a time; ` +
        `wall p50 ${f(pct(walls, 50))} ms, p90 ${f(pct(walls, 90))} ms.`,
      "",
      "| per job | while jobs ran | same span idle | difference |",
      "|---|---:|---:|---:|",
      row("statements (BEGIN/COMMIT included)", "statements"),
      row("SELECTs", "selects"),
      row("INSERT/UPDATE/DELETE", "writes"),
      row("write transactions", "transactions"),
      row("coordinator CPU (ms), from the sources", "cpuMs", 2),
      `| coordinator CPU (ms), compiled binary | ${compiled.busy.toFixed(2)} | ${compiled.idle.toFixed(2)} | ${(compiled.busy - compiled.idle).toFixed(2)} |`,
      "",
      "| signed GET /api/v1/jobs?limit=1 | requests/s |",
      "|---|---:|",
      ...rates.map((r) => `| ${r.conns} connection(s) | ${r.perSec.toFixed(0)} |`),
    ].join("\n"),
  )
}

/** Coordinator CPU per job (ms) of the compiled binary: `jobs` probes, then the same span idle. */
async function compiledCpu(jobs: number, workerConfig?: Record<string, unknown>) {
  await using c = await Cluster.start({ workers: 1, workerConfig })
  const { probe, env } = tinyProbe(c)
  for (let i = 0; i < 5; i++) await timed(probe, env)
  const pid = c.coordinator!.pid
  const a = usage(pid).cpuMs
  let span = 0
  for (let i = 0; i < jobs; i++) span += await timed(probe, env)
  const b = usage(pid).cpuMs
  await Bun.sleep(span)
  const i1 = usage(pid).cpuMs
  return { busy: (b - a) / jobs, idle: (i1 - b) / jobs }
}

/** The trivial job: a proxied `ffprobe -v error -show_format` of a one-frame file made in the cluster's storage. */
function tinyProbe(c: Cluster) {
  makeMedia([
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=64x64:rate=1:duration=1",
    "-frames:v",
    "1",
    join(c.storage, "tiny.mkv"),
  ])
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: c.dir, DFFMPEG_CLIENT_CONFIG: c.clientConfig }
  return { env, probe: [join(c.binDir, "ffprobe"), "-v", "error", "-show_format", join(c.clientMedia, "tiny.mkv")] }
}
