import { readdirSync, readFileSync } from "node:fs"
import type { FallbackCount } from "../shared/protocol/fallback.ts"
import type { Job, Worker } from "../shared/protocol/schemas.ts"
import type { Stats } from "../store/index.ts"

/**
 * Prometheus metrics in the text exposition format (version 0.0.4), without a client library: three
 * kinds of series are enough here. Counters and histograms count what this coordinator did since it
 * started (Prometheus sums across coordinators); gauges are read from the database at scrape time, so
 * every coordinator of a shared database reports the same cluster-wide state.
 */
export interface Metrics {
  /**
   * One answered HTTP request; `route` is the route pattern (never the raw path: no id explosion);
   * `seconds` the time to the response's head.
   */
  request(method: string, route: string, status: number, seconds?: number): void
  /** A refused signature check, by reason (unsigned, signature, identity, replay, clock, forbidden). */
  authFailure(reason: string): void
  submitted(job: Job): void
  /** An info command, answered from the info cache or asked of the reference worker (coordinator/info.ts). */
  info(binary: string, answer: "answer" | "ask" | "wait"): void
  started(job: Job): void
  ended(job: Job): void
  /** A broker message dropped by the tunnel (unsigned, signature, stale, replayed, misaddressed, malformed, oversized). */
  transportRejected(transport: string, reason: string): void
  /** The whole exposition, with the gauges from `state`. */
  render(state: ScrapeState): string
}

export interface ScrapeState {
  stats: Stats
  workers: Worker[]
  loads: Map<string, number>
  /** Running jobs (only binary, worker and progress are read: no series is per job). */
  running: Pick<Job, "binary" | "workerId" | "progress">[]
  now: number
  version: string
  startedAt: number
  /** Local fallbacks clients reported to this coordinator since it started (coordinator/fallbacks.ts). */
  fallbacks?: FallbackCount[]
  /** The brokers this coordinator serves on, and whether each is connected now. */
  transports?: { kind: string; connected: boolean }[]
  /** This process's figures (tests); read from /proc/self when absent. */
  process?: ProcessStats
}

/** The `process_*` series of Prometheus' client libraries, for this coordinator's process. */
export interface ProcessStats {
  cpuSeconds: number
  residentBytes: number
  virtualBytes?: number
  startTimeSeconds: number
  openFds?: number
  maxFds?: number
}

/**
 * This process now: CPU and resident memory from the runtime, virtual memory, open descriptors and
 * their limit from /proc/self (left out where there is no /proc), the start time from the time origin.
 */
export function readProcess(): ProcessStats {
  const cpu = process.cpuUsage()
  const out: ProcessStats = {
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    residentBytes: process.memoryUsage.rss(),
    startTimeSeconds: Math.floor(performance.timeOrigin) / 1000,
  }
  try {
    const vm = /^VmSize:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"))
    if (vm) out.virtualBytes = Number(vm[1]) * 1024
    out.openFds = readdirSync("/proc/self/fd").length
    const max = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"))
    if (max && max[1] !== "unlimited") out.maxFds = Number(max[1])
  } catch {
    // no /proc: the series it gives are left out
  }
  return out
}

function renderProcess(out: string[], p: ProcessStats): void {
  const one = (name: string, type: "counter" | "gauge", help: string, v: number | undefined) => {
    if (v === undefined) return
    const f = new Family(name, type, help)
    f.set({}, v)
    f.render(out)
  }
  one("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", p.cpuSeconds)
  one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.residentBytes)
  one("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p.virtualBytes)
  one(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since unix epoch in seconds.",
    p.startTimeSeconds,
  )
  one("process_open_fds", "gauge", "Number of open file descriptors.", p.openFds)
  one("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.maxFds)
}

/** Seconds from submission to the first byte of work (queued → running). */
const DISPATCH_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
/** Seconds to answer an HTTP request (to the response's head; a long poll's wait included). */
const REQUEST_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
/** Seconds a job's process ran (running → terminal). */
const DURATION_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 43200]

type Labels = Record<string, string>

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')
const labelText = (l: Labels) => {
  const keys = Object.keys(l)
  return keys.length ? `{${keys.map((k) => `${k}="${escape(l[k])}"`).join(",")}}` : ""
}
const num = (n: number) => (Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN")

class Family {
  readonly series = new Map<string, { labels: Labels; value: number }>()
  constructor(
    readonly name: string,
    readonly type: "counter" | "gauge",
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1) {
    const key = labelText(labels)
    const s = this.series.get(key)
    if (s) s.value += by
    else this.series.set(key, { labels, value: by })
  }
  set(labels: Labels, value: number) {
    this.series.set(labelText(labels), { labels, value })
  }
  render(out: string[]) {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`)
    for (const s of this.series.values()) out.push(`${this.name}${labelText(s.labels)} ${num(s.value)}`)
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>()
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}
  observe(labels: Labels, value: number) {
    const key = labelText(labels)
    let s = this.series.get(key)
    if (!s) this.series.set(key, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }))
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++
    s.sum += value
    s.count++
  }
  render(out: string[]) {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`)
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) =>
        out.push(`${this.name}_bucket${labelText({ ...s.labels, le: String(b) })} ${s.counts[i]}`),
      )
      out.push(`${this.name}_bucket${labelText({ ...s.labels, le: "+Inf" })} ${s.count}`)
      out.push(
        `${this.name}_sum${labelText(s.labels)} ${num(s.sum)}`,
        `${this.name}_count${labelText(s.labels)} ${s.count}`,
      )
    }
  }
}

export function createMetrics(): Metrics {
  const requests = new Family(
    "dffmpeg_http_requests_total",
    "counter",
    "HTTP requests answered, by method, route pattern and status code.",
  )
  const requestSeconds = new Histogram(
    "dffmpeg_http_request_duration_seconds",
    "Time to answer HTTP requests (to the response's head: long polls include their wait), by method, route pattern and status class (2xx, 4xx...).",
    REQUEST_BUCKETS,
  )
  const authFailures = new Family(
    "dffmpeg_auth_failures_total",
    "counter",
    "Requests refused by signature verification or role checks, by reason.",
  )
  const submitted = new Family(
    "dffmpeg_jobs_submitted_total",
    "counter",
    "Jobs submitted to this coordinator, by binary.",
  )
  const started = new Family("dffmpeg_jobs_started_total", "counter", "Job attempts that started running, by binary.")
  const infos = new Family(
    "dffmpeg_info_commands_total",
    "counter",
    "Info commands (-version, -encoders, -h ...) submitted, by binary and how they were answered: cache, reference (asked of the reference worker) or shared (waited for an identical one's answer).",
  )
  const finished = new Family(
    "dffmpeg_jobs_finished_total",
    "counter",
    "Jobs that reached a final state through this coordinator, by binary and state.",
  )
  const dispatch = new Histogram(
    "dffmpeg_job_dispatch_seconds",
    "Time from submission (or re-queue) to running, by binary.",
    DISPATCH_BUCKETS,
  )
  const duration = new Histogram(
    "dffmpeg_job_duration_seconds",
    "Run time of finished jobs (running to final state), by binary and state.",
    DURATION_BUCKETS,
  )
  const rejected = new Family(
    "dffmpeg_transport_rejected_total",
    "counter",
    "Broker messages dropped before use, by transport and reason (unsigned, signature, stale, replayed, misaddressed, malformed, oversized).",
  )
  // Label sets must not be unbounded: anything outside the known sets is folded into "other".
  const methods = new Set(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])

  return {
    request(method, route, status, seconds) {
      const m = methods.has(method) ? method : "other"
      requests.inc({ method: m, route, code: String(status) })
      if (seconds !== undefined)
        requestSeconds.observe({ method: m, route, code_class: `${Math.floor(status / 100)}xx` }, Math.max(0, seconds))
    },
    authFailure(reason) {
      authFailures.inc({ reason })
    },
    submitted(job) {
      submitted.inc({ binary: job.binary })
    },
    info(binary, plan) {
      infos.inc({ binary, answer: plan === "answer" ? "cache" : plan === "ask" ? "reference" : "shared" })
    },
    started(job) {
      started.inc({ binary: job.binary })
      // A retried job waits from its re-queue; the timeline's last queued time is not on the row, so
      // only first attempts are measured from submission.
      if (job.startedAt !== null && job.attempts === 0)
        dispatch.observe({ binary: job.binary }, Math.max(0, job.startedAt - job.createdAt) / 1000)
    },
    transportRejected(transport, reason) {
      rejected.inc({ transport, reason })
    },
    ended(job) {
      finished.inc({ binary: job.binary, state: job.status })
      if (job.startedAt !== null && job.finishedAt !== null)
        duration.observe({ binary: job.binary, state: job.status }, Math.max(0, job.finishedAt - job.startedAt) / 1000)
    },
    render(st) {
      const out: string[] = []
      const g = (name: string, help: string) => new Family(name, "gauge", help)

      const info = g("dffmpeg_build_info", "Version of this coordinator (value is always 1).")
      info.set({ version: st.version }, 1)
      info.render(out)
      const up = g("dffmpeg_start_time_seconds", "Unix time this coordinator started.")
      up.set({}, st.startedAt / 1000)
      up.render(out)

      const jobs = g(
        "dffmpeg_jobs",
        "Jobs held by the database, by state (finished ones until retention deletes them).",
      )
      for (const [state, n] of Object.entries(st.stats.jobs)) jobs.set({ state }, n)
      jobs.render(out)
      const depth = g("dffmpeg_queue_depth", "Jobs waiting for a worker.")
      depth.set({}, st.stats.jobs.queued)
      depth.render(out)
      const age = g(
        "dffmpeg_queue_oldest_age_seconds",
        "How long the oldest queued job has waited (0 when the queue is empty).",
      )
      age.set({}, st.stats.oldestQueuedAt === null ? 0 : Math.max(0, st.now - st.stats.oldestQueuedAt) / 1000)
      age.render(out)

      const workers = g("dffmpeg_workers", "Workers by state.")
      for (const [state, n] of Object.entries(st.stats.workers)) workers.set({ state }, n)
      workers.render(out)
      const slotsTotal = g("dffmpeg_slots", "Job slots (max_jobs) of online and draining workers.")
      slotsTotal.set({}, st.stats.slots.total)
      slotsTotal.render(out)
      const slotsUsed = g(
        "dffmpeg_slots_used",
        "Job slots holding an assigned or running transcode (probes have their own slots).",
      )
      slotsUsed.set({}, st.stats.slots.used)
      slotsUsed.render(out)
      const wSlots = g("dffmpeg_worker_slots", "Job slots of each known worker that is not offline.")
      const wUsed = g("dffmpeg_worker_slots_used", "Assigned or running transcodes of each worker that is not offline.")
      for (const w of st.workers) {
        if (w.status === "offline") continue
        wSlots.set({ worker: w.id, state: w.status }, w.maxJobs)
        wUsed.set({ worker: w.id, state: w.status }, st.loads.get(w.id) ?? 0)
      }
      wSlots.render(out)
      wUsed.render(out)
      // One series per worker and binary: its version and verified hwaccels, never one per encoder or filter.
      const tools = g(
        "dffmpeg_worker_tool_info",
        "Each binary of each worker that is not offline: its version and verified hwaccels (value is always 1).",
      )
      const encoders = g("dffmpeg_worker_tool_encoders", "Encoders each binary of each worker that is not offline has.")
      for (const w of st.workers) {
        if (w.status === "offline") continue
        for (const [binary, t] of Object.entries(w.tools ?? {})) {
          tools.set({ worker: w.id, binary, version: t.version, hwaccels: [...t.hwaccels].sort().join(",") }, 1)
          encoders.set({ worker: w.id, binary }, t.encoders.length)
        }
      }
      tools.render(out)
      encoders.render(out)

      // Per worker and binary, never per job (a job id label is a new series per job, without bound).
      const runningJobs = g("dffmpeg_running_jobs", "Running jobs, by worker and binary.")
      const speedSum = g(
        "dffmpeg_running_jobs_speed_ratio_sum",
        "Sum of the encoding speeds (multiples of real time) of the running jobs that report one, by worker and binary.",
      )
      const speedCount = g(
        "dffmpeg_running_jobs_speed_reported",
        "Running jobs that report an encoding speed, by worker and binary (divide the sum by it for the mean).",
      )
      for (const j of st.running) {
        const labels = { worker: j.workerId ?? "", binary: j.binary }
        runningJobs.inc(labels)
        if (j.progress?.speed !== null && j.progress?.speed !== undefined && Number.isFinite(j.progress.speed)) {
          speedSum.inc(labels, j.progress.speed)
          speedCount.inc(labels)
        }
      }
      runningJobs.render(out)
      speedSum.render(out)
      speedCount.render(out)

      // Each worker's host, from its last heartbeat that carried a load (hostLoad, validated on arrival).
      const cpu = g("dffmpeg_worker_cpu_percent", "CPU busy % of each worker's host (0-100), from its heartbeats.")
      const load1 = g("dffmpeg_worker_load1", "1-minute load average of each worker's host.")
      const cpus = g("dffmpeg_worker_cpus", "CPUs of each worker's host.")
      const memUsed = g(
        "dffmpeg_worker_memory_used_bytes",
        "Memory in use on each worker's host (total minus available).",
      )
      const memTotal = g("dffmpeg_worker_memory_total_bytes", "Memory of each worker's host.")
      const gpuUtil = g(
        "dffmpeg_worker_gpu_utilization_percent",
        "Utilisation % of each GPU of each worker's host, where reported.",
      )
      const gpuUsed = g(
        "dffmpeg_worker_gpu_memory_used_bytes",
        "Memory in use on each GPU of each worker's host, where reported.",
      )
      const gpuTotal = g(
        "dffmpeg_worker_gpu_memory_total_bytes",
        "Memory of each GPU of each worker's host, where reported.",
      )
      for (const w of st.workers) {
        const l = w.hostLoad
        if (w.status === "offline" || !l) continue
        const worker = { worker: w.id }
        cpu.set(worker, l.cpuPercent)
        load1.set(worker, l.load1)
        cpus.set(worker, l.cpus)
        memUsed.set(worker, l.memUsedBytes)
        memTotal.set(worker, l.memTotalBytes)
        l.gpus.forEach((gpu, i) => {
          const labels = { worker: w.id, gpu: String(i), name: gpu.name }
          if (gpu.utilPercent !== null) gpuUtil.set(labels, gpu.utilPercent)
          if (gpu.memUsedBytes !== null) gpuUsed.set(labels, gpu.memUsedBytes)
          if (gpu.memTotalBytes !== null) gpuTotal.set(labels, gpu.memTotalBytes)
        })
      }
      for (const f of [cpu, load1, cpus, memUsed, memTotal, gpuUtil, gpuUsed, gpuTotal]) f.render(out)

      for (const f of [requests, authFailures, submitted, infos, started, finished, rejected]) f.render(out)
      const connected = g(
        "dffmpeg_transport_connected",
        "Whether each broker this coordinator serves on is connected (1) or not (0).",
      )
      for (const t of st.transports ?? []) connected.set({ transport: t.kind }, t.connected ? 1 : 0)
      connected.render(out)
      // Kept by the fallback ledger (deduplicated by record id), rendered as the counter it is.
      const fallbacks = new Family(
        "dffmpeg_client_fallbacks_total",
        "counter",
        "Commands clients ran on their own machine instead of the cluster (local fallback), as they reported them to this coordinator, by client and reason.",
      )
      for (const f of st.fallbacks ?? []) fallbacks.set({ client: f.client, reason: f.reason }, f.count)
      fallbacks.render(out)
      dispatch.render(out)
      duration.render(out)
      requestSeconds.render(out)
      renderProcess(out, st.process ?? readProcess())
      return out.join("\n") + "\n"
    },
  }
}
