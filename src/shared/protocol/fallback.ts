import * as v from "valibot"

/**
 * Local fallback (issue 12 item 7, docs/fallback.md): what a client and its coordinator share about it.
 * The client decides and runs; the coordinator only learns afterwards, from a report, and counts.
 */

/** Why a client ran a command on its own machine instead of on the cluster. */
export const FALLBACK_REASONS = ["coordinator_unreachable", "no_capable_worker", "queue_timeout"] as const
export const FallbackReason = v.picklist(FALLBACK_REASONS)
export type FallbackReason = (typeof FALLBACK_REASONS)[number]

/**
 * THE marker of a job that failed because no online worker could run it: its `error` starts with this.
 * The janitor's "no online worker can run it (needs ...)" and the submission-time refusal ("no online worker
 * has encoder h264_nvenc") both begin with it, and a client with `fallback.when: [no_capable_worker]` keys
 * on it and on nothing else. Any coordinator code that fails a job for that reason must write its reason
 * as `${NO_CAPABLE_WORKER} ...`; any other failure must not begin with it.
 */
export const NO_CAPABLE_WORKER = "no online worker"

/** Whether a job's `error` says that no online worker could run it (see `NO_CAPABLE_WORKER`). */
export const noCapableWorker = (error: string | null | undefined): boolean =>
  typeof error === "string" && error.startsWith(NO_CAPABLE_WORKER)

/**
 * The `error` of a job its caller withdrew to run it locally (`POST /api/v1/jobs/:id/withdraw`, only
 * while it has not started): the caller's follow sees it in the outcome and runs the command itself.
 */
export const WITHDRAWN_FOR_FALLBACK = "withdrawn by its caller, which runs it locally (fallback)"

/** Most records in one report; a client with more pending sends them in several. */
export const FALLBACK_REPORT_MAX = 100

/**
 * One local run as the client reports it. Only what the counts and the dashboard need travels: the command
 * line stays in the client's own log (it may name the caller's files).
 */
export const FallbackRecord = v.strictObject({
  /** The client's id of the record (a UUID): a report sent again is not counted again. */
  id: v.pipe(v.string(), v.regex(/^[0-9a-f-]{36}$/, "must be a UUID")),
  /** When the local run started (Unix ms). */
  at: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(8.64e15)),
  reason: FallbackReason,
  /** The tool it ran as: ffmpeg or ffprobe. */
  tool: v.picklist(["ffmpeg", "ffprobe"]),
  /** Its exit code, or null when it could not be started (or died by a signal: then 128+N). */
  code: v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(255))),
})
export type FallbackRecord = v.InferOutput<typeof FallbackRecord>

export const FallbackReport = v.strictObject({
  records: v.pipe(v.array(FallbackRecord), v.minLength(1), v.maxLength(FALLBACK_REPORT_MAX)),
})
export type FallbackReport = v.InferOutput<typeof FallbackReport>

/** What the coordinator answers a report: how many records were new, how many it had counted before. */
export interface FallbackReceipt {
  accepted: number
  duplicates: number
}

/** The counts one coordinator holds, per client and reason (dashboard, `dffmpeg_client_fallbacks_total`). */
export interface FallbackCount {
  client: string
  reason: FallbackReason
  count: number
  /** The latest reported local run (Unix ms). */
  lastAt: number
}
