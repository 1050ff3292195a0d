import { expect } from "bun:test"
import { readdirSync, readFileSync } from "node:fs"
import { Cluster } from "./cluster.ts"
import { databaseSql, freshDatabase, type ServerEngine } from "./databases.ts"
import { rawFetch, signedFetch } from "./signed.ts"

/**
 * Issue 14's end-to-end run, on one server engine: two coordinators on one database, four workers
 * (two list the coordinators A then B, two B then A), callers through the proxy with either order,
 * `kill -9` of coordinator A mid-run. Every job must complete exactly once with the bytes and exit code
 * a local ffmpeg gives, and no worker ever runs more ffmpeg processes than its max_jobs.
 */
export interface TwoCoordinatorRun {
  jobs: number
  /** Completed jobs after which coordinator A is killed. */
  killAfter: number
  /**
   * A `transports:` block for every coordinator, worker and caller (issue 15): then every request goes
   * through the broker, each to one of the two coordinators.
   */
  transports?: Record<string, unknown>
  /** The coordinators' `notifier` (a broker of `transports`: wake-ups between them through it). */
  notifier?: string
}

const MAX_JOBS = 2
const VARIANTS = 10

/** A small real transcode to stdout: raw video and PCM in NUT, bit-exact, its tone per variant. */
const job = (variant: number) => [
  "-hide_banner",
  "-loglevel",
  "error",
  "-f",
  "lavfi",
  "-i",
  "testsrc=size=64x48:rate=5:duration=0.6",
  "-f",
  "lavfi",
  "-i",
  `sine=frequency=${300 + 40 * variant}:duration=0.6`,
  "-c:v",
  "rawvideo",
  "-c:a",
  "pcm_s16le",
  "-fflags",
  "+bitexact",
  "-flags:v",
  "+bitexact",
  "-flags:a",
  "+bitexact",
  "-f",
  "nut",
  "pipe:1",
]

/** Parent pid and command name of every process (from /proc). */
function processes(): Map<number, { ppid: number; comm: string }> {
  const out = new Map<number, { ppid: number; comm: string }>()
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8")
      const close = stat.lastIndexOf(")")
      const comm = stat.slice(stat.indexOf("(") + 1, close)
      const ppid = Number(stat.slice(close + 2).split(" ")[1])
      out.set(Number(d), { ppid, comm })
    } catch {
      // It exited while being read.
    }
  }
  return out
}

/** The number of ffmpeg processes descending from each of `roots` (pid → count). */
function ffmpegsUnder(roots: number[]): Map<number, number> {
  const procs = processes()
  const counts = new Map(roots.map((r) => [r, 0]))
  for (const p of procs.values()) {
    if (p.comm !== "ffmpeg") continue
    let up = p.ppid
    for (let hops = 0; up > 1 && hops < 64; hops++) {
      if (counts.has(up)) {
        counts.set(up, counts.get(up)! + 1)
        break
      }
      up = procs.get(up)?.ppid ?? 0
    }
  }
  return counts
}

export async function twoCoordinatorRun(engine: ServerEngine, run: TwoCoordinatorRun): Promise<void> {
  const db = await freshDatabase(engine)
  await using c = await Cluster.start({
    workers: 4,
    maxJobs: MAX_JOBS,
    startWorkers: false,
    // Both coordinators read one secret file (beside the config): keys sealed by one open on the other.
    coordinatorConfig: {
      database: db.config,
      poll_wait_seconds: 5,
      ...(run.transports ? { transports: run.transports } : {}),
      ...(run.notifier ? { notifier: run.notifier } : {}),
    },
    ...(run.transports
      ? { workerConfig: { transports: run.transports }, clientConfig: { transports: run.transports } }
      : {}),
  })
  const a = { port: c.port }
  // Coordinator B: the same database and secret file, a port of its own.
  const b = await c.startSecondCoordinator()
  const workerPids: number[] = []
  for (const [i, id] of c.workerIds.entries()) {
    const p = await c.startWorker(id, { coordinator: i % 2 === 0 ? [a, b] : [b, a] })
    workerPids.push(p.proc.pid)
  }
  const orders = [c.clientWith("ab", { coordinator: [a, b] }), c.clientWith("ba", { coordinator: [b, a] })]
  // Over a broker both coordinators must have served: the broker hands each request to one of them.
  const servedBy = () =>
    c.coordinators.map(
      (k) =>
        k.proc
          .log()
          .split("\n")
          .filter((l) => l.includes("job submitted")).length,
    )

  // With a broker notifier, both coordinators say so (and are connected through it).
  if (run.notifier)
    for (const url of [c.url, b.url]) {
      const health = (await (await fetch(`${url}/health`)).json()) as { components: { notifier: unknown } }
      expect(health.components.notifier).toEqual({ kind: run.notifier, status: "ok", connected: true })
    }
  // A signed request answered by A is refused when replayed to B: the nonce is in the database.
  let captured: Record<string, string> = {}
  const first = await signedFetch(c.url, {
    client: "client1",
    key: c.key("client1"),
    method: "GET",
    path: "/api/v1/jobs",
    query: "limit=1",
    onHeaders: (h) => (captured = h),
  })
  expect(first.status).toBe(200)
  const replay = await rawFetch(b.url, { method: "GET", path: "/api/v1/jobs", query: "limit=1", headers: captured })
  expect(replay.status).toBe(401)
  expect(await replay.text()).toMatch(/replay/)

  const expected = await Promise.all(
    Array.from({ length: VARIANTS }, async (_, v) => {
      const r = await c.local("ffmpeg", job(v))
      expect(r.code).toBe(0)
      return r.stdout
    }),
  )

  // Sample the ffmpeg processes under each worker while the jobs run.
  let sampling = true
  const peak = new Map(workerPids.map((p) => [p, 0]))
  const sampler = (async () => {
    while (sampling) {
      for (const [pid, n] of ffmpegsUnder(workerPids)) peak.set(pid, Math.max(peak.get(pid)!, n))
      await Bun.sleep(20)
    }
  })()

  const t0 = performance.now()
  let done = 0
  let killed = false
  const results: { code: number; same: boolean; err: string }[] = new Array(run.jobs)
  let next = 0
  const lane = async () => {
    while (next < run.jobs) {
      const i = next++
      const r = await c.run("ffmpeg", job(i % VARIANTS), { env: orders[i % 2], timeoutMs: 120_000 })
      results[i] = { code: r.code, same: Buffer.compare(r.stdout, expected[i % VARIANTS]) === 0, err: r.err }
      if (++done >= run.killAfter && !killed) {
        killed = true
        await c.coordinator.stop("SIGKILL")
      }
    }
  }
  await Promise.all(Array.from({ length: 12 }, lane))
  sampling = false
  await sampler
  expect(killed).toBe(true)
  if (run.transports) expect(servedBy().every((n) => n > 0)).toBe(true)

  const bad = results.flatMap((r, i) => (r.code === 0 && r.same && r.err === "" ? [] : [{ i, ...r }]))
  if (bad.length) console.error(c.logs())
  expect(bad).toEqual([])
  // Exactly once: every job completed, each with one completed transition.
  const rows = (await databaseSql(
    db,
    "SELECT j.status AS status, (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.status = 'completed') AS n FROM jobs j",
  )) as { status: string; n: number | string }[]
  expect(rows.length).toBe(run.jobs)
  expect(rows.filter((r) => r.status !== "completed" || Number(r.n) !== 1)).toEqual([])
  // max_jobs, counted on the real processes.
  for (const n of peak.values()) expect(n).toBeLessThanOrEqual(MAX_JOBS)
  expect(Math.max(...peak.values())).toBeGreaterThan(0)
  const times = (await databaseSql(
    db,
    "SELECT assigned_at - created_at AS q, started_at - assigned_at AS s, finished_at - started_at AS r FROM jobs",
  )) as { q: number; s: number; r: number }[]
  const p50 = (k: "q" | "s" | "r") => times.map((t) => Number(t[k])).sort((x, y) => x - y)[times.length >> 1]
  console.log(
    `${engine}: ${run.jobs} jobs through 2 coordinators in ${((performance.now() - t0) / 1000).toFixed(1)} s, A killed after ${run.killAfter}; peak ffmpeg per worker ${[...peak.values()].join(",")}; p50 queued ${p50("q")} ms, assigned->running ${p50("s")} ms, running ${p50("r")} ms`,
  )
}
