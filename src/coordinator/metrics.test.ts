import { describe, expect, test } from "bun:test"
import { jobRecord, T0, toolCaps } from "../../test/helpers/fixtures.ts"
import { parseProm, value } from "../../test/helpers/prom.ts"
import type { Job, Worker } from "../shared/protocol/schemas.ts"
import { createMetrics, type ScrapeState } from "./metrics.ts"

const job = (over: Partial<Job>): Job =>
  jobRecord({ requester: "c", args: [], startedAt: T0 + 40, attached: true, ...over })

const worker = (id: string, status: Worker["status"], maxJobs = 4): Worker => ({
  id,
  binaries: ["ffmpeg"],
  paths: [],
  maxJobs,
  version: "t",
  capabilities: {},
  tools: {},
  labels: {},
  weight: 1,
  maxProbeJobs: 4,
  status,
  registeredAt: T0,
  lastSeen: T0,
  drainRequested: false,
})

const state = (over: Partial<ScrapeState> = {}): ScrapeState => ({
  stats: {
    jobs: { queued: 2, assigned: 0, running: 1, completed: 5, failed: 1, canceled: 0 },
    oldestQueuedAt: T0 - 12_500,
    workers: { registering: 0, online: 1, draining: 1, offline: 1 },
    slots: { used: 1, total: 6 },
  },
  workers: [worker("w1", "online"), worker("w2", "draining", 2), worker("w3", "offline")],
  loads: new Map([["w1", 1]]),
  running: [],
  now: T0,
  version: "1.2.3",
  startedAt: T0 - 1000,
  ...over,
})

describe("metrics", () => {
  test("gauges come from the scrape state, with the dffmpeg_ prefix and declared types", () => {
    const { samples, types } = parseProm(createMetrics().render(state()))
    expect(value(samples, "dffmpeg_jobs", { state: "completed" })).toBe(5)
    expect(value(samples, "dffmpeg_jobs", { state: "queued" })).toBe(2)
    expect(value(samples, "dffmpeg_queue_depth")).toBe(2)
    expect(value(samples, "dffmpeg_queue_oldest_age_seconds")).toBe(12.5)
    expect(value(samples, "dffmpeg_workers", { state: "draining" })).toBe(1)
    expect(value(samples, "dffmpeg_slots")).toBe(6)
    expect(value(samples, "dffmpeg_slots_used")).toBe(1)
    expect(value(samples, "dffmpeg_worker_slots", { worker: "w2", state: "draining" })).toBe(2)
    expect(value(samples, "dffmpeg_worker_slots_used", { worker: "w1" })).toBe(1)
    // Offline workers hold no slots.
    expect(value(samples, "dffmpeg_worker_slots", { worker: "w3" })).toBeUndefined()
    expect(value(samples, "dffmpeg_build_info", { version: "1.2.3" })).toBe(1)
    // Ours are dffmpeg_*; the process_* series are the standard ones of Prometheus' client libraries.
    for (const s of samples) expect(s.name).toMatch(/^(dffmpeg|process)_/)
    expect(types.get("dffmpeg_jobs")).toBe("gauge")
    expect(types.get("dffmpeg_http_requests_total")).toBe("counter")
    expect(types.get("dffmpeg_job_duration_seconds")).toBe("histogram")
  })

  test("an empty queue has age 0", () => {
    const st = state()
    const { samples } = parseProm(createMetrics().render({ ...st, stats: { ...st.stats, oldestQueuedAt: null } }))
    expect(value(samples, "dffmpeg_queue_oldest_age_seconds")).toBe(0)
  })

  test("job events feed counters and cumulative histograms", () => {
    const m = createMetrics()
    m.submitted(job({ status: "queued" }))
    m.started(job({}))
    m.ended(job({ status: "completed", finishedAt: T0 + 40 + 3000 }))
    m.ended(job({ status: "failed", binary: "ffprobe", startedAt: null, finishedAt: T0 + 5 }))
    // A retried attempt counts as started but is not a dispatch from submission.
    m.started(job({ attempts: 1, startedAt: T0 + 99_000 }))
    const { samples } = parseProm(m.render(state()))
    expect(value(samples, "dffmpeg_jobs_submitted_total", { binary: "ffmpeg" })).toBe(1)
    expect(value(samples, "dffmpeg_jobs_started_total", { binary: "ffmpeg" })).toBe(2)
    expect(value(samples, "dffmpeg_jobs_finished_total", { state: "completed" })).toBe(1)
    expect(value(samples, "dffmpeg_jobs_finished_total", { state: "failed", binary: "ffprobe" })).toBe(1)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_count", { binary: "ffmpeg" })).toBe(1)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_sum")).toBeCloseTo(0.04, 6)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_bucket", { le: "0.025" })).toBe(0)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_bucket", { le: "0.05" })).toBe(1)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_bucket", { le: "+Inf" })).toBe(1)
    // Never ran: no duration observed.
    expect(value(samples, "dffmpeg_job_duration_seconds_count", { state: "failed" })).toBeUndefined()
    expect(value(samples, "dffmpeg_job_duration_seconds_count", { state: "completed" })).toBe(1)
    expect(value(samples, "dffmpeg_job_duration_seconds_bucket", { state: "completed", le: "1" })).toBe(0)
    expect(value(samples, "dffmpeg_job_duration_seconds_bucket", { state: "completed", le: "5" })).toBe(1)
  })

  test("requests and auth failures are counted by their labels; odd methods fold into other", () => {
    const m = createMetrics()
    m.request("GET", "/api/v1/jobs/:id", 200, 0.003)
    m.request("GET", "/api/v1/jobs/:id", 200, 0.2)
    m.request("GET", "/api/v1/jobs/:id", 404, 0.001)
    m.request("BREW", "unmatched", 404)
    m.authFailure("signature")
    const { samples, types } = parseProm(m.render(state()))
    expect(value(samples, "dffmpeg_http_requests_total", { route: "/api/v1/jobs/:id", code: "200" })).toBe(2)
    expect(value(samples, "dffmpeg_http_requests_total", { route: "/api/v1/jobs/:id", code: "404" })).toBe(1)
    expect(value(samples, "dffmpeg_http_requests_total", { method: "other" })).toBe(1)
    // The duration histogram: by route pattern and status class, cumulative buckets.
    expect(types.get("dffmpeg_http_request_duration_seconds")).toBe("histogram")
    const d = "dffmpeg_http_request_duration_seconds"
    const ok = { method: "GET", route: "/api/v1/jobs/:id", code_class: "2xx" }
    expect(value(samples, `${d}_count`, ok)).toBe(2)
    expect(value(samples, `${d}_sum`, ok)).toBeCloseTo(0.203, 6)
    expect(value(samples, `${d}_bucket`, { ...ok, le: "0.005" })).toBe(1)
    expect(value(samples, `${d}_bucket`, { ...ok, le: "0.25" })).toBe(2)
    expect(value(samples, `${d}_count`, { ...ok, code_class: "4xx" })).toBe(1)
    expect(value(samples, "dffmpeg_auth_failures_total", { reason: "signature" })).toBe(1)
  })

  test("running jobs are counted per worker and binary, never per job; label values are escaped", () => {
    const progress = { timeMs: 1, durationMs: 2, percent: 42.5, speed: 1.75, fps: null, frame: null, etaMs: 1, at: T0 }
    const running = [
      job({ progress, workerId: 'we"ird\\' }),
      job({ progress: { ...progress, speed: 0.25 }, workerId: 'we"ird\\' }),
      job({ progress: { ...progress, speed: null }, workerId: 'we"ird\\' }),
      job({ workerId: "w1", binary: "ffprobe" }),
    ]
    const text = createMetrics().render(state({ running }))
    const { samples } = parseProm(text)
    const odd = { worker: 'we"ird\\', binary: "ffmpeg" }
    expect(value(samples, "dffmpeg_running_jobs", odd)).toBe(3)
    expect(value(samples, "dffmpeg_running_jobs_speed_ratio_sum", odd)).toBe(2)
    expect(value(samples, "dffmpeg_running_jobs_speed_reported", odd)).toBe(2)
    expect(value(samples, "dffmpeg_running_jobs", { worker: "w1", binary: "ffprobe" })).toBe(1)
    expect(text).toContain('worker="we\\"ird\\\\"')
    // No series carries a job id.
    for (const s of samples) expect(Object.keys(s.labels)).not.toContain("job")
    for (const j of running) expect(text).not.toContain(j.id)
  })

  test("process_* series: from /proc/self, or as given", () => {
    const { samples, types } = parseProm(createMetrics().render(state()))
    expect(value(samples, "process_cpu_seconds_total")).toBeGreaterThan(0)
    expect(types.get("process_cpu_seconds_total")).toBe("counter")
    expect(value(samples, "process_resident_memory_bytes")).toBeGreaterThan(1024 * 1024)
    expect(value(samples, "process_virtual_memory_bytes")).toBeGreaterThanOrEqual(
      value(samples, "process_resident_memory_bytes")!,
    )
    expect(value(samples, "process_open_fds")).toBeGreaterThan(2)
    expect(value(samples, "process_max_fds")).toBeGreaterThanOrEqual(value(samples, "process_open_fds")!)
    const start = value(samples, "process_start_time_seconds")!
    expect(start).toBeLessThanOrEqual(Date.now() / 1000)
    expect(start).toBeGreaterThan(Date.now() / 1000 - 3600)
    const given = parseProm(
      createMetrics().render(state({ process: { cpuSeconds: 1.5, residentBytes: 10, startTimeSeconds: 100 } })),
    )
    expect(value(given.samples, "process_cpu_seconds_total")).toBe(1.5)
    // Where /proc gave nothing, the series is left out, not reported as 0.
    expect(value(given.samples, "process_open_fds")).toBeUndefined()
  })

  test("each worker's host load as gauges by worker (and GPU); none for workers without one or offline", () => {
    const hostLoad = {
      at: "2026-12-03T10:00:00.000Z",
      cpuPercent: 37.5,
      load1: 2.25,
      cpus: 8,
      memUsedBytes: 3e9,
      memTotalBytes: 16e9,
      gpus: [
        { name: "NVIDIA T4", utilPercent: 61, memUsedBytes: 1e9, memTotalBytes: 16e9 },
        { name: "amdgpu card1", utilPercent: null, memUsedBytes: null, memTotalBytes: null },
      ],
    }
    const workers = [
      { ...worker("w1", "online"), hostLoad },
      worker("w2", "online"),
      { ...worker("w3", "offline"), hostLoad },
    ]
    const { samples } = parseProm(createMetrics().render(state({ workers })))
    expect(value(samples, "dffmpeg_worker_cpu_percent", { worker: "w1" })).toBe(37.5)
    expect(value(samples, "dffmpeg_worker_load1", { worker: "w1" })).toBe(2.25)
    expect(value(samples, "dffmpeg_worker_cpus", { worker: "w1" })).toBe(8)
    expect(value(samples, "dffmpeg_worker_memory_used_bytes", { worker: "w1" })).toBe(3e9)
    expect(value(samples, "dffmpeg_worker_memory_total_bytes", { worker: "w1" })).toBe(16e9)
    expect(
      value(samples, "dffmpeg_worker_gpu_utilization_percent", { worker: "w1", gpu: "0", name: "NVIDIA T4" }),
    ).toBe(61)
    expect(value(samples, "dffmpeg_worker_gpu_memory_total_bytes", { worker: "w1", gpu: "0" })).toBe(16e9)
    expect(value(samples, "dffmpeg_worker_gpu_utilization_percent", { gpu: "1" })).toBeUndefined()
    for (const w of ["w2", "w3"]) expect(value(samples, "dffmpeg_worker_cpu_percent", { worker: w })).toBeUndefined()
  })

  test("the whole exposition passes promtool check metrics", async () => {
    const m = createMetrics()
    m.request("GET", "/api/v1/jobs/:id", 200, 0.01)
    m.submitted(job({ status: "queued" }))
    m.started(job({}))
    m.ended(job({ status: "completed", finishedAt: T0 + 3040 }))
    m.authFailure("signature")
    m.transportRejected("mqtt", "stale")
    const hostLoad = {
      at: "2026-12-03T10:00:00.000Z",
      cpuPercent: 1,
      load1: 0.5,
      cpus: 2,
      memUsedBytes: 1,
      memTotalBytes: 2,
      gpus: [{ name: "g", utilPercent: 5, memUsedBytes: 1, memTotalBytes: 2 }],
    }
    const text = m.render(
      state({
        workers: [{ ...worker("w1", "online"), hostLoad }],
        running: [job({ workerId: "w1" })],
        transports: [{ kind: "mqtt", connected: true }],
        fallbacks: [{ client: "c", reason: "queue_timeout", count: 2, lastAt: T0 }],
      }),
    )
    expect(await promtool(text)).toBe("")
  })
})

/** `promtool check metrics` over `text` (scripts/setup.sh installs Debian's prometheus): its complaints, "" when clean. */
async function promtool(text: string): Promise<string> {
  const exe = Bun.which("promtool")
  if (!exe) throw new Error("promtool is not installed: run scripts/setup.sh (Debian package prometheus)")
  const p = Bun.spawn([exe, "check", "metrics"], {
    stdin: new TextEncoder().encode(text),
    stdout: "pipe",
    stderr: "pipe",
  })
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
  return code === 0 && !out.trim() && !err.trim() ? "" : `exit ${code}\n${out}${err}`
}

describe("worker capabilities", () => {
  test("one info series per worker and binary (version, hwaccels) and an encoder count; none for offline workers", () => {
    const tool = toolCaps({
      version: "6.0.1-Jellyfin",
      encoders: ["libx264", "h264_nvenc", "aac"],
      hwaccels: ["vaapi", "cuda"],
      hwDevices: ["cuda", "vaapi"],
    })
    const gpu = { ...worker("gpu", "online"), tools: { ffmpeg: tool } }
    const gone = { ...worker("gone", "offline"), tools: { ffmpeg: tool } }
    const { samples } = parseProm(createMetrics().render(state({ workers: [gpu, gone] })))
    const info = samples.filter((s) => s.name === "dffmpeg_worker_tool_info")
    expect(info.map((s) => s.labels)).toEqual([
      { worker: "gpu", binary: "ffmpeg", version: "6.0.1-Jellyfin", hwaccels: "cuda,vaapi" },
    ])
    expect(value(samples, "dffmpeg_worker_tool_encoders", { worker: "gpu", binary: "ffmpeg" })).toBe(3)
    // Low cardinality: no series names an encoder.
    expect(samples.some((s) => Object.values(s.labels).includes("h264_nvenc"))).toBe(false)
  })
})
