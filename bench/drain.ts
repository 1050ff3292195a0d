#!/usr/bin/env bun
/**
 * How fast a cluster drains a queue of trivial jobs (issue 13): N detached `ffprobe -v error -show_format`
 * of a one-frame file, submitted through the client library at 50 concurrent while 50 workers (max_jobs 1,
 * max_probe_jobs 1, sandbox none: no mount namespace) of the compiled binary take them from a compiled
 * coordinator (SQLite, 127.0.0.1, port 0). Submission is far faster than draining, so the queue fills.
 *
 * Reported: jobs/s from the first submission to the last end, against the same command run locally at
 * 50 concurrent (same count, same run); assigned -> running and queued -> assigned p50/p90/p99 (the
 * jobs' `assigned_at`/`started_at`/`created_at`, read from the database once all ended); the
 * coordinator's CPU over the drain and its peak RSS (/proc).
 * Run: `bun run bench:drain` (builds first if dist/dffmpeg is missing). Options: --jobs N (default
 * 10000), --workers N (default 50), --concurrency N (default 50).
 */
import { Database } from "bun:sqlite"
import { cpus, loadavg, totalmem } from "node:os"
import { join } from "node:path"
import { Cluster } from "../test/helpers/cluster.ts"
import { makeMedia } from "../test/helpers/media.ts"
import { ensureBuilt, f, pct, usage } from "./_common.ts"

const arg = (name: string, d: number) => {
  const i = process.argv.indexOf(name)
  return i === -1 ? d : Number(process.argv[i + 1]) || d
}
const jobs = arg("--jobs", 10_000)
const workers = arg("--workers", 50)
const concurrency = arg("--concurrency", 50)

/** Runs `task(i)` for i in [0, n) with at most `width` at once. */
async function pool(n: number, width: number, task: (i: number) => Promise<void>) {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await task(next++)
    }),
  )
}

ensureBuilt()
const load0 = loadavg()
await using c = await Cluster.start({
  workers,
  maxJobs: 1,
  startWorkers: false,
  // The whole queue is one identity's.
  coordinatorConfig: { limits: { max_queued_per_client: jobs, max_active_per_client: jobs } },
  // The host's paths and no sandbox: the bench measures the coordinator and the worker's start path.
  workerConfig: { max_probe_jobs: 1, sandbox: "none", run_as: undefined, allow_root: true },
})
// A few at a time, each given a minute: its tools' detection alone takes seconds on a loaded machine.
await pool(c.workerIds.length, 5, async (i) => {
  const proc = c.spawnWorker(c.workerIds[i]!)
  c.workers[i] = proc
  await proc.waitForLine(/worker registered/, 60_000)
})
const tiny = join(c.storage, "tiny.mkv")
makeMedia(["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=1:duration=1", "-frames:v", "1", tiny])
const args = ["-v", "error", "-show_format", join(c.clientMedia, "tiny.mkv")]

// The local baseline: the same command, the same count, at the same concurrency.
const t0 = performance.now()
await pool(jobs, concurrency, async () => {
  const p = Bun.spawn(["ffprobe", ...args], { stdin: "ignore", stdout: "ignore", stderr: "ignore" })
  if ((await p.exited) !== 0) throw new Error("local ffprobe failed")
})
const localS = (performance.now() - t0) / 1000

const { openClient, submitDetached } = await import("../src/client/session.ts")
const client = await openClient(c.clientConfig)
const pid = c.coordinator.proc.pid
const u0 = usage(pid)
const s0 = performance.now()
/** Submissions the coordinator did not answer in the client's time (each sent again: it may have been stored). */
let unanswered = 0
await pool(jobs, concurrency, async () => {
  for (;;) {
    try {
      await submitDetached({ binary: "ffprobe", args, client, retries: 0 })
      return
    } catch (err) {
      if ((err as { code?: string }).code !== "E_UNAVAILABLE" || ++unanswered > 50) throw err
    }
  }
})
const submitS = (performance.now() - s0) / 1000
const db = new Database(join(c.dir, "coordinator.db"), { readonly: true })
const left = db.query<{ n: number }, []>(
  "select count(*) as n from jobs where status not in ('completed', 'failed', 'canceled')",
)
// Until every job ended; a minute without one ending is a stuck cluster, not a slow one.
for (let n = left.get()!.n, at = performance.now(); n > 0; ) {
  await Bun.sleep(200)
  const now = left.get()!.n
  if (now < n) [n, at] = [now, performance.now()]
  else if (performance.now() - at > 60_000) throw new Error(`${n} jobs did not end; log:\n${c.logs().slice(-4000)}`)
}
const u1 = usage(pid)
const rows = db
  .query<
    {
      status: string
      exit_code: number | null
      error: string | null
      created_at: number
      assigned_at: number
      started_at: number
      finished_at: number
    },
    []
  >(
    "select status, exit_code, substr(error, 1, 100) as error, created_at, assigned_at, started_at, finished_at from jobs",
  )
  .all()
db.close()
const stored = rows.length
/** Why the jobs that did not succeed ended, with how many each. */
const whys = new Map<string, number>()
for (const r of rows)
  if (r.status !== "completed" || r.exit_code !== 0) {
    const why = `${r.status}: ${r.error ?? `exit ${r.exit_code}`}`
    whys.set(why, (whys.get(why) ?? 0) + 1)
  }
const bad = rows.filter((r) => r.status !== "completed" || r.exit_code !== 0).length
const first = Math.min(...rows.map((r) => r.created_at))
const last = Math.max(...rows.map((r) => r.finished_at))
const drainS = (last - first) / 1000
const ends = rows.length
const toRun = rows.map((r) => r.started_at - r.assigned_at)
const toAssign = rows.map((r) => r.assigned_at - r.created_at)
const slot = rows.map((r) => r.finished_at - r.assigned_at)
const row = (name: string, xs: number[]) => `| ${name} | ${f(pct(xs, 50))} | ${f(pct(xs, 90))} | ${f(pct(xs, 99))} |`
console.log(
  [
    `### bench:drain, ${new Date().toISOString().slice(0, 10)}`,
    "",
    `Machine: ${cpus()[0]?.model.split(" ").slice(0, 2).join(" ") ?? "?"} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Bun ${Bun.version}; load average before ${load0.map((x) => x.toFixed(2)).join(", ")}. ${jobs} detached \`ffprobe -v error -show_format\` of a one-frame file, ${concurrency} submitting at once, ${workers} workers (max_jobs 1, max_probe_jobs 1, sandbox none); ${bad} of the ${stored} stored did not succeed; ${unanswered} submissions timed out and were sent again.`,
    "",
    "| | jobs/s | wall (s) |",
    "|---|---:|---:|",
    `| local, ${concurrency} at once | ${f(jobs / localS)} | ${f(localS)} |`,
    `| cluster, first submission to last end | ${f(ends / drainS)} (${f((100 * ends) / drainS / (jobs / localS))}% of local) | ${f(drainS)} |`,
    `| (submitting alone took) | ${f(jobs / submitS)} | ${f(submitS)} |`,
    "",
    "| per job (ms) | p50 | p90 | p99 |",
    "|---|---:|---:|---:|",
    row("assigned -> running", toRun),
    row("queued -> assigned", toAssign),
    row("assigned -> ended (slot time)", slot),
    "",
    `Coordinator: ${f((u1.cpuMs - u0.cpuMs) / 1000)} s CPU over the run (${f((u1.cpuMs - u0.cpuMs) / jobs)} ms per job, ${f((100 * (u1.cpuMs - u0.cpuMs)) / 1000 / drainS)}% of one core); peak RSS ${f(u1.peakMiB)} MiB; load average after ${loadavg()
      .map((x) => x.toFixed(2))
      .join(", ")}.`,
    ...[...whys].map(([why, n]) => `- ${n} × ${why}`),
  ].join("\n"),
)
