import * as v from "valibot"
import { TRANSPORT_NAMES, type BrokerKind } from "./transports.ts"
import { ENV_COUNT_MAX, ENV_NAME, ENV_VALUE_MAX } from "../ffargs/env.ts"
import { FILE_BYTES_MAX, FILES_MAX } from "../paths/contents.ts"
import { VAR_NAME } from "../paths/vars.ts"
import { Labels, Tools, type JobNeeds, type Lane, type Priority } from "./capabilities.ts"
import { printable } from "./printable.ts"
import { WorkerInstance, type HostLoad } from "./host-load.ts"

/** Wire shapes (camelCase). Every body that crosses a trust boundary is parsed with one of these. */

export const Role = v.picklist(["client", "worker", "admin"])
export type Role = v.InferOutput<typeof Role>

export const JobStatus = v.picklist(["queued", "assigned", "running", "completed", "failed", "canceled"])
export type JobStatus = v.InferOutput<typeof JobStatus>
export const TERMINAL: readonly JobStatus[] = ["completed", "failed", "canceled"]
export const isTerminal = (s: JobStatus) => TERMINAL.includes(s)

/** Binary and identity names as they travel (`ffmpeg`, a worker's name). */
export const Name = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "must be 1-64 letters, digits, '_', '-' or '.'"),
)
/** Path variable names as used in `$Var/...`. */
export const VarName = v.pipe(
  v.string(),
  v.regex(VAR_NAME, "must be a letter or '_' followed by letters, digits or '_'"),
)

// Linux itself refuses arguments over 128 KiB (MAX_ARG_STRLEN), so anything a shell can pass is accepted.
/** No NUL: no process can be given one, and ffmpeg would read only up to it what the checks read whole. */
const Arg = v.pipe(
  v.string(),
  v.maxLength(131072, "an argument is longer than 128 KiB"),
  v.check((s) => !s.includes("\0"), "an argument holds a NUL byte"),
)

/**
 * The caller's environment that ffmpeg reads (FFREPORT, AV_LOG_FORCE_*, TZ, LANG, LC_*...): names of a
 * strict pattern, few and short; the coordinator also counts them in the job's argument budget.
 */
export const JobEnv = v.pipe(
  v.record(
    v.pipe(v.string(), v.regex(ENV_NAME, "environment names are a letter or '_' followed by letters, digits or '_'")),
    v.pipe(
      v.string(),
      v.maxLength(ENV_VALUE_MAX, `an environment value is longer than ${ENV_VALUE_MAX} characters`),
      v.check((s) => !s.includes("\0"), "an environment value holds a NUL byte"),
    ),
  ),
  v.check((r) => Object.keys(r).length <= ENV_COUNT_MAX, `more than ${ENV_COUNT_MAX} environment variables`),
)

/**
 * Files the job names whose content holds paths (concat lists, filter scripts), rewritten by the client to
 * `$Var` form: `arg` is the argv position naming the file. The coordinator checks bytes, positions and
 * variables (shared/paths/contents.ts `checkJobFiles`); the worker writes its own copy.
 */
export const JobFiles = v.pipe(
  v.array(
    v.strictObject({
      arg: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(99_999)),
      content: v.pipe(v.string(), v.maxLength(FILE_BYTES_MAX, "a file's content is longer than 1 MiB")),
    }),
  ),
  v.maxLength(FILES_MAX, `more than ${FILES_MAX} files`),
)
export type JobFile = v.InferOutput<typeof JobFiles>[number]

export const SubmitRequest = v.strictObject({
  binary: Name,
  // The coordinator's own limits (limits.max_args_count, max_args_bytes) apply on top; this is their ceiling.
  args: v.pipe(v.array(Arg), v.maxLength(100_000, "more than 100000 arguments")),
  paths: v.pipe(v.array(VarName), v.maxLength(256)),
  cwd: v.nullable(v.pipe(v.string(), v.maxLength(4096))),
  /** The caller's environment for the process (the client's `forward_env`; FFREPORT's file in `$Var` form). */
  env: v.optional(JobEnv, {}),
  /** Concat lists and filter scripts with their paths in `$Var` form (JobFiles). */
  files: v.optional(JobFiles, []),
  /** False when the caller has no stdin (closed or /dev/null): the remote process then reads /dev/null. */
  stdin: v.optional(v.boolean(), true),
  /**
   * True when the caller follows the job (proxy, `client submit` without --detach): if it vanishes the
   * job is canceled, and a lost worker fails the job rather than re-running it under the caller.
   */
  attached: v.optional(v.boolean(), false),
  /** Times a detached job is re-run after its worker is lost (never for attached jobs). */
  retries: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100)), 0),
  /**
   * True when the caller turns path tokens in the job's output back into its own paths (docs/protocol.md,
   * "Paths in the output"): only a worker that writes them (capability `pathTokens`) is then given the job,
   * and a worker writes them only for such a job, so a caller and a worker of different versions never
   * disagree about what the output bytes mean.
   */
  pathTokens: v.optional(v.boolean(), false),
  /**
   * The caller's key of this submission (docs/protocol.md, "Several coordinators"): a submission repeated
   * with the same key, on any coordinator, answers the job the first one created instead of a second.
   */
  submission: v.optional(
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,64}$/, "must be 16-64 letters, digits, '_' or '-'")),
  ),
})
export type SubmitRequest = v.InferOutput<typeof SubmitRequest>

/** A registration's capabilities: up to 32 named facts (`sandbox`, `runAs`, `platform`...), each a short printable string, a number, a boolean or null. */
const Capabilities = v.pipe(
  v.record(
    v.pipe(
      v.string(),
      v.regex(/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/, "capability names must be 1-64 letters, digits, '_', '-' or '.'"),
    ),
    v.union([printable(256), v.number(), v.boolean(), v.null()]),
  ),
  v.check((r) => Object.keys(r).length <= 32, "at most 32 capabilities"),
)

/** A peer's transports in its order of preference: each name once. */
export const TransportList = v.pipe(
  v.array(v.picklist(TRANSPORT_NAMES)),
  v.minLength(1, "lists no transport"),
  v.check((l) => new Set(l).size === l.length, "names a transport twice"),
)

export const WorkerRegistration = v.strictObject({
  /** A draining worker keeps its running jobs and gets no new ones. */
  draining: v.optional(v.boolean(), false),
  binaries: v.pipe(v.array(Name), v.maxLength(64)),
  paths: v.pipe(v.array(VarName), v.maxLength(256)),
  maxJobs: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1024)),
  version: v.pipe(printable(64), v.minLength(1, "must not be empty")),
  capabilities: v.optional(Capabilities, {}),
  /** Per binary: what its ffmpeg/ffprobe can do, detected and verified by the worker (capabilities.ts). */
  tools: v.optional(Tools, {}),
  /** Operator-set labels (`gpu: nvidia`) that client rules can ask for. */
  labels: v.optional(Labels, {}),
  /** Tie-break between equally loaded workers: a higher weight gets the job (rffmpeg's host weight). */
  weight: v.optional(v.pipe(v.number(), v.minValue(0.01), v.maxValue(1000)), 1),
  /** Slots of the probe lane (ffprobe, info commands), apart from `maxJobs` so probes never wait behind transcodes. */
  maxProbeJobs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(256)), 4),
  /**
   * The transports the worker can use now, in its order of preference (`transports.enabled_transports`
   * whose broker link is up); absent: http_polling. The coordinator picks the first it serves.
   */
  transports: v.optional(TransportList),
  /**
   * The process registering (a new id at each start): a second live process with the identity is
   * refused (docs/operations.md, "One identity, one worker"). Absent from older workers: not checked.
   * Over HTTP it travels in the query (`?instance=&host=&pid=`), which older coordinators ignore.
   */
  instance: v.optional(WorkerInstance),
})
/** As a worker builds it: the fields with defaults may be left out (the coordinator parses it with them filled in). */
export type WorkerRegistration = v.InferInput<typeof WorkerRegistration>

/** What a worker reports when its process ends (payload of an `exit` frame it uploads). */
export const ExitReport = v.strictObject({
  code: v.nullable(v.pipe(v.number(), v.integer())),
  signal: v.nullable(v.pipe(v.string(), v.maxLength(16))),
  /** Set when the worker could not run the job at all (path refused, binary missing...). */
  error: v.optional(v.pipe(v.string(), v.maxLength(4096))),
  /**
   * Set when the worker gave the job up (forced shutdown): treated like a lost worker, i.e. the job is
   * re-queued if it is detached with retries left, and failed with this reason otherwise.
   */
  abandoned: v.optional(v.pipe(v.string(), v.maxLength(4096))),
})
export type ExitReport = v.InferOutput<typeof ExitReport>

export interface Job {
  id: string
  requester: string
  binary: string
  args: string[]
  paths: string[]
  cwd: string | null
  /** The caller's environment variables the process gets (a worker keeps those its `allowed_env` lists). */
  env: Record<string, string>
  /** Concat lists and filter scripts the job carries (JobFiles); empty in listings and summaries. */
  files: JobFile[]
  stdin: boolean
  status: JobStatus
  epoch: number
  workerId: string | null
  exitCode: number | null
  exitSignal: string | null
  error: string | null
  createdAt: number
  updatedAt: number
  assignedAt: number | null
  startedAt: number | null
  finishedAt: number | null
  attached: boolean
  /** The caller decodes path tokens in the output; the worker encodes its roots as them (SubmitRequest.pathTokens). */
  pathTokens: boolean
  retries: number
  /** Attempts that were lost with their worker (re-queued or failed). */
  attempts: number
  /** Workers that lost or gave up this job: not chosen for it again while others can take it. */
  excluded: string[]
  heartbeatAt: number | null
  clientSeenAt: number | null
  cancelRequestedAt: number | null
  /** How far the running (or last) attempt got, parsed from ffmpeg's own statistics; null when unknown. */
  progress: Progress | null
  /** Probe (own slots, dispatched first) or transcode; derived from the command at submission. */
  lane: Lane
  /** A transcode's priority (identity and client rules); probes ignore it. */
  priority: Priority
  /** What a worker must have to run it (capabilities.ts), computed at submission. */
  needs: JobNeeds
  /** Only this worker may run it (an info command answered by the reference worker), or null. */
  pin: string | null
  /**
   * Its place in its lane's queue, lowest first (ms): the submission time minus its priority's head start
   * (docs/scheduling.md), so a waiting job's effective priority rises with its wait.
   */
  queueKey: number
  /** Workers that must never be given this job again (an assignment to them timed out): a hard rule. */
  barred: string[]
}

/**
 * Progress of a job as the worker parses it from ffmpeg's stats (`time=` in the `\r` status line, or
 * `out_time_us=` of `-progress pipe:1`). Parsing reads a copy: the caller's bytes are never changed.
 */
export const ProgressReport = v.strictObject({
  /** Position reached in the output timeline, ms. */
  timeMs: v.pipe(v.number(), v.minValue(0), v.maxValue(1e13)),
  /** Expected length of the output, ms (input duration, shortened by -ss/-t/-to), when known. */
  durationMs: v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(1e13))),
  /** 0-100, when the duration is known. */
  percent: v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(100))),
  /** Encoding speed as a multiple of real time (ffmpeg's `speed=1.5x`). */
  speed: v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(1e6))),
  fps: v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(1e7))),
  frame: v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0))),
  /** Time left, ms, from the remaining duration and the speed. */
  etaMs: v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(1e13))),
})
export type ProgressReport = v.InferOutput<typeof ProgressReport>
/** A progress report as stored: with the coordinator's time of the update. */
export type Progress = ProgressReport & { at: number }

/** One state change of a job, as recorded in its timeline. */
export interface JobEvent {
  at: number
  /** The new status, or `canceling` for a cancel request on a running job. */
  status: string
  epoch: number
  workerId: string | null
  reason: string | null
}

export interface Worker {
  id: string
  binaries: string[]
  paths: string[]
  maxJobs: number
  version: string
  capabilities: Record<string, unknown>
  /** Per binary: version, encoders, decoders, verified hwaccels and devices, filters, formats. */
  tools: Tools
  labels: Labels
  weight: number
  maxProbeJobs: number
  /** When its last poll connection closed; null (or absent) while one is open. Gets no new work once closed for `poll_gone_seconds`. */
  pollClosedAt?: number | null
  /** registering until the worker proves its channel works; offline when it stopped polling. */
  status: WorkerStatus
  registeredAt: number
  lastSeen: number
  /** An administrator asked this worker to drain: it keeps its running jobs and gets no new ones. */
  drainRequested: boolean
  /** Jobs assigned to or running on this worker (filled in by listings). */
  load?: number
  /** The broker it negotiated at its last registration; absent for HTTP (http_polling). */
  transport?: BrokerKind
  /** The process serving the identity now (from its registration); null for a worker that sends none. */
  instance?: WorkerInstance | null
  /** Its host's load, from its last heartbeat that carried one; null until then. */
  hostLoad?: HostLoad | null
}

export type WorkerStatus = "registering" | "online" | "draining" | "offline"

export interface User {
  name: string
  role: Role
  createdAt: number
}

/** Final frame of a job stream: the outcome the caller must reproduce. */
export interface Outcome {
  status: JobStatus
  code: number | null
  signal: string | null
  error: string | null
}

export function issueLines(issues: readonly v.BaseIssue<unknown>[]): string[] {
  return issues.map((i) => {
    const path = v.getDotPath(i)
    return path ? `${path}: ${i.message}` : i.message
  })
}
