#!/usr/bin/env bun
/**
 * Several coordinators on one database (issue 14), per engine (SQLite, PostgreSQL, MariaDB) and for 1
 * and 2 coordinators of the compiled binary on 127.0.0.1 sharing it:
 *  1. proxied `ffprobe` overhead: --runs N (default 30) interleaved runs of local ffprobe and ffprobe
 *     through the proxy on a 30 s 720p mkv, whole process wall time, overhead (proxy − local) at p50 and
 *     p99. With 2 coordinators the client submits to the first and the worker polls the second, so every
 *     job crosses coordinators;
 *  2. submit → exec: for each of those proxied jobs, from its `queued` event (the submitting coordinator
 *     stored it) to its `running` event (the worker's coordinator stored the worker's start, sent once
 *     ffprobe was spawned), from the job's timeline. A worker whose coordinator is not told of a job
 *     submitted elsewhere learns of it when its poll ends (`poll_wait_seconds`, --poll-wait S, default 2 s
 *     here, 25 s by default in production) or when the poll re-reads: the figure is what the notifier
 *     in the build does, whatever it is (/health's notifier kind is printed); and to its `completed`
 *     event (the worker's exit stored): the rest of the proxy's wall is the outcome reaching the caller;
 *  3. claims/s at store level: --claims N (default 400) queued jobs, then K = 1, 2 and 4 stores, each in a
 *     process of its own with its own pool (as coordinators are), race on the one database to assign
 *     every job (each walks the ids in its own random order); every job must be assigned exactly once.
 *     The time is from the go given to all to the last one's end (their start-up not counted).
 * Local baselines are measured in the same run. Prints a Markdown report (for docs/performance.md) and,
 * with --json FILE, writes the figures as JSON. --quick: --runs 8 --claims 100 --poll-wait 1.
 * --engines sqlite,postgres,mysql picks engines. Run: `bun run bench:cluster` (builds when dist/dffmpeg is
 * missing). The server databases are fresh ones on the test services (test/helpers/databases.ts).
 */
import { cpus, loadavg, totalmem } from "node:os"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Cluster } from "../test/helpers/cluster.ts"
import { freshDatabase, type ServerEngine } from "../test/helpers/databases.ts"
import { mappedJob, registration } from "../test/helpers/fixtures.ts"
import { benchInput, ensureBuilt, f, pct, timed } from "./_common.ts"
import type { DatabaseConfig } from "../src/shared/config/server-schema.ts"

type Engine = "sqlite" | ServerEngine

const argv = process.argv
if (argv.includes("--help") || argv.includes("-h")) {
  console.log(
    "usage: bun bench/cluster.ts [--quick] [--runs N] [--claims N] [--poll-wait S] [--engines sqlite,postgres,mysql] [--json FILE]",
  )
  process.exit(0)
}
const quick = argv.includes("--quick")
const arg = (name: string, dflt: number) => {
  const i = argv.indexOf(name)
  return i > 0 ? Number(argv[i + 1]) || dflt : dflt
}
const runs = arg("--runs", quick ? 8 : 30)
const claims = arg("--claims", quick ? 100 : 400)
const pollWait = arg("--poll-wait", quick ? 1 : 2)
const ei = argv.indexOf("--engines")
const engines = (ei > 0 ? argv[ei + 1]!.split(",") : ["sqlite", "postgres", "mysql"]) as Engine[]
const ji = argv.indexOf("--json")
const jsonFile = ji > 0 ? argv[ji + 1] : undefined
const STORES = [1, 2, 4]

interface ProxyFigures {
  coordinators: number
  notifier: string
  localP50: number
  localP99: number
  proxyP50: number
  proxyP99: number
  overheadP50: number
  overheadP99: number
  submitToExecP50: number
  submitToExecP99: number
  submitToExecMax: number
  /** queued → completed (the worker's exit stored): the rest of the proxy's wall is the outcome reaching the caller. */
  submitToEndP50: number
}

/** The database a run uses: SQLite's file in the cluster's directory, or a fresh server database. */
async function databaseFor(engine: Engine): Promise<{ config: DatabaseConfig; drop: () => Promise<void> }> {
  if (engine === "sqlite")
    return { config: { engine: "sqlite", path: "./coordinator.db" } as DatabaseConfig, drop: async () => {} }
  const db = await freshDatabase(engine)
  return { config: db.config, drop: () => db.drop() }
}

async function proxyRun(engine: Engine, coordinators: 1 | 2): Promise<ProxyFigures> {
  const db = await databaseFor(engine)
  // port 0 in the config: the second coordinator gets a port of its own.
  const c = await Cluster.start({
    workers: 1,
    startWorkers: false,
    coordinatorConfig: { database: db.config, poll_wait_seconds: pollWait },
  })
  // Stopped with the cluster.
  let second: { port: number } | undefined
  try {
    if (coordinators === 2) second = await c.startSecondCoordinator()
    await c.startWorker("worker1", second ? { coordinator: { port: second.port } } : {})
    const health = (await (await fetch(`${c.url}/health`)).json()) as { components?: { notifier?: { kind?: string } } }
    const notifier = health.components?.notifier?.kind ?? "unreported"
    const input = join(c.storage, "bench.mkv")
    benchInput(input)
    const args = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
    const env = { PATH: process.env.PATH!, HOME: c.dir, DFFMPEG_CLIENT_CONFIG: c.clientConfig }
    const proxy = [join(c.binDir, "ffprobe"), ...args, join(c.clientMedia, "bench.mkv")]
    const local = ["ffprobe", ...args, input]
    for (let i = 0; i < 2; i++) {
      await timed(local, env)
      await timed(proxy, env)
    }
    const before = new Set((await c.jobs()).map((j) => j.id))
    const l: number[] = []
    const r: number[] = []
    for (let i = 0; i < runs; i++) {
      l.push(await timed(local, env))
      r.push(await timed(proxy, env))
    }
    const measured = (await c.jobs()).filter((j) => !before.has(j.id))
    if (measured.length !== runs) throw new Error(`expected ${runs} jobs, found ${measured.length}`)
    const toExec: number[] = []
    const toEnd: number[] = []
    for (const j of measured) {
      const ev = (await c.job(j.id)).events as unknown as { status: string; at: number }[]
      const queued = ev.find((e) => e.status === "queued")
      const running = ev.find((e) => e.status === "running")
      const completed = ev.find((e) => e.status === "completed")
      if (!queued || !running || !completed)
        throw new Error(`job ${j.id} has no queued/running/completed events: ${JSON.stringify(ev)}`)
      toExec.push(running.at - queued.at)
      toEnd.push(completed.at - queued.at)
    }
    return {
      coordinators,
      notifier,
      localP50: pct(l, 50),
      localP99: pct(l, 99),
      proxyP50: pct(r, 50),
      proxyP99: pct(r, 99),
      overheadP50: pct(r, 50) - pct(l, 50),
      overheadP99: pct(r, 99) - pct(l, 99),
      submitToExecP50: pct(toExec, 50),
      submitToExecP99: pct(toExec, 99),
      submitToExecMax: Math.max(...toExec),
      submitToEndP50: pct(toEnd, 50),
    }
  } finally {
    await c.stop()
    await db.drop()
  }
}

interface ClaimFigures {
  stores: number
  jobs: number
  seconds: number
  perSec: number
  /** Assign calls that found the job taken by another store. */
  lost: number
}

/** The order store `seed` walks the ids in: stores collide on some jobs, not on every one in lockstep. */
function order(ids: string[], seed: number): string[] {
  const a = [...ids]
  let s = (seed * 2654435761 + 1) >>> 0
  for (let i = a.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) >>> 0
    const j = s % (i + 1)
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}

/** Opens the store a claimer (or the set-up) uses: the config's defaults, as a coordinator's loader gives them. */
async function openStore(database: DatabaseConfig, dir: string) {
  const { createStore } = await import("../src/store/index.ts")
  const { fileKeyring } = await import("../src/shared/auth/secret-file.ts")
  const { Database } = await import("../src/shared/config/server-schema.ts")
  const { parse } = await import("valibot")
  return createStore({ database: parse(Database, database), base: dir, keys: fileKeyring(join(dir, "secret")) })
}

/**
 * One claimer: a process of its own with its own store, as a coordinator is (SQLite's locks wait in
 * the process that asks, so stores of one process would wait on each other). Says `ready`, waits for a
 * line on stdin, assigns every job it can in its order, then prints what it won and its wall time.
 */
async function claimer(database: DatabaseConfig, dir: string, index: number, n: number) {
  const store = await openStore(database, dir)
  const ids = Array.from({ length: n }, (_, i) => `job${String(i).padStart(6, "0")}`)
  const mine = order(ids, index + 1)
  process.stdout.write("ready\n")
  for await (const _ of console) break
  const won: string[] = []
  let lost = 0
  const t = performance.now()
  for (const id of mine) {
    if (await store.assign(id, `w${index}`, Date.now())) won.push(id)
    else lost++
  }
  const ms = performance.now() - t
  await store.close()
  process.stdout.write(JSON.stringify({ won, lost, ms }) + "\n")
  process.exit(0)
}

/** Store-level claims: `claims` queued jobs assigned by `k` claimer processes racing on one database. */
async function claimRun(engine: Engine, k: number): Promise<ClaimFigures> {
  const dir = mkdtempSync(join(tmpdir(), "dffmpeg-bench-claims-"))
  const db = await databaseFor(engine)
  const database =
    engine === "sqlite" ? ({ engine: "sqlite", path: join(dir, "claims.db") } as DatabaseConfig) : db.config
  try {
    const setup = await openStore(database, dir)
    const t0 = Date.now()
    for (let i = 0; i < claims; i++) await setup.createJob(mappedJob(`job${String(i).padStart(6, "0")}`), t0)
    // Each claimer assigns to a worker of its own, registered with room for every job: an assignment
    // counts its worker's slots (issue 14), and the race measured is the jobs', not the slots'.
    for (let i = 0; i < k; i++) await setup.upsertWorker(`w${i}`, registration({ maxJobs: claims }), `t${i}`, t0)
    await setup.close()
    const procs = Array.from({ length: k }, (_, i) =>
      Bun.spawn(["bun", import.meta.path, "--claimer", JSON.stringify(database), dir, String(i), String(claims)], {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "inherit",
      }),
    )
    const readers = procs.map((p) => p.stdout.pipeThrough(new TextDecoderStream()).getReader())
    let bufs = procs.map(() => "")
    const line = async (i: number) => {
      while (!bufs[i]!.includes("\n")) {
        const r = await readers[i]!.read()
        if (r.done) throw new Error(`claimer ${i} exited`)
        bufs[i] += r.value
      }
      const at = bufs[i]!.indexOf("\n")
      const l = bufs[i]!.slice(0, at)
      bufs = bufs.map((b, j) => (j === i ? b.slice(at + 1) : b))
      return l
    }
    await Promise.all(procs.map((_, i) => line(i)))
    const t = performance.now()
    for (const p of procs) {
      p.stdin.write("go\n")
      p.stdin.flush()
    }
    const outs = (await Promise.all(procs.map((_, i) => line(i)))).map(
      (l) => JSON.parse(l) as { won: string[]; lost: number; ms: number },
    )
    const seconds = (performance.now() - t) / 1000
    await Promise.all(procs.map((p) => p.exited))
    const won = new Map<string, number>()
    for (const o of outs) for (const id of o.won) won.set(id, (won.get(id) ?? 0) + 1)
    const twice = [...won].filter(([, n]) => n !== 1)
    if (won.size !== claims || twice.length)
      throw new Error(`claims: ${won.size}/${claims} assigned, ${twice.length} twice`)
    const check = await openStore(database, dir)
    const assigned = await check.listJobs({ status: "assigned", limit: claims + 1 })
    await check.close()
    if (assigned.length !== claims)
      throw new Error(`claims: the store lists ${assigned.length} assigned jobs of ${claims}`)
    const lost = outs.reduce((a, o) => a + o.lost, 0)
    return { stores: k, jobs: claims, seconds, perSec: claims / seconds, lost }
  } finally {
    await db.drop()
    rmSync(dir, { recursive: true, force: true })
  }
}

if (argv[2] === "--claimer") {
  await claimer(JSON.parse(argv[3]!), argv[4]!, Number(argv[5]), Number(argv[6]))
}

ensureBuilt()
const load0 = loadavg()
const results: Record<string, { proxy: ProxyFigures[]; claims: ClaimFigures[] }> = {}
for (const engine of engines) {
  const proxy: ProxyFigures[] = []
  for (const n of [1, 2] as const) {
    console.error(`${engine}: ${n} coordinator(s)...`)
    proxy.push(await proxyRun(engine, n))
  }
  const cl: ClaimFigures[] = []
  for (const k of STORES) {
    console.error(`${engine}: claims by ${k} store(s)...`)
    cl.push(await claimRun(engine, k))
  }
  results[engine] = { proxy, claims: cl }
}
const load1 = loadavg()

const name = { sqlite: "SQLite", postgres: "PostgreSQL", mysql: "MariaDB" } as Record<Engine, string>
const lines = [
  `### bench:cluster, ${new Date().toISOString().slice(0, 10)}`,
  "",
  `Machine: ${cpus()[0]?.model ?? "?"} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Bun ${Bun.version}; ` +
    `load average ${load0.map((x) => x.toFixed(2)).join(" ")} at start, ${load1.map((x) => x.toFixed(2)).join(" ")} at end. ` +
    `${runs} interleaved runs of local and proxied \`ffprobe -show_format -show_streams\` (30 s 720p mkv) per row; ` +
    `1 worker; poll_wait_seconds ${pollWait}. With 2 coordinators the client submits to one and the worker polls the other.`,
  "",
  "| engine | coordinators | notifier | local p50 / p99 (ms) | proxy p50 / p99 (ms) | overhead p50 / p99 (ms) | submit → exec p50 / p99 / max (ms) | submit → exit stored p50 (ms) |",
  "|---|---:|---|---:|---:|---:|---:|---:|",
  ...engines.flatMap((e) =>
    results[e]!.proxy.map(
      (p) =>
        `| ${name[e]} | ${p.coordinators} | ${p.notifier} | ${f(p.localP50)} / ${f(p.localP99)} | ${f(p.proxyP50)} / ${f(p.proxyP99)} | ` +
        `${f(p.overheadP50)} / ${f(p.overheadP99)} | ${f(p.submitToExecP50)} / ${f(p.submitToExecP99)} / ${f(p.submitToExecMax)} | ${f(p.submitToEndP50)} |`,
    ),
  ),
  "",
  `Claims at store level: ${claims} queued jobs, each store (a process of its own, own pool) tries every job in its own random order (lost: tries that found the job taken); every job assigned exactly once (checked).`,
  "",
  `| engine | ${STORES.map((k) => `${k} store${k > 1 ? "s" : ""}: claims/s (lost races)`).join(" | ")} |`,
  `|---|${STORES.map(() => "---:").join("|")}|`,
  ...engines.map(
    (e) => `| ${name[e]} | ${results[e]!.claims.map((c) => `${c.perSec.toFixed(0)} (${c.lost})`).join(" | ")} |`,
  ),
]
console.log(lines.join("\n"))
if (jsonFile)
  writeFileSync(
    jsonFile,
    JSON.stringify({ date: new Date().toISOString(), runs, claims, pollWait, load: [load0, load1], results }, null, 2),
  )
process.exit(0)
