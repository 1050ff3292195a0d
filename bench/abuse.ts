#!/usr/bin/env bun
/**
 * Abuse benchmark (issue 9, findings F4–F6): how much memory the coordinator takes, and whether it stays
 * responsive, under many hostile or merely numerous connections against a database of large jobs.
 *
 * Starts the compiled coordinator (`--bin`, default dist/dffmpeg) on 127.0.0.1 port 0 with a fresh
 * SQLite database seeded straight through the store with `--jobs` jobs of `--args-mb` MB of arguments
 * each (quotas refuse such jobs over the API), half queued and half finished (canceled). Then it opens
 * `--connections` mixed connections at once and holds them for `--hold` seconds:
 *   20 % worker long polls (40 worker identities, 3 polls each where the limit is 2),
 *   ~33 % job output streams (10 per job on the largest jobs, one client identity),
 *   ~33 % dashboard live events (SSE) from 25 loopback addresses, half of them following a large job,
 *   40 admin listings `GET /api/v1/jobs?limit=1000` (each repeated while the run holds),
 *   `--posts` (40) unauthenticated 8 MiB POSTs (F6), and as many 8 MiB output uploads that name a real
 *   worker identity but carry a forged signature (their bodies are read before they can be refused).
 * Throughout, it samples the coordinator's RSS (/proc/PID/status VmRSS) every 50 ms, times `/health`
 * one request at a time (5 s timeout), and sends a signed read every 200 ms to count valid requests the
 * coordinator refused. Everything is loopback; the run ends by itself (the coordinator is killed if its
 * RSS passes `--rss-cap-mb`, default 2500, so an unbounded build cannot take the machine down).
 *
 * Prints a Markdown table (paste into docs/performance.md). Run: `bun run bench:abuse`
 * [--bin PATH] [--seed-with DIR] [--jobs 30] [--args-mb 7.5] [--connections 600] [--posts 40] [--hold 20] [--rss-cap-mb 2500].
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import net from "node:net"
import { cpus, tmpdir, totalmem } from "node:os"
import { join, resolve } from "node:path"
import { createApiClient, type ApiClient } from "../src/shared/http/client.ts"
import { monotonicFactory } from "ulid"
import { Proc } from "../test/helpers/proc.ts"

const ROOT = join(import.meta.dir, "..")
const opt = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const binArg = process.argv.indexOf("--bin")
const BIN = resolve(binArg === -1 ? join(ROOT, "dist", "dffmpeg") : process.argv[binArg + 1])
const JOBS = opt("jobs", 30)
const ARGS_MB = opt("args-mb", 7.5)
const CONNECTIONS = opt("connections", 600)
const HOLD_S = opt("hold", 20)
const RSS_CAP_MB = opt("rss-cap-mb", 2500)
const POSTS = opt("posts", 40)
// The store that seeds the database must match the binary's schema: `--seed-with DIR` imports DIR/src's
// (e.g. an export of the commit the binary was built from) instead of this tree's.
const seedArg = process.argv.indexOf("--seed-with")
const seedRoot = seedArg === -1 ? ROOT : resolve(process.argv[seedArg + 1])
const { createSqliteStore } = (await import(
  join(seedRoot, "src", "store", "sqlite", "index.ts")
)) as typeof import("../src/store/sqlite/index.ts")
if (binArg === -1 && !existsSync(BIN))
  Bun.spawnSync(["bun", "scripts/build.ts", "--single"], { stdout: "inherit", stderr: "inherit", cwd: ROOT })

const dir = mkdtempSync(join(tmpdir(), "dffmpeg-abuse-"))
const cfgPath = join(dir, "coordinator.yaml")
const dbPath = join(dir, "coordinator.db")
// JSON is YAML. All of 127.0.0.0/8 may use the dashboard: the SSE connections come from many of its addresses.
writeFileSync(
  cfgPath,
  JSON.stringify({
    host: "127.0.0.1",
    port: 0,
    database: { path: dbPath },
    allowed_dashboard_ips: ["127.0.0.0/8"],
    poll_wait_seconds: 60,
  }),
)

const run = (args: string[]) => {
  const p = Bun.spawnSync([BIN, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir } })
  if (p.exitCode !== 0) throw new Error(`dffmpeg ${args.join(" ")}: ${p.stderr.toString()}`)
  return p.stdout.toString().trim()
}
const addUser = (name: string, role: string) =>
  run(["admin", "--config", cfgPath, "users", "add", name, "--role", role])

// ---- setup: identities (through the binary under test), then the large jobs (through the store) ----
const WORKERS = 40
const keys = new Map<string, string>()
keys.set("bench-client", addUser("bench-client", "client"))
keys.set("bench-admin", addUser("bench-admin", "admin"))
for (let i = 0; i < WORKERS; i++) keys.set(`bench-w${i}`, addUser(`bench-w${i}`, "worker"))

const newId = monotonicFactory()
const jobIds: string[] = []
{
  const store = createSqliteStore({ path: dbPath })
  const n = Math.max(1, Math.round((ARGS_MB * 1e6) / 3000))
  const args = Array.from({ length: n }, (_, i) => `-metadata:s:${i}=${"x".repeat(2980)}`)
  const t0 = Date.now()
  for (let i = 0; i < JOBS; i++) {
    const id = newId()
    jobIds.push(id)
    // Paths no worker advertises: the queued ones stay queued (and are read by every scheduling pass).
    await store.createJob(
      {
        id,
        requester: "bench-client",
        binary: "ffmpeg",
        args,
        paths: ["Nowhere"],
        cwd: null,
        stdin: false,
        attached: false,
        retries: 0,
      },
      t0 + i,
    )
    if (i % 2 === 1) await store.requestCancel(id, "seeded as finished", t0 + i)
  }
  await store.close()
}

// ---- start the coordinator ----
const child = Bun.spawn([BIN, "coordinator", "--config", cfgPath], {
  cwd: dir,
  env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
  stdin: "ignore",
  stdout: "ignore",
  stderr: "pipe",
})
const coord = new Proc("coordinator", child)
process.on("exit", () => child.kill("SIGKILL"))
const m = await coord.waitForLine(/listening on (http:\/\/127\.0\.0\.1:(\d+))/, 30_000)
const url = m[1]
const port = Number(m[2])
const api = (name: string): ApiClient => createApiClient({ url, client: name, key: keys.get(name)! })

const rssMb = (): number | undefined => {
  try {
    const s = readFileSync(`/proc/${child.pid}/status`, "utf8")
    const kb = Number(/VmRSS:\s+(\d+)/.exec(s)?.[1])
    return Number.isFinite(kb) ? kb / 1024 : undefined
  } catch {
    return undefined
  }
}

// Workers join (register, echo the token) before the storm, as a real pool would have.
for (let i = 0; i < WORKERS; i++) {
  const w = api(`bench-w${i}`)
  await w.json("POST", "/api/v1/worker/register", {
    json: { binaries: ["ffmpeg"], paths: [], maxJobs: 1, version: "bench" },
  })
  const { verify } = await w.json<{ verify?: string }>("GET", "/api/v1/worker/poll", { query: { wait: 0 } })
  if (verify) await w.json("POST", "/api/v1/worker/verify", { json: { token: verify } })
}
const idleRss = rssMb() ?? 0

// ---- samplers ----
let stop = false
let killedAt: number | undefined
const rss: number[] = []
let sampling = true
const sampler = (async () => {
  while (sampling) {
    const r = rssMb()
    if (r === undefined) break
    rss.push(r)
    if (r > RSS_CAP_MB && killedAt === undefined) {
      killedAt = r
      child.kill("SIGKILL")
      break
    }
    await Bun.sleep(50)
  }
})()
const health: number[] = []
/** When each probe started, in seconds after the storm began (negative: before it). */
const healthAt: number[] = []
let stormAt = Infinity
let healthFailed = 0
const healthLoop = (async () => {
  while (!stop && killedAt === undefined) {
    const t = performance.now()
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) })
      await res.arrayBuffer()
      if (res.status !== 200) healthFailed++
    } catch {
      healthFailed++
    }
    health.push(performance.now() - t)
    healthAt.push((t - stormAt) / 1000)
    await Bun.sleep(100)
  }
})()
let signedOk = 0
let signedRefused = 0
const signedLoop = (async () => {
  const c = api("bench-client")
  while (!stop && killedAt === undefined) {
    try {
      const res = await c.request("GET", `/api/v1/workers`, { timeoutMs: 5000 })
      await res.arrayBuffer()
      if (res.ok) signedOk++
      else signedRefused++
    } catch {
      signedRefused++
    }
    await Bun.sleep(200)
  }
})()

// ---- the storm ----
type Outcome = "accepted" | "refused" | "error"
const tally = new Map<string, Record<Outcome | "open", number>>()
/** Answers that come after the hold ended (connections closed by this benchmark) are not counted. */
let counting = true
const count = (kind: string, o: Outcome) => {
  if (!counting) return
  const t = tally.get(kind) ?? { accepted: 0, refused: 0, error: 0, open: 0 }
  t[o]++
  tally.set(kind, t)
}
const outcomeOf = (status: number): Outcome =>
  status >= 200 && status < 300
    ? "accepted"
    : status === 429 || status === 503 || status === 413 || status === 401
      ? "refused"
      : "error"
const closers: (() => void)[] = []

/** A raw HTTP/1.1 request from `local` (a loopback address), held open; resolves with the status. */
function raw(local: string, head: string, body?: Uint8Array): Promise<number> {
  return new Promise((resolveStatus) => {
    const sock = net.connect({ host: "127.0.0.1", port, localAddress: local })
    let buf = ""
    let done = false
    const finish = (status: number) => {
      if (done) return
      done = true
      resolveStatus(status)
    }
    closers.push(() => sock.destroy())
    sock.on("connect", () => {
      sock.write(head)
      if (body) sock.write(body)
    })
    sock.on("data", (d) => {
      if (done) return
      buf += d.toString("latin1")
      const mm = /^HTTP\/1\.1 (\d{3})/.exec(buf)
      if (mm) finish(Number(mm[1]))
    })
    sock.on("error", () => finish(0))
    sock.on("close", () => finish(0))
  })
}

stormAt = performance.now()
const started: Promise<unknown>[] = []
const polls = Math.round(CONNECTIONS * 0.2)
const rest = CONNECTIONS - polls - 40 - POSTS
const streams = Math.floor(rest / 2)
const sse = rest - streams

// Worker long polls: 3 per identity where the limit is 2.
for (let i = 0; i < polls; i++) {
  const w = api(`bench-w${i % WORKERS}`)
  const ac = new AbortController()
  closers.push(() => ac.abort())
  // A poll answers when it ends: one that answers during the hold was refused (or failed).
  started.push(
    w.request("GET", "/api/v1/worker/poll", { query: { wait: 60 }, signal: ac.signal, timeoutMs: 120_000 }).then(
      (res) => (void res.arrayBuffer().catch(() => {}), count("worker long polls", outcomeOf(res.status))),
      () => void (!ac.signal.aborted && count("worker long polls", "error")),
    ),
  )
}
// Output streams of the large jobs: 10 per job, so the per-job limit (8) is reached.
const client = api("bench-client")
for (let i = 0; i < streams; i++) {
  const ac = new AbortController()
  closers.push(() => ac.abort())
  started.push(
    client
      .request("GET", `/api/v1/jobs/${jobIds[Math.floor(i / 10) % jobIds.length]}/stream`, {
        signal: ac.signal,
        timeoutMs: 30_000,
      })
      .then(
        (res) => {
          count("job output streams", outcomeOf(res.status))
          if (!res.ok) void res.arrayBuffer()
          else void res.body?.pipeTo(new WritableStream()).catch(() => {})
        },
        () => void (!ac.signal.aborted && count("job output streams", "error")),
      ),
  )
}
// Dashboard live events from 25 addresses, half of them on a large job's page.
for (let i = 0; i < sse; i++) {
  const path = i % 2 ? `/dashboard/api/events?job=${jobIds[i % jobIds.length]}` : "/dashboard/api/events"
  started.push(
    raw(
      `127.0.0.${2 + (i % 25)}`,
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`,
    ).then((s) => count("dashboard live (SSE)", outcomeOf(s))),
  )
}
// Unauthenticated 8 MiB posts (F6).
const big = new Uint8Array(8 * 1024 * 1024).fill(0x61)
for (let i = 0; i < POSTS; i++) {
  const head = `POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n`
  started.push(raw("127.0.0.1", head, big).then((s) => count("unauthenticated 8 MiB POSTs", outcomeOf(s))))
}
// 8 MiB output uploads that name a real worker identity with a fresh timestamp but a forged signature:
// their bodies must be read before the signature can be checked (bounded by max_unverified_body_bytes).
const forgedKind = "forged 8 MiB uploads (known identity)"
for (let i = 0; i < POSTS; i++) {
  const nonce = `forged-nonce-${i}-${Math.random().toString(36).slice(2)}`
  const head = `POST /api/v1/jobs/${jobIds[i % jobIds.length]}/output?epoch=1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/vnd.dffmpeg.frames\r\nContent-Length: ${big.length}\r\nX-DFFmpeg-Client-Id: bench-w${i % WORKERS}\r\nX-DFFmpeg-Timestamp: ${Math.floor(Date.now() / 1000)}\r\nX-DFFmpeg-Nonce: ${nonce}\r\nX-DFFmpeg-Signature: ${"A".repeat(43)}=\r\n\r\n`
  started.push(raw("127.0.0.1", head, big).then((s) => count(forgedKind, outcomeOf(s))))
}
// Admin listings with a big limit, repeated while the run holds.
const admin = api("bench-admin")
let listBytesMax = 0
const listLoops = Array.from({ length: 40 }, async () => {
  while (!stop && killedAt === undefined) {
    try {
      const res = await admin.request("GET", "/api/v1/jobs", { query: { limit: 1000 }, timeoutMs: 30_000 })
      const n = (await res.arrayBuffer()).byteLength
      listBytesMax = Math.max(listBytesMax, n)
      count("listings ?limit=1000 (40 loops)", outcomeOf(res.status))
    } catch {
      count("listings ?limit=1000 (40 loops)", "error")
    }
  }
})

const holdUntil = Date.now() + HOLD_S * 1000
while (Date.now() < holdUntil && killedAt === undefined) await Bun.sleep(100)
counting = false
// Connections with no answer at the end of the hold were still open (a long poll answers only when it ends).
for (const [kind, n] of [
  ["worker long polls", polls],
  ["job output streams", streams],
  ["dashboard live (SSE)", sse],
  ["unauthenticated 8 MiB POSTs", POSTS],
  [forgedKind, POSTS],
] as const) {
  const t = tally.get(kind) ?? { accepted: 0, refused: 0, error: 0, open: 0 }
  t.open = n - (t.accepted + t.refused + t.error)
  tally.set(kind, t)
}
stop = true
for (const c of closers) c()
await Promise.all([healthLoop, signedLoop, ...listLoops])
await Bun.sleep(2000)
const afterRss = rssMb()
sampling = false
await sampler
child.kill("SIGKILL")
await child.exited
rmSync(dir, { recursive: true, force: true })

// ---- report ----
const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}
const f0 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "—" : x.toFixed(0))
const ms = (x: number) => (Number.isFinite(x) ? `${x.toFixed(x < 10 ? 1 : 0)} ms` : "—")
const out: string[] = []
out.push(
  `Abuse run: ${BIN.replace(ROOT + "/", "")}, ${JOBS} jobs × ${ARGS_MB} MB of arguments, ${CONNECTIONS} connections held ${HOLD_S} s; ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB.`,
)
out.push("")
out.push("| measure | value |")
out.push("| --- | --- |")
out.push(`| coordinator RSS idle (after setup) | ${f0(idleRss)} MB |`)
out.push(
  `| coordinator RSS peak | ${f0(Math.max(...rss))} MB${killedAt !== undefined ? ` (**killed at ${f0(killedAt)} MB: over --rss-cap-mb ${RSS_CAP_MB}**)` : ""} |`,
)
out.push(
  `| coordinator RSS 2 s after every connection closed | ${killedAt !== undefined ? "—" : `${f0(afterRss)} MB`} |`,
)
out.push(
  `| /health p50 / p99 / max (${health.length} probes) | ${ms(pct(health, 50))} / ${ms(pct(health, 99))} / ${ms(Math.max(...health))} |`,
)
const worst = health.indexOf(Math.max(...health))
out.push(
  `| slowest /health probe started | ${worst === -1 || !Number.isFinite(healthAt[worst]) ? "—" : `${healthAt[worst].toFixed(1)} s after the storm began`} |`,
)
const later = health.filter((_, i) => healthAt[i] >= 2)
out.push(
  `| /health p99 / max from 2 s after the storm began | ${ms(pct(later, 99))} / ${ms(later.length ? Math.max(...later) : NaN)} |`,
)
out.push(`| /health failed or over 5 s | ${healthFailed} |`)
out.push(`| signed reads (every 200 ms) ok / refused or failed | ${signedOk} / ${signedRefused} |`)
out.push(`| largest listing body | ${(listBytesMax / 1024).toFixed(1)} KiB |`)
out.push("")
out.push(
  "| connections | answered 2xx | refused (429/413/401/503) | failed (other status, reset, timeout) | open without an answer at the end |",
)
out.push("| --- | --- | --- | --- | --- |")
for (const [kind, t] of tally)
  out.push(`| ${kind} | ${t.accepted} | ${t.refused} | ${t.error} | ${kind.startsWith("listings") ? "—" : t.open} |`)
console.log(out.join("\n"))
process.exit(killedAt !== undefined ? 1 : 0)
