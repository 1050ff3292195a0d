/**
 * Fuzzes a real coordinator and worker with signed (and unsigned, badly signed) requests to every route.
 *
 *   bun run fuzz [--count 10000] [--seed N] [--concurrency 32] [--max-seconds 300] [--max-rss-mb 400]
 *                [--mutate-rate 0.6] [--no-fat-jobs] [--json] [--keep] [--quiet]
 *
 * Fails (exit 1) on any 5xx, a request that got no answer, a dead coordinator or worker, /health not
 * answering 200, an ffmpeg/ffprobe spawn that does not belong to a job the coordinator accepted, a job
 * reaching the loopback canary server (SSRF), or the coordinator's RSS above the bound. Submissions with
 * megabytes of arguments (F4/F5) are on by default; the quotas must refuse them. Loopback only. See docs/security.md (fuzzing).
 */
import { parseArgs } from "node:util"
import { HEADER, newNonce, sign, sha256Hex, decodeKey, generateKey } from "../src/shared/auth/hmac.ts"
import { FrameDecoder, Kind, frameJson } from "../src/shared/protocol/frames.ts"
import { FuzzCluster, checkSpawns, type IdentityName } from "./fuzz/cluster.ts"
import { rawHttp } from "../test/helpers/raw-http.ts"
import { Gen } from "./fuzz/gen.ts"
import { mutate, type Mutated } from "./fuzz/mutate.ts"
import { ROUTES, State } from "./fuzz/routes.ts"

export interface FuzzOptions {
  seed: number
  count: number
  concurrency: number
  maxSeconds: number
  maxRssMb: number
  /** Share of requests that are mutated (the rest are plausible requests). */
  mutateRate: number
  keep: boolean
  /** Also submit jobs with up to 7.8 MB of arguments (F5; refused once limits.max_args_bytes applies). */
  fatJobs: boolean
  log?: (line: string) => void
}

interface Violation {
  kind: "5xx" | "no-answer" | "dead" | "health" | "spawn" | "rss" | "time" | "fuzzer" | "ssrf"
  detail: string
}

interface Counts {
  "2xx": number
  "3xx": number
  "4xx": number
  "5xx": number
  error: number
  /** Milliseconds from sending to the end of the answer (streams: until the fuzzer hung up). */
  totalMs: number
  maxMs: number
}

export interface Summary {
  seed: number
  requested: number
  sent: number
  elapsedSeconds: number
  requestsPerSecond: number
  concurrency: number
  byRoute: Record<string, Counts>
  byStatus: Record<string, number>
  labels: Record<string, number>
  rss: { startMb: number; peakMb: number; endMb: number; boundMb: number; samples: number }
  jobs: { accepted: number; acceptedHostile: number }
  spawns: { total: number; startup: number; fromAcceptedJobs: number; hostile: number; unexplained: number }
  canaryHits: number
  /** CPU seconds the coordinator used (user + system) by the end of the run. */
  coordinatorCpuSeconds: number
  exits: { worker: number | null; coordinator: number | null }
  violations: Violation[]
  violationCount: number
}

const MAX_EXAMPLES = 25
const ANSWER_TIMEOUT_MS = 30_000

export async function runFuzz(o: FuzzOptions): Promise<Summary> {
  const log = o.log ?? (() => {})
  let canaryHits = 0
  const canary = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    // `tcp://` jobs connect and wait for bytes that never come: hang up on them soon.
    idleTimeout: 1,
    fetch() {
      canaryHits++
      return new Response("canary")
    },
  })
  let cluster: FuzzCluster
  try {
    cluster = await FuzzCluster.start()
  } catch (err) {
    canary.stop(true)
    throw err
  }
  try {
    return await fuzz(o, cluster, `http://127.0.0.1:${canary.port}`, () => canaryHits, log)
  } finally {
    // Whatever happened, no coordinator, worker or ffmpeg of this run outlives it.
    canary.stop(true)
    await cluster.stop(o.keep)
    if (o.keep) log(`kept ${cluster.dir}`)
  }
}

async function fuzz(
  o: FuzzOptions,
  cluster: FuzzCluster,
  canaryUrl: string,
  canaryHitCount: () => number,
  log: (line: string) => void,
): Promise<Summary> {
  const violations: Violation[] = []
  let violationCount = 0
  const violate = (kind: Violation["kind"], detail: string) => {
    violationCount++
    if (violations.length < MAX_EXAMPLES) violations.push({ kind, detail })
    log(`VIOLATION ${kind}: ${detail}`)
  }
  const state = new State()
  state.canary = canaryUrl
  state.dir = cluster.dir
  state.fatJobs = o.fatJobs
  const byRoute: Record<string, Counts> = {}
  const byStatus: Record<string, number> = {}
  const labels: Record<string, number> = {}
  const replayable: { method: string; url: string; headers: [string, string][]; body?: Uint8Array | string }[] = []

  const rss = { start: cluster.coordinatorRss(), peak: 0, samples: 0 }
  const sample = () => {
    const r = cluster.coordinatorRss()
    rss.samples++
    if (r > rss.peak) rss.peak = r
  }
  sample()
  const sampler = setInterval(sample, 100)

  const describe = (r: Mutated, url: string, body: Uint8Array | string | undefined) => {
    const size = body === undefined ? 0 : typeof body === "string" ? Buffer.byteLength(body) : body.length
    const preview =
      body === undefined
        ? ""
        : (typeof body === "string" ? body : new TextDecoder().decode(body.subarray(0, 200))).slice(0, 200)
    return `${r.method} ${url.length > 300 ? url.slice(0, 300) + "…" : url} as=${r.as ?? "-"} auth=${r.auth ?? "signed"} labels=[${r.labels.join(",")}] body=${size}B ${JSON.stringify(preview)}`
  }

  /**
   * Malformed HTTP on a socket. Hanging up without an answer is fair for garbage, and so is Bun's own 505
   * for a request line whose version is not HTTP/1.x; any other 5xx is a violation.
   */
  const sendRaw = async (r: Mutated): Promise<number> => {
    const { status, text } = await rawHttp(cluster.port, r.raw!)
    if (status >= 500 && status !== 505)
      violate(
        "5xx",
        `${status} for raw HTTP [${r.labels.join(",")}] ${JSON.stringify(new TextDecoder().decode(r.raw!.subarray(0, 200)))} → ${JSON.stringify(text.slice(0, 300))}`,
      )
    return status || -1
  }

  /** Sends one request; returns its status (0: no answer) and what it learned. */
  const send = async (r: Mutated) => {
    if (r.raw) return sendRaw(r)
    const path = r.path.replace("{id}", r.id ?? "")
    const query = r.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&")
    // The URL as the server will see it (fetch normalizes `..` and encodes): that is what gets signed.
    const url = new URL(cluster.url + path + (query ? `?${query}` : ""))
    const hasBody = r.body !== undefined && r.method !== "GET" && r.method !== "HEAD"
    let body = hasBody ? r.body : undefined
    const headers = new Headers()
    for (const [k, v] of r.headers) headers.append(k, v)
    if (r.cookie && state.cookie) headers.append("cookie", state.cookie)
    if (typeof body === "string")
      body = body.replace("__KEY__", cluster.keys.fzadmin).replace("__CLIENTKEY__", cluster.keys.fzclient)
    if (r.as && r.auth !== "unsigned") {
      const key = r.auth === "bad-key" ? decodeKey(generateKey()) : decodeKey(cluster.keys[r.as as IdentityName])
      const client = r.auth === "unknown-client" ? "fz-nobody" : r.as
      const now = Date.now() + (r.auth === "stale-ts" ? -120_000 : r.auth === "future-ts" ? 120_000 : 0)
      const timestamp = r.auth === "ts-garbage" ? "12ab" : String(Math.floor(now / 1000))
      const nonce = r.auth === "nonce-short" ? "short" : r.auth === "nonce-long" ? "n".repeat(200) : newNonce()
      const signature = sign(key, {
        method: r.method,
        path: url.pathname,
        query: url.searchParams,
        client,
        timestamp,
        nonce,
        bodyHash: sha256Hex(body),
      })
      headers.set(HEADER.client, client)
      headers.set(HEADER.timestamp, timestamp)
      headers.set(HEADER.nonce, nonce)
      headers.set(HEADER.signature, r.auth === "sig-garbage" ? "AAAA" + signature.slice(4) : signature)
      if (r.auth === "dup-signature") headers.append(HEADER.signature, signature)
      if (r.auth === "drop-header")
        headers.delete(
          [HEADER.client, HEADER.timestamp, HEADER.nonce, HEADER.signature][(nonce.charCodeAt(0) + nonce.length) % 4],
        )
      if (r.auth === "tamper-body")
        body = hasBody ? (typeof body === "string" ? body + " " : new Uint8Array([...(body ?? []), 0])) : body
      if (r.auth === "tamper-query") url.searchParams.append("fz", "1")
      if (r.auth === "tamper-path") url.pathname = url.pathname + "/x"
    }
    let method = r.method
    if (r.auth === "replay" && replayable.length) {
      const old = replayable[replayable.length - 1]
      method = old.method
      headers.forEach((_v, k) => headers.delete(k))
      for (const [k, v] of old.headers) headers.append(k, v)
      body = old.body
      url.href = old.url
    }
    const sent: [string, string][] = []
    headers.forEach((v, k) => sent.push([k, v]))
    const what = describe({ ...r, method }, url.pathname + url.search, body)
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms`)), ANSWER_TIMEOUT_MS)
    let status = 0
    try {
      const res = await fetch(url, {
        method,
        headers,
        body: body as Uint8Array<ArrayBuffer> | string | undefined,
        redirect: "manual",
        signal: ac.signal,
      })
      status = res.status
      // A route that can stream may also answer with plain JSON (a mutated `attach`): go by the type.
      const streaming =
        r.streamMs !== undefined &&
        res.ok &&
        res.body &&
        /frames|event-stream/.test(res.headers.get("content-type") ?? "")
      if (streaming) {
        await learnStream(r, res.body!, r.streamMs!, ac)
      } else {
        const bytes = new Uint8Array(await res.arrayBuffer())
        // The one 5xx that is a refusal, not a fault: too many unverified bodies being read at once
        // (limits.max_unverified_body_bytes, shed with 503 so that real clients retry). Counted apart.
        const text = new TextDecoder().decode(bytes.subarray(0, 400))
        if (status === 503 && text.includes("limits.max_unverified_body_bytes"))
          labels["busy:503"] = (labels["busy:503"] ?? 0) + 1
        else if (status >= 500) violate("5xx", `${status} for ${what} → ${text}`)
        learn(r, res, bytes)
        if (r.setup) log(`set-up ${r.route}: ${status} ${new TextDecoder().decode(bytes.subarray(0, 300))}`)
      }
      // Only a request that was answered can be replayed: a copy sent first would be the original.
      if (r.as && !r.auth && replayable.length < 50)
        replayable.push({ method: r.method, url: url.href, headers: sent, body })
    } catch (err) {
      if (status === 0) violate("no-answer", `${(err as Error).message} for ${what}`)
      // A stream cut by our own hang-up after its headers is the intended end.
    } finally {
      clearTimeout(timer)
    }
    return status
  }

  /** Reads a stream for `ms`, noting the job id of an attached submit (its first frame), then hangs up. */
  const learnStream = async (r: Mutated, stream: ReadableStream<Uint8Array>, ms: number, ac: AbortController) => {
    const deadline = Date.now() + ms
    const reader = stream.getReader()
    const dec = new FrameDecoder()
    let needJob = r.route === "POST /api/v1/jobs"
    try {
      for (;;) {
        const left = deadline - Date.now()
        // An accepted attached submit is only known from its first frame: wait for it however long it takes.
        if (left <= 0 && !needJob) break
        const chunk = await Promise.race([
          reader.read(),
          Bun.sleep(Math.max(left, needJob ? ANSWER_TIMEOUT_MS : 0)).then(() => undefined),
        ])
        if (!chunk || chunk.done) break
        if (needJob) {
          for (const f of dec.push(chunk.value)) {
            if (f.kind !== Kind.event) continue
            const job = (frameJson(f) as { job?: { id: string } }).job
            if (job?.id) accept(job.id, r)
            needJob = false
          }
        }
      }
    } finally {
      ac.abort()
      reader.releaseLock()
    }
  }

  const accept = (id: string, r: Mutated) => {
    state.accepted.set(id, r.submit ?? { label: "mutated", binary: "?", args: [], hostile: false })
    state.remember(id)
  }

  const learn = (r: Mutated, res: Response, bytes: Uint8Array) => {
    if (!res.ok) return
    let body: unknown
    const json = () => {
      if (body === undefined) {
        try {
          body = JSON.parse(new TextDecoder().decode(bytes))
        } catch {
          body = null
        }
      }
      return body as Record<string, unknown> | null
    }
    if (r.route === "POST /api/v1/jobs" && typeof json()?.id === "string") accept(json()!.id as string, r)
    else if (r.route === "GET /api/v1/jobs" && Array.isArray(json()))
      for (const j of (json() as unknown as { id: string }[]).slice(0, 5)) state.remember(j.id)
    else if (r.route === "GET /api/v1/worker/poll" && r.as === "fzw") {
      const b = json() as { jobs?: { id: string; epoch: number }[]; verify?: string } | null
      if (b?.verify) state.verifyToken = b.verify
      for (const j of b?.jobs ?? [])
        if (!state.assigned.some((a) => a.id === j.id && a.epoch === j.epoch))
          state.assigned.push({ id: j.id, epoch: j.epoch, seq: 1 })
      if (state.assigned.length > 50) state.assigned.splice(0, state.assigned.length - 50)
    } else if (r.route === "POST /api/v1/jobs/:id/start" && r.as === "fzw") {
      for (const a of state.assigned) if (a.id === r.id) a.started = true
    } else if (r.route === "POST /api/v1/jobs/:id/output" && json()?.finished === true) {
      const i = state.assigned.findIndex((a) => a.id === r.id)
      if (i !== -1) state.assigned.splice(i, 1)
    } else if (r.route === "POST /api/v1/admin/users" && res.status === 201) {
      const name = (json()?.user as { name?: string } | undefined)?.name
      if (name && name.startsWith("fzu")) state.users.push(name)
    } else if (r.route === "POST /dashboard/login") {
      const c = res.headers.get("set-cookie")
      if (c && /^[^=]+=[^;]+/.test(c)) state.cookie = c.split(";")[0]
    }
  }

  const tally = (r: Mutated, status: number, ms: number) => {
    const counts = (byRoute[r.route] ??= { "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, error: 0, totalMs: 0, maxMs: 0 })
    const cls = status <= 0 ? "error" : (`${Math.floor(status / 100)}xx` as "2xx")
    if (cls in counts) counts[cls]++
    counts.totalMs += ms
    if (ms > counts.maxMs) counts.maxMs = Math.round(ms)
    const key = status === -1 ? "closed" : status || "none"
    byStatus[key] = (byStatus[key] ?? 0) + 1
    for (const l of r.labels) {
      const k = l.replace(/-\d+M?$/, "")
      labels[k] = (labels[k] ?? 0) + 1
    }
  }

  const weights = ROUTES.map((r) => [r.weight, r] as const)
  const startupSpawns = new Set(cluster.spawns().map((s) => s.file))
  // Set up the fuzzer's own worker identity (registered and verified) and a dashboard session first.
  for (const name of [
    "POST /api/v1/worker/register",
    "GET /api/v1/worker/poll",
    "POST /api/v1/worker/verify",
    "POST /dashboard/login",
  ]) {
    const g = new Gen(o.seed)
    const r = ROUTES.find((x) => x.name === name)!.make(g, state) as Mutated
    if (name === "POST /dashboard/login") r.body = JSON.stringify({ name: "fzadmin", key: "__KEY__" })
    if (name === "POST /api/v1/worker/register")
      r.body = JSON.stringify({ binaries: ["ffmpeg", "ffprobe"], paths: ["Media"], maxJobs: 2, version: "fuzz" })
    if (name === "POST /api/v1/worker/verify") r.body = JSON.stringify({ token: state.verifyToken })
    if (name === "GET /api/v1/worker/poll") r.query = [["wait", "0"]]
    r.setup = true
    await send(r)
  }

  const t0 = performance.now()
  const deadline = t0 + o.maxSeconds * 1000
  let next = 0
  let sent = 0
  let timedOut = false
  const lane = async () => {
    for (;;) {
      const i = next++
      if (i >= o.count) return
      if (performance.now() > deadline) {
        timedOut = true
        return
      }
      // One stream of choices per request index: request i has the same shape for the same seed.
      const g = new Gen((Math.imul(o.seed, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0)
      const route = g.weighted(weights)
      let r: Mutated
      try {
        r = route.make(g, state) as Mutated
        if (g.chance(o.mutateRate)) mutate(g, r)
      } catch (err) {
        // The fuzzer's own bug: reported (and failing the run) without stopping it.
        violate("fuzzer", `request ${i} (${route.name}) could not be made: ${(err as Error).stack ?? err}`)
        continue
      }
      const t = performance.now()
      const status = await send(r)
      sent++
      tally(r, status, performance.now() - t)
      if (sent % 1000 === 0)
        log(
          `${sent} requests, ${((performance.now() - t0) / 1000).toFixed(1)} s, RSS ${(rss.peak / 1048576).toFixed(0)} MB peak`,
        )
    }
  }
  await Promise.all(Array.from({ length: o.concurrency }, lane))
  const elapsed = (performance.now() - t0) / 1000
  if (timedOut) violate("time", `stopped at --max-seconds ${o.maxSeconds} after ${sent} of ${o.count} requests`)

  // ---- end checks ----
  sample()
  clearInterval(sampler)
  const endRss = cluster.coordinatorRss()
  const cpu = cluster.coordinatorCpuSeconds()
  if (!cluster.alive(cluster.coordinator))
    violate(
      "dead",
      `the coordinator exited (${cluster.coordinator.proc.exitCode ?? cluster.coordinator.proc.signalCode}); log tail:\n${cluster.coordinator.stderrText.slice(-20).join("\n")}`,
    )
  if (!cluster.alive(cluster.worker))
    violate(
      "dead",
      `the worker exited (${cluster.worker.proc.exitCode ?? cluster.worker.proc.signalCode}); log tail:\n${cluster.worker.stderrText.slice(-20).join("\n")}`,
    )
  try {
    const h = await fetch(`${cluster.url}/health`, { signal: AbortSignal.timeout(5000) })
    if (h.status !== 200) violate("health", `/health answered ${h.status}: ${(await h.text()).slice(0, 300)}`)
  } catch (err) {
    violate("health", `/health did not answer: ${(err as Error).message}`)
  }
  if (rss.peak > o.maxRssMb * 1048576)
    violate(
      "rss",
      `coordinator RSS peaked at ${(rss.peak / 1048576).toFixed(0)} MB, over the bound of ${o.maxRssMb} MB`,
    )

  // The worker stops first: after that nothing can spawn, and every spawn has its `job started` line.
  const workerExit = await cluster.worker.stop("SIGTERM", 10_000)
  if (workerExit !== 0)
    log(
      `the worker exited ${workerExit} after SIGTERM; its last lines:\n${cluster.worker.stderrText.slice(-15).join("\n")}`,
    )
  const started = cluster.startedJobs()
  const spawns = cluster.spawns().filter((s) => !startupSpawns.has(s.file))
  const check = checkSpawns(spawns, started, state.accepted)
  for (const line of check.unexplained) violate("spawn", line)
  const coordinatorExit = await cluster.coordinator.stop("SIGTERM", 10_000)
  const canaryHits = canaryHitCount()
  // The worker's argument policy refuses every network URL (allow_network is off): not one may arrive.
  if (canaryHits > 0) violate("ssrf", `the loopback canary server was fetched ${canaryHits} time(s) by jobs`)

  const mb = (b: number) => Math.round(b / 104857.6) / 10
  return {
    seed: o.seed,
    requested: o.count,
    sent,
    elapsedSeconds: Math.round(elapsed * 10) / 10,
    requestsPerSecond: Math.round(sent / elapsed),
    concurrency: o.concurrency,
    byRoute,
    byStatus,
    labels,
    rss: { startMb: mb(rss.start), peakMb: mb(rss.peak), endMb: mb(endRss), boundMb: o.maxRssMb, samples: rss.samples },
    jobs: {
      accepted: state.accepted.size,
      acceptedHostile: [...state.accepted.values()].filter((j) => j.hostile).length,
    },
    spawns: {
      total: spawns.length + startupSpawns.size,
      startup: startupSpawns.size,
      fromAcceptedJobs: check.fromAccepted,
      hostile: check.hostile,
      unexplained: check.unexplained.length,
    },
    canaryHits,
    coordinatorCpuSeconds: cpu,
    exits: { worker: workerExit, coordinator: coordinatorExit },
    violations,
    violationCount,
  }
}

function print(s: Summary): string {
  const lines: string[] = []
  lines.push(
    `dffmpeg fuzz: seed ${s.seed}, ${s.sent}/${s.requested} requests in ${s.elapsedSeconds} s (${s.requestsPerSecond} req/s, ${s.concurrency} in flight)`,
  )
  lines.push("")
  lines.push(
    `${"route".padEnd(44)} ${["2xx", "3xx", "4xx", "5xx", "error", "avg ms", "max ms"].map((k) => k.padStart(6)).join(" ")}`,
  )
  for (const [route, c] of Object.entries(s.byRoute).sort()) {
    const n = c["2xx"] + c["3xx"] + c["4xx"] + c["5xx"] + c.error
    lines.push(
      `${route.padEnd(44)} ${[c["2xx"], c["3xx"], c["4xx"], c["5xx"], c.error, Math.round(c.totalMs / n), c.maxMs].map((x) => String(x).padStart(6)).join(" ")}`,
    )
  }
  lines.push("")
  lines.push(
    `statuses: ${Object.entries(s.byStatus)
      .map(([k, n]) => `${k}×${n}`)
      .join(" ")}`,
  )
  lines.push(
    `coordinator RSS: start ${s.rss.startMb} MB, peak ${s.rss.peakMb} MB, end ${s.rss.endMb} MB (bound ${s.rss.boundMb} MB, ${s.rss.samples} samples)`,
  )
  lines.push(`jobs accepted: ${s.jobs.accepted} (${s.jobs.acceptedHostile} with hostile arguments)`)
  lines.push(
    `spawns: ${s.spawns.total - s.spawns.startup} during the run (${s.spawns.fromAcceptedJobs} of accepted jobs, ${s.spawns.hostile} of them hostile; ${s.spawns.unexplained} unexplained), ${s.spawns.startup} at start-up`,
  )
  lines.push(`coordinator CPU: ${s.coordinatorCpuSeconds} s`)
  lines.push(`loopback canary (SSRF) hits: ${s.canaryHits}`)
  lines.push(`exit codes after SIGTERM: worker ${s.exits.worker}, coordinator ${s.exits.coordinator}`)
  lines.push("")
  if (!s.violationCount)
    lines.push(
      "OK: no 5xx, no unanswered request, both processes alive, /health 200, no spawn from a rejected input, RSS within the bound",
    )
  else {
    lines.push(`FAILED: ${s.violationCount} violation(s); reproduce with --seed ${s.seed}`)
    for (const v of s.violations) lines.push(`  [${v.kind}] ${v.detail}`)
  }
  return lines.join("\n")
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      seed: { type: "string" },
      count: { type: "string", default: "10000" },
      concurrency: { type: "string", default: "32" },
      "max-seconds": { type: "string", default: "300" },
      "max-rss-mb": { type: "string", default: "400" },
      "mutate-rate": { type: "string", default: "0.6" },
      json: { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      "fat-jobs": { type: "boolean", default: true },
      quiet: { type: "boolean", default: false },
    },
  })
  const num = (name: string, raw: string | undefined, min: number) => {
    const n = Number(raw)
    if (!Number.isFinite(n) || n < min) {
      console.error(`dffmpeg fuzz: --${name} must be a number ≥ ${min}`)
      process.exit(2)
    }
    return n
  }
  const seed = values.seed === undefined ? (Math.random() * 2 ** 31) >>> 0 : num("seed", values.seed, 0) >>> 0
  const opts: FuzzOptions = {
    seed,
    count: num("count", values.count, 1),
    concurrency: num("concurrency", values.concurrency, 1),
    maxSeconds: num("max-seconds", values["max-seconds"], 1),
    maxRssMb: num("max-rss-mb", values["max-rss-mb"], 1),
    mutateRate: Math.min(1, num("mutate-rate", values["mutate-rate"], 0)),
    keep: values.keep!,
    fatJobs: values["fat-jobs"]!,
    log: values.quiet ? undefined : (l) => console.error(`fuzz: ${l}`),
  }
  console.error(
    `fuzz: seed ${seed} (reproduce with --seed ${seed}), ${opts.count} requests, ${opts.concurrency} in flight`,
  )
  const summary = await runFuzz(opts)
  console.log(values.json ? JSON.stringify(summary, null, 2) : print(summary))
  process.exit(summary.violationCount ? 1 : 0)
}
