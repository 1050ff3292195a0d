import type { HostLoad } from "../../shared/protocol/host-load.ts"
import { waitReasons } from "../scheduler.ts"
import type { Lane, Priority } from "../../shared/protocol/capabilities.ts"
import {
  TERMINAL,
  type Job,
  type JobEvent,
  type JobStatus,
  type Progress,
  type Worker,
  type WorkerStatus,
} from "../../shared/protocol/schemas.ts"
import type { FallbackCount } from "../../shared/protocol/fallback.ts"
import { VERSION } from "../../shared/version.ts"
import type { Stats, Store } from "../../store/index.ts"
import type { JobListing } from "../../store/types.ts"
import { tailChunks, tailLines } from "../../shared/tail.ts"
import { tailText, type LogText } from "./log-text.ts"

/** What the dashboard shows, as JSON. The page renders it; nothing here is HTML. */

export const ACTIVE: JobStatus[] = ["queued", "assigned", "running"]
/** Longest lists sent to a browser (several times a second while jobs run). */
export const MAX_ACTIVE = 200
export const MAX_RECENT = 50
/** Offline workers stay listed this long after they were last heard from. */
export const OFFLINE_SHOWN_MS = 24 * 3600_000
/** stderr chunks read for a log tail (ffmpeg writes small ones; the bytes are then cut to TAIL_BYTES). */
export const TAIL_CHUNKS = 256

const COMMAND_CHARS = 240
/** Arguments' JSON a list row reads: enough for the shortened command line. */
const LIST_ARGS_CHARS = 1024
/** Arguments' JSON a job page's live updates carry; the page loads the whole command once (`readJob`). */
export const LIVE_ARGS_CHARS = 2048
const ERROR_CHARS = 400

/** How a worker is doing, beyond its status: `late` is online or draining but has not polled lately. */
export type Health = "ok" | "late" | "registering" | "offline"

export interface WorkerView {
  id: string
  status: WorkerStatus
  health: Health
  drainRequested: boolean
  /** Jobs assigned to or running on it. */
  load: number
  slots: number
  binaries: string[]
  paths: string[]
  version: string
  capabilities: Record<string, unknown>
  /** Per binary: its version, how many encoders/decoders/filters it has and its verified hwaccels (not the lists). */
  tools: Record<string, ToolSummary>
  labels: Record<string, string>
  weight: number
  registeredAt: number
  lastSeen: number
  /** Its host's load from its last heartbeat that carried one (shared/protocol/host-load.ts), or null. */
  hostLoad: HostLoad | null
}

/** What the worker table shows of one binary's capabilities: a few counts, never thousands of names. */
export interface ToolSummary {
  version: string
  encoders: number
  decoders: number
  filters: number
  hwaccels: string[]
}

/** A job in a list: the command is shortened, the rest is as stored. */
export interface JobSummary {
  id: string
  status: JobStatus
  /** A cancel was requested and the worker is stopping the process. */
  canceling: boolean
  binary: string
  /** The arguments as one line, shortened. */
  command: string
  requester: string
  workerId: string | null
  createdAt: number
  startedAt: number | null
  finishedAt: number | null
  exitCode: number | null
  exitSignal: string | null
  error: string | null
  attempts: number
  progress: Progress | null
  lane: Lane
  priority: Priority
  /** For a queued job: why no worker takes it, by the scheduler's rule (`no online worker has encoder h264_nvenc`); null otherwise. */
  waiting?: string | null
}

export interface DashboardState {
  version: string
  /** The coordinator's clock (ms): the page shows ages against it, not against the browser's. */
  now: number
  workers: WorkerView[]
  jobs: { active: JobSummary[]; recent: JobSummary[] }
  stats: Stats
  /** Commands clients ran locally instead (local fallback), per client and reason, as reported to this coordinator since it started. */
  fallbacks: FallbackCount[]
}

export interface JobDetail {
  /** `truncated` (live updates only): the arguments were cut; the page keeps the whole ones it loaded. */
  job: Job & { canceling: boolean; truncated?: boolean }
  events: JobEvent[]
  log: LogText
}

export function healthOf(w: Worker, now: number, staleMs: number): Health {
  if (w.status === "offline" || w.status === "registering") return w.status
  return now - w.lastSeen < staleMs ? "ok" : "late"
}

export function workerView(w: Worker, load: number, now: number, staleMs: number): WorkerView {
  return {
    id: w.id,
    status: w.status,
    health: healthOf(w, now, staleMs),
    drainRequested: w.drainRequested,
    load,
    slots: w.maxJobs,
    binaries: w.binaries,
    paths: w.paths,
    version: w.version,
    capabilities: w.capabilities,
    tools: Object.fromEntries(
      Object.entries(w.tools ?? {}).map(([b, t]) => [
        b,
        {
          version: t.version,
          encoders: t.encoders.length,
          decoders: t.decoders.length,
          filters: t.filters.length,
          hwaccels: t.hwaccels,
        },
      ]),
    ),
    labels: w.labels ?? {},
    weight: w.weight ?? 1,
    registeredAt: w.registeredAt,
    lastSeen: w.lastSeen,
    hostLoad: w.hostLoad ?? null,
  }
}

const shorten = (s: string, n: number) => (s.length > n ? s.slice(0, n - 1) + "…" : s)

export function jobSummary(j: Job | JobListing): JobSummary {
  const cut = "truncated" in j && j.truncated
  return {
    id: j.id,
    status: j.status,
    canceling: j.cancelRequestedAt !== null && !TERMINAL.includes(j.status),
    binary: j.binary,
    command: shorten(j.args.join(" ") + (cut ? " …" : ""), COMMAND_CHARS),
    requester: j.requester,
    workerId: j.workerId,
    createdAt: j.createdAt,
    startedAt: j.startedAt,
    finishedAt: j.finishedAt,
    exitCode: j.exitCode,
    exitSignal: j.exitSignal,
    error: j.error === null ? null : shorten(j.error, ERROR_CHARS),
    attempts: j.attempts,
    progress: j.progress,
    lane: j.lane,
    priority: j.priority,
  }
}

/** Workers worth showing: every one that is not offline, and offline ones heard from in the last day. */
export function shownWorkers(workers: Worker[], now: number): Worker[] {
  return workers.filter((w) => w.status !== "offline" || now - w.lastSeen < OFFLINE_SHOWN_MS)
}

export async function readState(deps: {
  store: Store
  now: () => number
  staleMs: number
  /** The scheduler's `poll_gone_seconds` (ms): a worker whose poll closed that long ago gets nothing new. */
  pollGoneMs?: number
  fallbacks?: { counts(): FallbackCount[] }
}): Promise<DashboardState> {
  const { store } = deps
  const [workers, lanes, active, recent, stats] = await Promise.all([
    store.listWorkers(),
    store.laneLoads(),
    // Summaries cut by the database: one read costs the same whatever the size of the jobs' arguments.
    store.listJobSummaries({ statuses: ACTIVE, limit: MAX_ACTIVE }, { argsChars: LIST_ARGS_CHARS }),
    store.listJobSummaries({ statuses: [...TERMINAL], limit: MAX_RECENT }, { argsChars: LIST_ARGS_CHARS }),
    store.stats(),
  ])
  const now = deps.now()
  const live = { now, staleMs: deps.staleMs, pollGoneMs: deps.pollGoneMs }
  const waiting = waitReasons(
    active.filter((j) => j.status === "queued"),
    workers,
    lanes,
    live,
  )
  return {
    version: VERSION,
    now,
    workers: shownWorkers(workers, now).map((w) => workerView(w, lanes.get(w.id)?.transcode ?? 0, now, deps.staleMs)),
    jobs: {
      active: active.map((j) => ({ ...jobSummary(j), waiting: waiting.get(j.id) ?? null })),
      recent: recent.map(jobSummary),
    },
    stats,
    fallbacks: deps.fallbacks?.counts() ?? [],
  }
}

export function jobView(j: Job | JobListing): JobDetail["job"] {
  return { ...j, canceling: j.cancelRequestedAt !== null && !TERMINAL.includes(j.status) }
}

/** A job with its timeline and the tail of its stderr; undefined for an unknown job. */
export async function readJob(store: Store, id: string): Promise<JobDetail | undefined> {
  const job = await store.getJob(id)
  if (!job) return undefined
  const [events, tail] = await Promise.all([store.events(id), store.lastOutput(id, "stderr", TAIL_CHUNKS)])
  return { job: jobView(job), events, log: tailText(tail.map((r) => r.data)) }
}

/** Finished jobs a page of the dashboard's list holds at most, and the longest search text. */
export const MAX_PAGE = 200
export const MAX_SEARCH = 200
/** stderr lines a failed job shows in the list, read from at most this many bytes of its log. */
export const FAILED_LINES = 3
const FAILED_TAIL_BYTES = 16 * 1024

export interface FinishedQuery {
  statuses: JobStatus[]
  worker?: string
  requester?: string
  /** Substring of the arguments (a file name), case-insensitive. */
  text?: string
  /** Keyset paging: only jobs older than this id (the previous page's `next`). */
  before?: string
  limit: number
}

export interface FinishedPage {
  /** A failed job carries the last lines of its stderr (`stderr`). */
  jobs: (JobSummary & { stderr?: string[] })[]
  /** The `before` of the next (older) page; null on the last page. */
  next: string | null
}

/**
 * One page of finished jobs, newest first, by keyset paging on the job id (a ULID: creation order),
 * so a page costs its size however deep it is and a job finishing meanwhile never shifts a page.
 * One more row than asked says whether there is a next page.
 */
export async function readFinished(store: Store, q: FinishedQuery): Promise<FinishedPage> {
  const rows = await store.listJobSummaries(
    {
      statuses: q.statuses,
      worker: q.worker,
      requester: q.requester,
      text: q.text,
      before: q.before,
      limit: q.limit + 1,
    },
    { argsChars: LIST_ARGS_CHARS },
  )
  const page = rows.slice(0, q.limit)
  const jobs = await Promise.all(
    page.map(async (j) => {
      const s = jobSummary(j)
      if (j.status !== "failed") return s
      const read = await store.lastOutputBytes(j.id, "stderr", tailChunks(FAILED_LINES), FAILED_TAIL_BYTES)
      const lines = tailLines(
        read.rows.map((r) => r.data),
        FAILED_LINES + 8,
      ).filter((l) => l.trim() !== "")
      return { ...s, stderr: lines.slice(-FAILED_LINES).map((l) => shorten(l, 300)) }
    }),
  )
  return { jobs, next: rows.length > q.limit ? page[page.length - 1].id : null }
}

export interface ThroughputHour {
  /** Start of the hour (ms). */
  at: number
  completed: number
  failed: number
  canceled: number
}

export const HOUR_MS = 3600_000

/** Jobs finished in each of the last 24 hours (the current one last), by outcome: one grouped read. */
export async function readThroughput(store: Store, now: number): Promise<{ hours: ThroughputHour[] }> {
  const first = Math.floor(now / HOUR_MS) * HOUR_MS - 23 * HOUR_MS
  const rows = await store.throughput(first, HOUR_MS)
  const hours = Array.from({ length: 24 }, (_, i) => ({
    at: first + i * HOUR_MS,
    completed: 0,
    failed: 0,
    canceled: 0,
  }))
  for (const r of rows) {
    const h = hours[Math.round((r.at - first) / HOUR_MS)]
    if (h) h[r.status] += r.count
  }
  return { hours }
}
