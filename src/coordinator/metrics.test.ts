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
    for (const s of samples) expect(s.name.startsWith("dffmpeg_")).toBe(true)
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
    expect(value(samples, "dffmpeg_jobs_finished_total", { status: "completed" })).toBe(1)
    expect(value(samples, "dffmpeg_jobs_finished_total", { status: "failed", binary: "ffprobe" })).toBe(1)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_count", { binary: "ffmpeg" })).toBe(1)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_sum")).toBeCloseTo(0.04, 6)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_bucket", { le: "0.025" })).toBe(0)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_bucket", { le: "0.05" })).toBe(1)
    expect(value(samples, "dffmpeg_job_dispatch_seconds_bucket", { le: "+Inf" })).toBe(1)
    // Never ran: no duration observed.
    expect(value(samples, "dffmpeg_job_duration_seconds_count", { status: "failed" })).toBeUndefined()
    expect(value(samples, "dffmpeg_job_duration_seconds_count", { status: "completed" })).toBe(1)
    expect(value(samples, "dffmpeg_job_duration_seconds_bucket", { status: "completed", le: "1" })).toBe(0)
    expect(value(samples, "dffmpeg_job_duration_seconds_bucket", { status: "completed", le: "5" })).toBe(1)
  })

  test("requests and auth failures are counted by their labels; odd methods fold into other", () => {
    const m = createMetrics()
    m.request("GET", "/api/v1/jobs/:id", 200)
    m.request("GET", "/api/v1/jobs/:id", 200)
    m.request("GET", "/api/v1/jobs/:id", 404)
    m.request("BREW", "unmatched", 404)
    m.authFailure("signature")
    const { samples } = parseProm(m.render(state()))
    expect(value(samples, "dffmpeg_http_requests_total", { route: "/api/v1/jobs/:id", status: "200" })).toBe(2)
    expect(value(samples, "dffmpeg_http_requests_total", { route: "/api/v1/jobs/:id", status: "404" })).toBe(1)
    expect(value(samples, "dffmpeg_http_requests_total", { method: "other" })).toBe(1)
    expect(value(samples, "dffmpeg_auth_failures_total", { reason: "signature" })).toBe(1)
  })

  test("running jobs report progress and speed; label values are escaped", () => {
    const progress = { timeMs: 1, durationMs: 2, percent: 42.5, speed: 1.75, fps: null, frame: null, etaMs: 1, at: T0 }
    const text = createMetrics().render(state({ running: [job({ progress, workerId: 'we"ird\\' })] }))
    const { samples } = parseProm(text)
    expect(value(samples, "dffmpeg_job_progress_ratio", { worker: 'we"ird\\' })).toBe(0.425)
    expect(value(samples, "dffmpeg_job_speed_ratio")).toBe(1.75)
    expect(text).toContain('worker="we\\"ird\\\\"')
  })
})

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
