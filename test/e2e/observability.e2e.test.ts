import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { Job, Worker } from "../../src/shared/protocol/schemas.ts"
import { apiFor } from "../helpers/api.ts"
import { BIN, waitFor } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { Proc } from "../helpers/proc.ts"
import { md5, sample } from "../helpers/media.ts"
import { parseProm, value } from "../helpers/prom.ts"
import { rawFetch, signedFetch } from "../helpers/signed.ts"

/**
 * What an operator's tools see of a live cluster: /metrics after real jobs, /health, and the progress
 * a worker parses from a real transcode of known length.
 */
let c: Cluster

beforeAll(async () => {
  c = await Cluster.start({
    workers: 1,
    maxJobs: 3,
    coordinatorConfig: { heartbeat_interval: 0.5, registration_interval: 1 },
  })
  copyFileSync(await sample("av10s.mkv"), join(c.storage, "av10s.mkv"))
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
}, 60_000)
afterAll(async () => {
  await c?.stop()
})

const scrape = async (headers: Record<string, string> = {}) => {
  const res = await rawFetch(c.url, { method: "GET", path: "/metrics", headers })
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() }
}

describe("metrics", () => {
  test("counts jobs by state, requests by route and auth failures after real jobs", async () => {
    const probe = ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]
    for (let i = 0; i < 3; i++) expect((await c.run("ffprobe", [...probe, join(c.clientMedia, "av.mkv")])).code).toBe(0)
    expect((await c.run("ffprobe", [...probe, join(c.clientMedia, "missing.mkv")])).code).toBe(1)
    // A request with a wrong signature.
    const bad = await signedFetch(c.url, {
      client: "client1",
      key: Buffer.alloc(32, 7).toString("base64"),
      method: "GET",
      path: "/api/v1/jobs",
    })
    expect(bad.status).toBe(401)

    const m = await scrape()
    expect(m.status).toBe(200)
    expect(m.type).toContain("text/plain; version=0.0.4")
    const { samples } = parseProm(m.text)
    expect(value(samples, "dffmpeg_jobs", { state: "completed" })).toBe(3)
    expect(value(samples, "dffmpeg_jobs", { state: "failed" })).toBe(1)
    expect(value(samples, "dffmpeg_jobs_finished_total", { binary: "ffprobe", state: "completed" })).toBe(3)
    expect(value(samples, "dffmpeg_jobs_finished_total", { binary: "ffprobe", state: "failed" })).toBe(1)
    expect(value(samples, "dffmpeg_jobs_submitted_total", { binary: "ffprobe" })).toBe(4)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_count", { binary: "ffprobe" })).toBe(4)
    expect(value(samples, "dffmpeg_job_duration_seconds_count", { binary: "ffprobe" })).toBe(4)
    expect(value(samples, "dffmpeg_queue_depth")).toBe(0)
    expect(value(samples, "dffmpeg_workers", { state: "online" })).toBe(1)
    expect(value(samples, "dffmpeg_slots")).toBe(3)
    expect(value(samples, "dffmpeg_slots_used")).toBe(0)
    // The proxy's submissions, by route pattern (the job id never becomes a label).
    expect(value(samples, "dffmpeg_http_requests_total", { method: "POST", route: "/api/v1/jobs", code: "200" })).toBe(
      4,
    )
    expect(samples.some((s) => /[0-9A-HJKMNP-TV-Z]{26}/.test(s.labels.route ?? ""))).toBe(false)
    expect(value(samples, "dffmpeg_auth_failures_total", { reason: "signature" })).toBe(1)
    expect(value(samples, "dffmpeg_http_requests_total", { route: "/api/v1/jobs", code: "401" })).toBe(1)
    // How long requests took, by route pattern and status class.
    const d = { method: "POST", route: "/api/v1/jobs", code_class: "2xx" }
    expect(value(samples, "dffmpeg_http_request_duration_seconds_count", d)).toBe(4)
    expect(value(samples, "dffmpeg_http_request_duration_seconds_bucket", { ...d, le: "+Inf" })).toBe(4)
    // The coordinator process itself.
    expect(value(samples, "process_resident_memory_bytes")).toBeGreaterThan(0)
    expect(value(samples, "process_open_fds")).toBeGreaterThan(0)
    // The worker's host, from its heartbeats (this machine's /proc).
    const cpus = await waitFor(async () =>
      value(parseProm((await scrape()).text).samples, "dffmpeg_worker_cpus", { worker: "worker1" }),
    )
    expect(cpus).toBeGreaterThanOrEqual(1)
    // No series names a job.
    for (const s of samples) expect(Object.keys(s.labels)).not.toContain("job")
    // And the live exposition is clean for Prometheus' own linter.
    const lint = Bun.spawn(["promtool", "check", "metrics"], {
      stdin: new TextEncoder().encode(m.text),
      stdout: "pipe",
      stderr: "pipe",
    })
    const [out, err, code] = await Promise.all([
      new Response(lint.stdout).text(),
      new Response(lint.stderr).text(),
      lint.exited,
    ])
    expect(`${code} ${out}${err}`).toBe("0 ")
  }, 60_000)

  test("workers report their host load: admin workers ls shows it, --json as hostLoad", async () => {
    const row = await waitFor(async () => {
      const r = await c.admin(["workers", "ls", "--json"])
      const w = (JSON.parse(r.out) as Worker[]).find((x) => x.id === "worker1")
      return w?.hostLoad ? w : undefined
    })
    const l = row.hostLoad!
    expect(Object.keys(l).sort()).toEqual([
      "at",
      "cpuPercent",
      "cpus",
      "gpus",
      "load1",
      "memTotalBytes",
      "memUsedBytes",
    ])
    expect(l.memTotalBytes).toBeGreaterThan(l.memUsedBytes)
    expect(l.cpuPercent).toBeGreaterThanOrEqual(0)
    expect(l.cpuPercent).toBeLessThanOrEqual(100)
    expect(Date.parse(l.at)).toBeGreaterThan(0)
    // This machine has no GPU: an empty list, not an error.
    expect(l.gpus).toEqual([])
    const text = await c.admin(["workers", "ls"])
    expect(text.code).toBe(0)
    const [head, line] = text.out.split("\n")
    expect(head).toContain("CPU")
    expect(head).toContain("MEM")
    expect(line).toMatch(/\d+%/)
    expect(line).toMatch(/\d+(\.\d)?\/\d+(\.\d)? GiB/)
    // The same field through the client's view of the pool.
    const client = await c.client("workers", ["--json"])
    expect(client.code, client.err).toBe(0)
    expect((JSON.parse(client.out) as Worker[])[0].hostLoad).toMatchObject({
      cpus: l.cpus,
      memTotalBytes: l.memTotalBytes,
    })
  }, 60_000)

  test("is refused outside allowed_metrics_ips, and a trusted proxy's X-Forwarded-For is what counts", async () => {
    const d = await Cluster.start({ workers: 0, coordinatorConfig: { allowed_metrics_ips: ["10.0.0.0/8"] } })
    try {
      const direct = await rawFetch(d.url, { method: "GET", path: "/metrics" })
      expect(direct.status).toBe(403)
      expect(((await direct.json()) as { error: { message: string } }).error.message).toContain("allowed_metrics_ips")
      // 127.0.0.1 is a trusted proxy by default: the address it forwards for is checked.
      expect(
        (await rawFetch(d.url, { method: "GET", path: "/metrics", headers: { "x-forwarded-for": "10.1.2.3" } })).status,
      ).toBe(200)
      // Entries left of the trusted hops are the client's to invent: only the right-most untrusted one counts.
      expect(
        (
          await rawFetch(d.url, {
            method: "GET",
            path: "/metrics",
            headers: { "x-forwarded-for": "10.1.2.3, 8.8.8.8" },
          })
        ).status,
      ).toBe(403)
    } finally {
      await d.stop()
    }
    const e = await Cluster.start({
      workers: 0,
      coordinatorConfig: { allowed_metrics_ips: ["10.0.0.0/8"], trusted_proxies: [] },
    })
    try {
      expect(
        (await rawFetch(e.url, { method: "GET", path: "/metrics", headers: { "x-forwarded-for": "10.1.2.3" } })).status,
      ).toBe(403)
    } finally {
      await e.stop()
    }
  }, 60_000)
})

describe("short timings", () => {
  test("a sub-second poll_wait_seconds is accepted by the poll route: the worker verifies and runs jobs", async () => {
    const d = await Cluster.start({ workers: 1, coordinatorConfig: { poll_wait_seconds: 0.5 } })
    try {
      copyFileSync(await sample("av.mkv"), join(d.storage, "av.mkv"))
      const r = await d.run("ffprobe", [
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "csv=p=0",
        join(d.clientMedia, "av.mkv"),
      ])
      expect(r.code).toBe(0)
      expect(d.coordinator.log()).not.toContain("must be a non-negative")
    } finally {
      await d.stop()
    }
  }, 60_000)
})

describe("health", () => {
  test("reports each component", async () => {
    const res = await rawFetch(c.url, { method: "GET", path: "/health" })
    expect(res.status).toBe(200)
    const body = (await res.json()) as {
      status: string
      version: string
      uptimeSeconds: number
      components: Record<string, { status: string }>
    }
    expect(body).toMatchObject({
      status: "ok",
      components: {
        database: { engine: "sqlite", status: "ok" },
        transport: { kind: "http", status: "ok" },
        notifier: { kind: "memory", status: "ok" },
      },
    })
    expect(body.uptimeSeconds).toBeGreaterThanOrEqual(0)
  })
})

describe("progress", () => {
  test("a real-time transcode of known length reports percent, speed and ETA while it runs, and 100 % at the end", async () => {
    const api = apiFor(c, "client1")
    const out = join(c.clientMedia, "progress.mp4")
    // -re reads at real time, so the 4 s cut (-t) takes about 4 s and speed is about 1x.
    const run = c.run("ffmpeg", [
      "-hide_banner",
      "-re",
      "-i",
      join(c.clientMedia, "av10s.mkv"),
      "-t",
      "4",
      "-c:v",
      "libx264",
      "-preset",
      "ultrafast",
      "-c:a",
      "aac",
      "-y",
      out,
    ])
    const seen: NonNullable<Job["progress"]>[] = []
    const mid = await waitFor(
      async () => {
        const jobs = await api.json<Job[]>("GET", "/api/v1/jobs", { query: { status: "running" } })
        const p = jobs[0]?.progress
        if (p) seen.push(p)
        return p && p.percent !== null && p.percent > 10 && p.percent < 90 ? { job: jobs[0], p } : undefined
      },
      { timeoutMs: 15_000, intervalMs: 100, what: "progress between 10 and 90 %" },
    )
    expect(mid.p.durationMs).toBe(4000)
    expect(mid.p.speed).toBeGreaterThan(0.5)
    expect(mid.p.speed).toBeLessThan(2)
    expect(mid.p.etaMs).toBeGreaterThan(0)
    expect(mid.p.etaMs!).toBeLessThan(4000)
    // The same progress is a metric while the job runs.
    const { samples } = parseProm((await scrape()).text)
    expect(value(samples, "dffmpeg_running_jobs", { worker: "worker1", binary: "ffmpeg" })).toBe(1)
    expect(value(samples, "dffmpeg_running_jobs_speed_ratio_sum", { worker: "worker1" })).toBeGreaterThan(0)

    const r = await run
    expect(r.code).toBe(0)
    // The caller's stderr still has ffmpeg's own \r status lines, untouched.
    expect(r.err).toMatch(/time=00:00:0\d\.\d\d bitrate=.*\r/)
    const done = await api.json<Job>("GET", `/api/v1/jobs/${mid.job.id}`)
    expect(done.status).toBe("completed")
    expect(done.progress).toMatchObject({ durationMs: 4000, percent: 100 })
    console.log(`progress samples while running: ${seen.map((p) => `${p.percent}%@${p.speed}x`).join(" ")}`)
  }, 60_000)

  test("-progress pipe:1 on stdout is parsed from a copy, and stdout reaches the caller intact", async () => {
    const args = [
      "-hide_banner",
      "-nostats",
      "-i",
      join(c.clientMedia, "av.mkv"),
      "-progress",
      "pipe:1",
      "-f",
      "null",
      "-",
    ]
    const r = await c.run("ffmpeg", args)
    expect(r.code).toBe(0)
    const local = await c.local("ffmpeg", [
      "-hide_banner",
      "-nostats",
      "-i",
      join(c.storage, "av.mkv"),
      "-progress",
      "pipe:1",
      "-f",
      "null",
      "-",
    ])
    // The same keys in the same order as a local run (values such as speed differ run to run).
    const keys = (s: string) => s.split("\n").map((l) => l.split("=")[0])
    expect(keys(r.out)).toEqual(keys(local.out))
    expect(r.out).toContain("progress=end")
    const api = apiFor(c, "client1")
    const [job] = await api.json<Job[]>("GET", "/api/v1/jobs", { query: { limit: 1 } })
    // The 2 s sample's container says 2.02 s (AAC priming); the end block says 100 %.
    expect(job.progress?.percent).toBe(100)
    expect(Math.abs(job.progress!.durationMs! - 2000)).toBeLessThan(100)
    expect(job.progress!.timeMs).toBeGreaterThan(1900)
  }, 60_000)

  const words = (s: string) => s.split(" ")

  /**
   * Runs a quiet real-time job through the proxy, watching its progress at the coordinator until it is
   * between 5 and 95 %, then the same command with local ffmpeg on the storage's own paths. `args` is
   * given the media directory and a name prefix for the files it writes.
   */
  async function quietJob(args: (media: string, prefix: string) => string[]) {
    const api = apiFor(c, "client1")
    const remote = c.run("ffmpeg", args(c.clientMedia, "remote"))
    const seen: string[] = []
    const mid = await waitFor(
      async () => {
        const [job] = await api.json<Job[]>("GET", "/api/v1/jobs", { query: { status: "running" } })
        const p = job?.progress
        if (p) seen.push(`${p.percent}%@${p.speed}x`)
        return p && p.percent !== null && p.percent > 5 && p.percent < 95 && p.speed !== null ? { job, p } : undefined
      },
      { timeoutMs: 20_000, intervalMs: 100, what: "progress between 5 and 95 % with a speed" },
    )
    // The same progress everywhere the coordinator shows it.
    const status = await c.client("status", [mid.job.id])
    // No series per job: the running jobs' speeds are summed per worker and binary.
    const speedSum = value(parseProm((await scrape()).text).samples, "dffmpeg_running_jobs_speed_ratio_sum", {
      worker: "worker1",
      binary: "ffmpeg",
    })
    const r = await remote
    const done = await api.json<Job>("GET", `/api/v1/jobs/${mid.job.id}`)
    const local = await c.local("ffmpeg", args(c.storage, "local"))
    console.log(`progress samples while running: ${seen.join(" ")}`)
    return { ...mid, status, speedSum, r, done, local }
  }

  test("a -v error -nostats transcode shows percent, speed and ETA while it runs and reaches 100 %; the caller sees local ffmpeg's bytes", async () => {
    // No -t: the length is the worker's own probe of the input (10.02 s) less the input -ss 6.
    const args = (media: string, prefix: string) => [
      ...words("-v error -nostats -re -ss 6 -i"),
      join(media, "av10s.mkv"),
      ...words("-c:v libx264 -preset ultrafast -c:a aac -y"),
      join(media, `${prefix}-quiet.mp4`),
    ]
    const q = await quietJob(args)
    expect(Math.abs(q.p.durationMs! - 4023)).toBeLessThan(50)
    expect(q.p.speed).toBeGreaterThan(0)
    expect(q.p.etaMs).toBeGreaterThan(0)
    expect(q.status.out).toMatch(/progress\s+\d+(\.\d)?% \d+\.\d+x eta \d+:\d\d/)
    expect(q.speedSum).toBeGreaterThan(0)
    expect(q.done.status).toBe("completed")
    expect(q.done.progress).toMatchObject({ percent: 100, etaMs: 0 })
    // Exactly what the caller would have seen and got from a local ffmpeg: nothing on either stream, the same file.
    expect([q.r.code, q.r.stdout.length, q.r.stderr.length]).toEqual([q.local.code, 0, 0])
    expect(q.local.code).toBe(0)
    expect(md5(readFileSync(join(c.storage, "remote-quiet.mp4")))).toBe(
      md5(readFileSync(join(c.storage, "local-quiet.mp4"))),
    )
  }, 60_000)

  test("-loglevel quiet with media on stdout: progress at the coordinator, stdout byte for byte local ffmpeg's", async () => {
    const args = (media: string) => [
      ...words("-loglevel quiet -re -ss 6 -i"),
      join(media, "av10s.mkv"),
      ...words("-map 0 -c copy -f mpegts -"),
    ]
    const q = await quietJob(args)
    expect(Math.abs(q.p.durationMs! - 4023)).toBeLessThan(50)
    expect(q.p.speed).toBeGreaterThan(0)
    expect(q.done.progress).toMatchObject({ percent: 100, etaMs: 0 })
    expect(q.r.code).toBe(0)
    expect(q.local.code).toBe(0)
    expect(q.r.stdout.length).toBeGreaterThan(100_000)
    expect(md5(q.r.stdout)).toBe(md5(q.local.stdout))
    expect([q.r.stderr.length, q.local.stderr.length]).toEqual([0, 0])
  }, 60_000)

  test("a caller's -progress pipe:1 under -v error stays alone on stdout, read there, with the probed length", async () => {
    const args = (media: string) => ["-v", "error", "-i", join(media, "av.mkv"), ...words("-progress pipe:1 -f null -")]
    const r = await c.run("ffmpeg", args(c.clientMedia))
    const local = await c.local("ffmpeg", args(c.storage))
    expect([r.code, r.err]).toEqual([0, ""])
    expect([local.code, local.err]).toEqual([0, ""])
    // One -progress only, the caller's: the same blocks, key for key, as local ffmpeg writes.
    const keys = (s: string) => s.split("\n").map((l) => l.split("=")[0])
    expect(keys(r.out)).toEqual(keys(local.out))
    expect(r.out.match(/progress=end/g)?.length).toBe(1)
    const [job] = await apiFor(c, "client1").json<Job[]>("GET", "/api/v1/jobs", { query: { limit: 1 } })
    expect(job.progress?.percent).toBe(100)
    expect(Math.abs(job.progress!.durationMs! - 2000)).toBeLessThan(100)
  }, 60_000)

  test("a caller's -progress to a file is the only one: ffmpeg writes it there as locally", async () => {
    const args = (media: string, prefix: string) => [
      ...words("-hide_banner -nostats -i"),
      join(media, "av.mkv"),
      "-progress",
      join(media, `${prefix}-progress.txt`),
      ...words("-f null -"),
    ]
    const r = await c.run("ffmpeg", args(c.clientMedia, "remote"))
    const local = await c.local("ffmpeg", args(c.storage, "local"))
    expect([r.code, local.code]).toEqual([0, 0])
    expect(r.out).toBe("")
    const keys = (file: string) =>
      readFileSync(join(c.storage, file), "utf8")
        .split("\n")
        .map((l) => l.split("=")[0])
    expect(keys("remote-progress.txt")).toEqual(keys("local-progress.txt"))
    expect(readFileSync(join(c.storage, "remote-progress.txt"), "utf8")).toContain("progress=end")
  }, 60_000)

  test("with FFREPORT the report's command line is the caller's: the worker adds no -progress", async () => {
    const report = join(c.clientMedia, "ffreport.log")
    const args = ["-v", "error", "-i", join(c.clientMedia, "av.mkv"), ...words("-t 0.5 -f null -")]
    const r = await c.run("ffmpeg", args, { env: { FFREPORT: `file=${report}:level=32` } })
    expect([r.code, r.err]).toEqual([0, ""])
    const lines = readFileSync(join(c.storage, "ffreport.log"), "utf8").split("\n")
    const command = lines[lines.indexOf("Command line:") + 1]
    expect(command).toMatch(/^\S*ffmpeg -v error -protocol_whitelist file,pipe -i /)
    expect(command).not.toContain("progress")
  }, 60_000)

  test("at -v debug the worker adds nothing ffmpeg would log: the caller's debug output names no pipe of the worker's", async () => {
    const r = await c.run("ffmpeg", ["-v", "debug", "-nostats", "-i", join(c.clientMedia, "av.mkv"), "-f", "null", "-"])
    expect(r.code).toBe(0)
    expect(r.err).toContain("Splitting the commandline.")
    // ffmpeg logs every option it reads at this level, and the AVIOContext statistics of each pipe it closes.
    expect(r.err).toContain("Reading option '-nostats'")
    expect(r.err).not.toContain("-progress")
    expect(r.err).not.toContain("pipe:4")
    expect(r.err.match(/\] Statistics: /g)?.length).toBe(1)
  }, 60_000)

  test("client submit on a terminal shows where the job is while its output is quiet; the proxy on a terminal never does", async () => {
    // ffmpeg's own status line every 2 s leaves quiet seconds in between, where the status line may draw.
    const args = `-hide_banner -stats_period 2 -re -i ${join(c.clientMedia, "av10s.mkv")} -t 5 -f null -`
    const onTty = (cmd: string) => c.exec(["script", "-qfec", cmd, "/dev/null"], { timeoutMs: 30_000 })
    const cli = await onTty(`${BIN} client submit --config ${c.clientConfig} -- ${args}`)
    expect(cli.code).toBe(0)
    expect(cli.out).toMatch(/dffmpeg: running on worker1 · \d+(\.\d)?% · \d+\.\d+× · ETA \d+:\d\d/)
    // ffmpeg's own lines are still all there.
    expect(cli.out).toContain("time=00:00:05.00")
    const proxy = await onTty(`DFFMPEG_CLIENT_CONFIG=${c.clientConfig} ${join(c.binDir, "ffmpeg")} ${args}`)
    expect(proxy.code).toBe(0)
    expect(proxy.out).toContain("time=00:00:05.00")
    expect(proxy.out).not.toContain("dffmpeg:")
  }, 60_000)
})

describe("logs", () => {
  /** Each stderr line of `p` as the JSON object it must be, with the stable keys and nothing else. */
  const jsonLines = (p: { stderrText: string[]; name: string }) =>
    p.stderrText.map((line) => {
      const o = JSON.parse(line) as {
        time: string
        level: string
        tag: string | null
        msg: string
        fields: Record<string, unknown>
      }
      expect(Object.keys(o)).toEqual(["time", "level", "tag", "msg", "fields"])
      expect(Date.parse(o.time)).toBeGreaterThan(0)
      return o
    })

  test("log_format json (env, config key) on every line; the access log; re-registration at debug", async () => {
    const j = await Cluster.start({
      workers: 1,
      // A re-registration goes between polls: short polls make it come soon.
      coordinatorConfig: {
        access_log: true,
        heartbeat_interval: 0.5,
        registration_interval: 0.5,
        poll_wait_seconds: 0.5,
      },
      workerConfig: { log_format: "json", log_level: "debug" },
      // The coordinator's from the environment (every process gets it; only servers log).
      env: { DFFMPEG_LOG_FORMAT: "json" },
    })
    try {
      expect((await j.run("ffmpeg", ["-hide_banner", "-f", "lavfi", "-i", "sine=d=0.2", "-f", "null", "-"])).code).toBe(
        0,
      )
      // Routine: an idle worker's re-registration is a debug line.
      await j.workers[0].waitForLine(/"msg":"worker re-registered"/)
      const worker = jsonLines(j.workers[0])
      expect(worker.filter((l) => l.msg === "worker re-registered").map((l) => l.level)).toContain("debug")
      expect(worker.some((l) => l.msg === "worker re-registered" && l.level !== "debug")).toBe(false)
      expect(worker.find((l) => l.msg === "job started")).toMatchObject({ level: "info", tag: "worker:runner" })
      const coordinator = jsonLines(j.coordinator)
      expect(coordinator.find((l) => l.msg === "job running")).toMatchObject({
        level: "info",
        fields: { worker: "worker1" },
      })
      // One access line per request: method, path, status; identity, address, duration, bytes.
      const access = coordinator.filter((l) => l.tag?.endsWith("access"))
      const submit = access.find((l) => l.msg === "POST /api/v1/jobs 200")
      expect(submit?.fields).toMatchObject({ identity: "client1", remote: "127.0.0.1" })
      expect(typeof submit?.fields.ms).toBe("number")
      // Written once the answer went out whole: an attached submission's stream, its bytes counted.
      expect(submit?.fields.bytes as number).toBeGreaterThan(0)
      const poll = access.find((l) => l.msg === "GET /api/v1/worker/poll 200" && l.fields.identity === "worker1")
      expect(poll?.fields.bytes as number).toBeGreaterThan(1)
      // Never a query string (signatures, nonces, tokens) nor a key.
      const key = j.key("client1")
      for (const l of access) {
        expect(l.msg).not.toContain("?")
        expect(JSON.stringify(l)).not.toContain(key)
        expect(
          Object.keys(l.fields)
            .filter((k) => k !== "aborted")
            .sort(),
        ).toEqual(["bytes", "identity", "ms", "remote"])
      }
    } finally {
      await j.stop()
    }
  }, 60_000)

  test("--log-format on the command line wins over the environment; a bad value is a usage error (exit 2, as --log-level), a bad environment value exit 3", async () => {
    const d = await Cluster.start({ workers: 0, env: { DFFMPEG_LOG_FORMAT: "json" } })
    try {
      // Started with the environment's json: every line so far is JSON, access log off.
      expect(jsonLines(d.coordinator).some((l) => l.tag?.endsWith("access"))).toBe(false)
      // A coordinator of its own (its own database), told text on the command line.
      const own = join(d.dir, "text.yaml")
      writeFileSync(own, JSON.stringify({ host: "127.0.0.1", port: 0, database: { path: "./text.db" } }))
      const text = Bun.spawn([BIN, "coordinator", "--config", own, "--log-format", "text"], {
        cwd: d.dir,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: d.dir, DFFMPEG_LOG_FORMAT: "json" },
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      })
      const p = new Proc("text", text)
      const listening = (await p.waitForLine(/listening on/)).input
      expect(listening).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  \[coordinator\] listening on http/)
      await p.stop()
      const bad = await d.exec([BIN, "worker", "--log-format", "yaml", "--config", d.writeWorkerConfig("nobody")], {})
      expect(bad.code).toBe(2)
      expect(bad.err).toBe('dffmpeg: --log-format must be text or json, not "yaml"\nrun with --help for usage\n')
      const badEnv = await d.exec([BIN, "worker", "--config", d.writeWorkerConfig("nobody")], {
        env: { DFFMPEG_LOG_FORMAT: "yaml" },
      })
      expect(badEnv.code).toBe(3)
      expect(badEnv.err).toBe("dffmpeg: DFFMPEG_LOG_FORMAT must be text or json\n")
    } finally {
      await d.stop()
    }
  }, 60_000)
})
