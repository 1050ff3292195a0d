import { describe, expect, test } from "bun:test"
import { jobRecord, toolCaps } from "../../test/helpers/fixtures.ts"
import type { Job, Worker } from "../shared/protocol/schemas.ts"
import {
  jobDetail,
  jobProgress,
  jobsTable,
  loadTable,
  outcome,
  runTime,
  sandboxOf,
  workerDetail,
  workersTable,
  workerState,
  type WorkerView,
} from "./views.ts"

const T = Date.UTC(2026, 10, 27, 3, 0, 0)
const job = (over: Partial<Job> = {}): Job =>
  jobRecord(
    {
      id: "01M8DFWF4PCGSZBYEVT8TNJN46",
      requester: "jellyfin",
      args: ["-i", "$Movies/a.mkv"],
      paths: ["Movies"],
      startedAt: T + 1000,
      heartbeatAt: T,
      progress: {
        timeMs: 60_000,
        durationMs: 120_000,
        percent: 50,
        speed: 2,
        fps: 50,
        frame: 1500,
        etaMs: 30_000,
        at: T + 5000,
      },
      ...over,
    },
    T,
  )
const worker = (over: Partial<Worker> & { load?: number } = {}): WorkerView => ({
  id: "w1",
  binaries: ["ffmpeg"],
  paths: ["Movies"],
  maxJobs: 4,
  version: "0.1.0",
  capabilities: {},
  tools: {},
  labels: {},
  weight: 1,
  maxProbeJobs: 4,
  status: "online",
  registeredAt: T,
  lastSeen: T,
  drainRequested: false,
  load: 0,
  ...over,
})

describe("jobs", () => {
  test("outcome: signal, exit code, error, or nothing yet", () => {
    expect([
      outcome(job({ exitSignal: "SIGKILL", exitCode: null })),
      outcome(job({ exitCode: 3 })),
      outcome(job({ error: "refused" })),
      outcome(job()),
    ]).toEqual(["SIGKILL", "3", "error", "-"])
  })

  test("run time counts while running; progress is shown only while running", () => {
    expect(runTime(job(), T + 6000)).toBe(5000)
    expect(runTime(job({ status: "completed", finishedAt: T + 3000 }), T + 9000)).toBe(2000)
    expect(runTime(job({ startedAt: null }), T)).toBeNull()
    expect(jobProgress(job())).toBe("50% 2x eta 0:30")
    expect(jobProgress(job({ status: "completed" }))).toBe("-")
  })

  test("detail marks a pending cancel and lists the stderr tail", () => {
    const text = jobDetail(job({ cancelRequestedAt: T }), T + 6000, { stderr: ["a", "b"] })
    expect(text).toContain("status     running (cancel requested)\nprogress   50% 2x eta 0:30 (reported 1s ago)\n")
    expect(text.endsWith("\nlast 2 stderr lines\n  a\n  b\n")).toBe(true)
    expect(jobDetail(job(), T, { stderr: [] }).endsWith("\nno stderr output\n")).toBe(true)
  })
})

describe("workers", () => {
  test("the sandbox column and field say how jobs are confined; an unconfined worker stands out", () => {
    const boxed = worker({ capabilities: { sandbox: "bwrap", runAs: "nobody (65534:65534)" } })
    const open = worker({ id: "w2", capabilities: { sandbox: "none", runAs: "root (0:0)" } })
    const old = worker({ id: "w3", capabilities: { sandbox: "<b>x</b>" } })
    expect([boxed, open, old].map(sandboxOf)).toEqual(["bwrap", "none (unconfined)", "-"])
    expect(workersTable([boxed, open], T)).toMatch(
      /^ID +STATUS +LOAD +CPU +MEM +BINARIES +PATHS +SANDBOX +VERSION +LAST SEEN\nw1 +online +0\/4 +- +- +ffmpeg +Movies +bwrap +0\.1\.0 +0s ago\nw2 +online +0\/4 +- +- +ffmpeg +Movies +none \(unconfined\) +0\.1\.0 /,
    )
    expect(workerDetail(boxed, [], T)).toContain("\nsandbox     bwrap, jobs run as nobody (65534:65534)\n")
    expect(workerDetail(open, [], T)).toContain("\nsandbox     none (unconfined), jobs run as root (0:0)\n")
  })

  test("workers ls shows each host's CPU and memory from its heartbeats; show adds the process and GPUs", () => {
    const hostLoad = {
      at: "2026-12-03T10:00:00.000Z",
      cpuPercent: 37.4,
      load1: 2.25,
      cpus: 8,
      memUsedBytes: 3 * 1024 ** 3,
      memTotalBytes: 16 * 1024 ** 3,
      gpus: [{ name: "NVIDIA \u202eT4", utilPercent: 61, memUsedBytes: 1024 ** 3, memTotalBytes: 16 * 1024 ** 3 }],
    }
    const w = worker({ hostLoad, instance: { id: "01J0000000000000000000000A", host: "gpu-box", pid: 42 } })
    expect(workersTable([w, worker({ id: "w2", status: "offline", hostLoad })], T)).toMatch(
      /\nw1 +online +0\/4 +37% +3\.0\/16\.0 GiB +ffmpeg[^\n]*\nw2 +offline +0\/4 +- +- /,
    )
    const show = workerDetail(w, [], T)
    expect(show).toContain("process     gpu-box pid 42 (instance 01J0000000000000000000000A)\n")
    expect(show).toContain(
      "host load   37% CPU (load 2.25, 8 CPUs), 3.0/16.0 GiB memory, measured 2026-12-03T10:00:00.000Z; GPU 0 NVIDIA \\u202eT4: 61%, 1.0/16.0 GiB\n",
    )
  })

  test("state names an administrator's drain whatever the worker's own state", () => {
    expect([
      workerState(worker()),
      workerState(worker({ status: "draining" })),
      workerState(worker({ status: "draining", drainRequested: true })),
      workerState(worker({ status: "offline", drainRequested: true })),
    ]).toEqual(["online", "draining", "draining (admin)", "offline (admin drain)"])
  })

  test("the load view counts the slots of serving workers only", () => {
    const text = loadTable([
      worker({ load: 2 }),
      worker({ id: "w2", status: "draining", drainRequested: true, load: 1 }),
      worker({ id: "w3", status: "offline" }),
    ])
    expect(text).toContain("w1  online            [#####-----] 2/4  ffmpeg    Movies\n")
    expect(text.endsWith("\n3 workers, 1 online; 3 of 8 slots busy\n")).toBe(true)
  })
})

describe("worker- and client-supplied strings are escaped in human views", () => {
  const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/
  const evil = "1\x1b[2J\x1b]0;t\x07\r\nFAKE LINE \u202eevil"
  const lines = (s: string) => s.split("\n").filter(Boolean)

  test("workers ls and show: a worker's version and paths cannot clear the screen or forge a line", () => {
    const w = worker({
      version: evil,
      paths: ["Mo\x1b[31mvies"],
      capabilities: { sandbox: "\x1b[2J", runAs: "\x1b]0;x\x07" },
    })
    const ls = workersTable([w], T)
    expect(ls).not.toMatch(UNSAFE)
    expect(lines(ls)).toHaveLength(2)
    expect(ls).toContain("1\\x1b[2J\\x1b]0;t\\x07\\r\\nFAKE LINE \\u202eevil")
    const show = workerDetail(w, [job({ args: ["-i", "a\u202e.mkv"] })], T)
    expect(show).not.toMatch(UNSAFE)
    expect(show).toContain("version     1\\x1b[2J")
  })

  test("jobs ls and show: arguments, reasons and stderr tails are escaped", () => {
    const j = job({ args: ["-i", "a\r\nFAKE\x1b[2J\u202e.mkv"], error: "bad\x07", cwd: "/tmp/\x1b]0;t\x07" })
    const ls = jobsTable([j], T)
    expect(ls).not.toMatch(UNSAFE)
    expect(lines(ls)).toHaveLength(2)
    expect(ls).toContain("-i a\\r\\nFAKE\\x1b[2J\\u202e.mkv")
    const show = jobDetail(j, T, {
      events: [{ at: T, status: "failed", epoch: 1, workerId: "w\x1b[1m", reason: "r\r\nx" }],
      stderr: ["frame=1\x1b[K\r", "ok"],
    })
    expect(show).not.toMatch(UNSAFE)
    expect(show).toContain("  frame=1\\x1b[K\\r\n  ok\n")
  })
})

describe("a worker's capabilities", () => {
  const tool = toolCaps({
    version: "6.0.1-Jellyfin",
    encoders: ["libx264", "h264_nvenc"],
    decoders: ["h264"],
    hwaccels: ["cuda"],
    hwDevices: ["cuda"],
    filters: ["scale", "scale_cuda", "yadif"],
    demuxers: [],
  })
  test("show: version, counts and hwaccels per binary, labels and weight", () => {
    const text = workerDetail(worker({ tools: { ffmpeg: tool }, labels: { gpu: "nvidia" }, weight: 2 }), [], T)
    expect(text).toContain("\nlabels      gpu=nvidia\n")
    expect(text).toContain("\nweight      2\n")
    expect(text).toContain(
      "\ncapabilities (full lists: --json)\nffmpeg  6.0.1-Jellyfin  encoders 2, decoders 1, filters 3, muxers 1, demuxers 0; hwaccels cuda\n",
    )
  })
  test("a worker without any says why it may be", () => {
    expect(workerDetail(worker(), [], T)).toContain("\nno capabilities registered (an older worker")
    expect(workerDetail(worker(), [], T)).toContain("\nlabels      -\n")
  })
})
