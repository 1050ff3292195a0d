import { isTerminal, type Job, type JobEvent, type JobStatus, type Worker } from "../shared/protocol/schemas.ts"
import { ago, bar, cell, duration, fields, progress, table, time, truncate } from "./table.ts"
import type { ToolCapabilities } from "../shared/protocol/capabilities.ts"

/** Human views of jobs and workers shared by `dffmpeg admin` and `dffmpeg client`. */

/** A worker as listings return it: with the number of jobs assigned to or running on it. */
export type WorkerView = Worker & { load: number }

export const ACTIVE: readonly JobStatus[] = ["queued", "assigned", "running"]

/** EXIT column: the exit code, the signal that killed it, `error` when it never ran, `-` while unknown. */
export function outcome(j: Job): string {
  if (j.exitSignal) return j.exitSignal
  if (j.exitCode !== null) return String(j.exitCode)
  return j.error ? "error" : "-"
}

/** How long the current (or last) attempt ran; still counting while it runs. */
export function runTime(j: Job, now: number): number | null {
  if (j.startedAt === null) return null
  return (j.finishedAt ?? (isTerminal(j.status) ? j.startedAt : now)) - j.startedAt
}

/** Progress is only news while the job runs; a finished job's last report would read as stuck. */
export function jobProgress(j: Job): string {
  return j.status === "running" ? progress(j.progress) : "-"
}

export function argsSummary(j: Job, n = 60): string {
  return truncate(j.args.join(" "), n)
}

export interface JobsTableOptions {
  /** Show whose job it is (admins see everyone's). */
  requester?: boolean
  /** CREATED as a UTC time (logs, audits) or AGE relative to now (a live view). */
  created?: "time" | "age"
}

export function jobsTable(jobs: Job[], now: number, o: JobsTableOptions = {}): string {
  const created = o.created ?? "time"
  const headers = [
    "ID",
    "STATUS",
    "EXIT",
    "PROGRESS",
    "BINARY",
    ...(o.requester ? ["REQUESTER"] : []),
    "WORKER",
    created === "time" ? "CREATED" : "AGE",
    "DURATION",
    "ARGS",
  ]
  const rows = jobs.map((j) => [
    j.id,
    j.status,
    outcome(j),
    jobProgress(j),
    j.binary,
    ...(o.requester ? [j.requester] : []),
    j.workerId,
    created === "time" ? time(j.createdAt) : ago(j.createdAt, now),
    duration(runTime(j, now)),
    argsSummary(j),
  ])
  return table(headers, rows)
}

export interface JobDetailExtras {
  events?: JobEvent[]
  /** The last lines of the job's stderr, as a terminal shows them. */
  stderr?: string[]
  /** The first stderr line is only its end: the tail is limited in bytes (limits.max_log_tail_bytes). */
  stderrCut?: boolean
}

/** One job: every field people ask about, then its timeline and the end of its stderr when given. */
export function jobDetail(j: Job, now: number, x: JobDetailExtras = {}): string {
  const report = j.progress && `${progress(j.progress)} (reported ${ago(j.progress.at, now)} ago)`
  let out = fields([
    ["id", j.id],
    ["status", j.cancelRequestedAt !== null && !isTerminal(j.status) ? `${j.status} (cancel requested)` : j.status],
    ["progress", report],
    ["exit", outcome(j)],
    ["error", j.error],
    ["binary", j.binary],
    ["args", JSON.stringify(j.args)],
    ["paths", j.paths.join(", ")],
    ["cwd", j.cwd],
    ["requester", j.requester],
    ["worker", j.workerId],
    ["attempt", j.retries > 0 ? `${j.epoch} (retries used ${j.attempts} of ${j.retries})` : String(j.epoch)],
    ["created", time(j.createdAt)],
    ["assigned", time(j.assignedAt)],
    ["started", time(j.startedAt)],
    ["finished", time(j.finishedAt)],
    ["run time", duration(runTime(j, now))],
  ])
  if (x.events?.length) {
    out += "\ntimeline\n"
    out += table(
      ["TIME", "STATUS", "ATTEMPT", "WORKER", "REASON"],
      x.events.map((e) => [time(e.at), e.status, e.epoch, e.workerId, e.reason]),
    )
  }
  if (x.stderr) {
    out += x.stderr.length ? `\nlast ${x.stderr.length} stderr lines\n` : "\nno stderr output\n"
    if (x.stderrCut) out += "  (the first line is cut: log tails are limited in bytes, limits.max_log_tail_bytes)\n"
    for (const line of x.stderr) out += `  ${cell(line)}\n`
  }
  return out
}

/**
 * A worker's state as an operator needs it: an administrator's drain is sticky and outlives the
 * worker's own state, so it is named even while the worker is offline or still registering.
 */
export function workerState(w: Worker): string {
  if (!w.drainRequested) return w.status
  return w.status === "draining" ? "draining (admin)" : `${w.status} (admin drain)`
}

const list = (xs: string[]) => xs.join(",") || "-"

/** `gpu=nvidia,site=attic`, or `-`. */
export const labelsOf = (w: Pick<Worker, "labels">) =>
  list(Object.entries(w.labels ?? {}).map(([k, val]) => `${k}=${val}`))

/** One binary's capabilities in a line: version, how many of each, and the hwaccels by name. */
export function toolSummary(t: ToolCapabilities): string {
  const n = (name: string, xs: string[]) => `${name} ${xs.length}`
  const counts = [
    n("encoders", t.encoders),
    n("decoders", t.decoders),
    n("filters", t.filters),
    n("muxers", t.muxers),
    n("demuxers", t.demuxers),
  ]
  return `${t.version}  ${counts.join(", ")}; hwaccels ${list(t.hwaccels)}`
}

/**
 * How a worker confines its jobs, from its registration: `bwrap`, `none (unconfined)`, or `-` for a
 * worker that does not say (older versions). Worker-supplied: only known values are printed as such.
 */
export function sandboxOf(w: Worker): string {
  const mode = w.capabilities.sandbox
  if (mode === "bwrap") return "bwrap"
  if (mode === "none") return "none (unconfined)"
  return "-"
}

/** The sandbox with the user jobs run as, for `workers show`. */
function confinement(w: Worker): string {
  const user =
    typeof w.capabilities.runAs === "string"
      ? w.capabilities.runAs.replace(/[^\x20-\x7e]/g, "?").slice(0, 80)
      : undefined
  return user ? `${sandboxOf(w)}, jobs run as ${user}` : sandboxOf(w)
}

const GiB = 1024 ** 3
const gib = (n: number) => (n / GiB).toFixed(1)
/** Its host's CPU busy % from its last heartbeat (`-` before one, and for offline workers: it is old news). */
const cpuOf = (w: WorkerView) => (w.hostLoad && w.status !== "offline" ? `${Math.round(w.hostLoad.cpuPercent)}%` : "-")
/** Its host's memory used/total in GiB, as `cpuOf`. */
const memOf = (w: WorkerView) =>
  w.hostLoad && w.status !== "offline" ? `${gib(w.hostLoad.memUsedBytes)}/${gib(w.hostLoad.memTotalBytes)} GiB` : "-"

/** `37% CPU (load 2.25, 8 CPUs), 3.0/16.0 GiB memory, measured 10:00:00; GPU 0 NVIDIA T4: 61%, 1.0/16.0 GiB`. */
function hostLoadOf(w: WorkerView): string {
  const l = w.hostLoad
  if (!l) return "-"
  const gpus = l.gpus.map(
    (g, i) =>
      `GPU ${i} ${g.name}: ${g.utilPercent === null ? "?" : `${Math.round(g.utilPercent)}%`}` +
      (g.memUsedBytes !== null && g.memTotalBytes !== null
        ? `, ${gib(g.memUsedBytes)}/${gib(g.memTotalBytes)} GiB`
        : ""),
  )
  return [
    `${Math.round(l.cpuPercent)}% CPU (load ${l.load1}, ${l.cpus} CPUs), ${gib(l.memUsedBytes)}/${gib(l.memTotalBytes)} GiB memory, measured ${l.at}`,
    ...gpus,
  ].join("; ")
}

export function workersTable(workers: WorkerView[], now: number): string {
  return table(
    ["ID", "STATUS", "LOAD", "CPU", "MEM", "BINARIES", "PATHS", "SANDBOX", "VERSION", "LAST SEEN"],
    workers.map((w) => [
      w.id,
      workerState(w),
      `${w.load}/${w.maxJobs}`,
      cpuOf(w),
      memOf(w),
      list(w.binaries),
      list(w.paths),
      sandboxOf(w),
      w.version,
      `${ago(w.lastSeen, now)} ago`,
    ]),
  )
}

/** Workers that can take jobs now or soon: slots of offline and registering workers do not count. */
const serving = (w: WorkerView) => w.status === "online" || w.status === "draining"

/** The cluster's capacity at a glance (`client workers`): a load bar per worker and a total line. */
export function loadTable(workers: WorkerView[]): string {
  const rows = workers.map((w) => [
    w.id,
    workerState(w),
    `${bar(w.load, w.maxJobs)} ${w.load}/${w.maxJobs}`,
    list(w.binaries),
    list(w.paths),
  ])
  const up = workers.filter(serving)
  const used = up.reduce((n, w) => n + w.load, 0)
  const total = up.reduce((n, w) => n + w.maxJobs, 0)
  const online = workers.filter((w) => w.status === "online").length
  return (
    table(["ID", "STATUS", "LOAD", "BINARIES", "PATHS"], rows) +
    `\n${workers.length} workers, ${online} online; ${used} of ${total} slots busy\n`
  )
}

export function workerDetail(w: WorkerView, jobs: Job[], now: number): string {
  let out = fields([
    ["id", w.id],
    ["status", workerState(w)],
    ["load", `${w.load}/${w.maxJobs}`],
    ["binaries", list(w.binaries)],
    ["paths", list(w.paths)],
    ["sandbox", confinement(w)],
    ["version", w.version],
    ["labels", labelsOf(w)],
    ["weight", w.weight ?? 1],
    ["registered", time(w.registeredAt)],
    ["last seen", `${time(w.lastSeen)} (${ago(w.lastSeen, now)} ago)`],
    ["process", w.instance ? `${w.instance.host} pid ${w.instance.pid} (instance ${w.instance.id})` : "-"],
    ["host load", hostLoadOf(w)],
  ])
  const tools = Object.entries(w.tools ?? {})
  out += tools.length
    ? `\ncapabilities (full lists: --json)\n${fields(tools.map(([binary, t]) => [binary, toolSummary(t)]))}`
    : "\nno capabilities registered (an older worker, or its detection failed: see its log)\n"
  out += jobs.length ? `\ncurrent jobs\n${jobsTable(jobs, now, { requester: true })}` : "\nno current jobs\n"
  return out
}
