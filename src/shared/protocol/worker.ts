import * as v from "valibot"
import { TRANSPORT_NAMES } from "./transports.ts"
import { InvalidError } from "../errors.ts"
import { isUlid } from "../ids.ts"
import { printable } from "./printable.ts"
import { Lane } from "./capabilities.ts"
import { Name, VarName } from "./schemas.ts"
import { HostLoad } from "./host-load.ts"

/**
 * The worker protocol's messages (docs/protocol.md), apart from the shapes callers use: the proxy never
 * loads this module. Requests are strict; replies tolerate fields a newer coordinator adds.
 */

/** A job offered to a worker by the coordinator (an element of `PollReply.jobs`). */
export const Assignment = v.object({
  id: v.pipe(v.string(), v.check(isUlid, "must be a job id (ULID)")),
  epoch: v.pipe(v.number(), v.integer(), v.minValue(0)),
  binary: Name,
  args: v.array(v.string()),
  paths: v.array(VarName),
  cwd: v.nullable(v.string()),
  /** The caller's environment (absent from older coordinators: none). */
  env: v.optional(v.record(v.string(), v.string())),
  /** Concat lists and filter scripts in `$Var` form (absent from older coordinators: none). */
  files: v.optional(v.array(v.object({ arg: v.number(), content: v.string() }))),
  stdin: v.boolean(),
  /** The caller decodes path tokens: write the worker's roots as them (absent from older coordinators: no). */
  pathTokens: v.optional(v.boolean()),
  /**
   * The slots it takes: `max_probe_jobs` for a probe, `max_jobs` for a transcode. Absent from older
   * coordinators: the worker then holds it against all its slots together.
   */
  lane: v.optional(Lane),
})
export type Assignment = v.InferOutput<typeof Assignment>

/** A job a worker holds (runs or starts) at an epoch, as its heartbeat reports it. */
export const HeldJob = v.strictObject({
  id: v.pipe(v.string(), v.maxLength(26)),
  epoch: v.pipe(v.number(), v.integer(), v.minValue(0)),
})
export type HeldJob = v.InferOutput<typeof HeldJob>

/**
 * Heartbeat request: every job the worker holds (at most 4096), and its host's load when it could
 * measure it (absent from older workers, and on hosts without /proc).
 */
export const HeartbeatRequest = v.strictObject({
  jobs: v.pipe(v.array(HeldJob), v.maxLength(4096)),
  hostLoad: v.optional(HostLoad),
})
export type HeartbeatRequest = v.InferOutput<typeof HeartbeatRequest>

/** Stage two of registration: the token the worker received over its job channel. */
export const VerifyRequest = v.strictObject({ token: v.pipe(v.string(), v.maxLength(64)) })
/**
 * The optional body of a start claim: what the worker changed before spawning (its argument profile's
 * rewrites, `profile: h264_nvenc -> h264_qsv`), for the job's timeline. Workers without profiles send none.
 */
export const StartRequest = v.strictObject({ note: v.optional(printable(1024)) })
export type StartRequest = v.InferOutput<typeof StartRequest>
export type VerifyRequest = v.InferOutput<typeof VerifyRequest>

const Seconds = v.pipe(v.number(), v.minValue(0))

/** The coordinator's answer to a registration: the timing the worker follows. */
export const RegisterReply = v.object({
  /** How long the coordinator holds a poll open before answering with no work. */
  pollWaitSeconds: Seconds,
  /** How often to send heartbeats for held jobs. */
  heartbeatSeconds: v.pipe(Seconds, v.minValue(0.001)),
  /** How often to register again (binaries, healthy paths, draining). */
  registrationSeconds: v.pipe(Seconds, v.minValue(0.001)),
  /**
   * The transport the coordinator picked from the registration's `transports` (absent from coordinators
   * before broker transports: http_polling). The worker's polls must come that way from now on.
   */
  transport: v.optional(v.picklist(TRANSPORT_NAMES)),
  /**
   * The coordinator takes `hostLoad` in heartbeats (absent from older ones, which refuse the field: the
   * worker then sends none, rather than have every heartbeat refused).
   */
  hostLoad: v.optional(v.boolean()),
})
export type RegisterReply = v.InferOutput<typeof RegisterReply>

const JobId = v.pipe(v.string(), v.check(isUlid, "must be a job id (ULID)"))

/** A running job whose downlink the worker should open now (an element of `PollReply.downlink`). */
export const DownlinkDue = v.object({ id: JobId, epoch: v.pipe(v.number(), v.integer(), v.minValue(0)) })
export type DownlinkDue = v.InferOutput<typeof DownlinkDue>

/**
 * The most downlinks a poll may name as followed: 256 ids keep its query under 7 KB, well within the
 * header limits of servers and proxies. A worker with more job slots follows every downlink at once and
 * names none (as workers did before the poll named downlinks).
 */
export const MAX_FOLLOWING = 256

/**
 * A poll's `following` query: the running jobs whose downlink the worker already follows, comma-separated
 * job ids. Empty: none. Absent (undefined): the worker follows every job's downlink itself, and the poll
 * names none. InvalidError (400) for anything else.
 */
export function parseFollowing(raw: string | undefined, param = "following"): string[] | undefined {
  if (raw === undefined) return undefined
  if (raw === "") return []
  // Checked before splitting: a hostile query costs no more than its own length.
  const tooMany = `query parameter ${param} lists at most ${MAX_FOLLOWING} job ids`
  if (raw.length > MAX_FOLLOWING * 27) throw new InvalidError(tooMany)
  const ids = raw.split(",")
  if (ids.length > MAX_FOLLOWING) throw new InvalidError(tooMany)
  if (!ids.every((id) => isUlid(id)))
    throw new InvalidError(`query parameter ${param} must be comma-separated job ids (ULIDs)`)
  return ids
}

/**
 * A poll's `holding` query: the assigned jobs the worker already received and has not started yet (its
 * start claim is on its way), which the poll need not answer again. Absent or empty: none. As
 * `following` otherwise.
 */
export const parseHolding = (raw: string | undefined): string[] => parseFollowing(raw, "holding") ?? []

/**
 * The answer to a poll: assignments not yet started, or the registration token to echo with verify, and
 * the running jobs whose downlink has something for the worker (a signal, input, a cancel) that it does
 * not follow yet. A reply without `downlink` comes from an older coordinator, which expects every
 * running job's downlink to be followed.
 */
export const PollReply = v.object({
  jobs: v.array(Assignment),
  downlink: v.optional(v.array(DownlinkDue)),
  /** Registration token to echo with `verify` (stage two of registration). */
  verify: v.optional(v.string()),
})
export type PollReply = v.InferOutput<typeof PollReply>

/** The answer to a heartbeat. */
export const HeartbeatReply = v.object({
  /** Held jobs that are no longer this worker's at that epoch: stop them without reporting. */
  stale: v.array(v.object(HeldJob.entries)),
  /** The coordinator considers this worker offline: register again. */
  reregister: v.boolean(),
})
export type HeartbeatReply = v.InferOutput<typeof HeartbeatReply>

/** The answer to verify, deregister, start and reject. */
export const OkReply = v.object({ ok: v.literal(true) })

/**
 * The answer to an output upload: `finished` once the exit frame ended the job. To a worker that keeps
 * what it sent (`?retain=1`, docs/protocol.md "Held output"): `durable`, the sequence up to which the
 * attempt's output no longer needs it (stored, acknowledged or ended with the job), or `resend`: the
 * coordinator lost the output it held from that sequence on (it restarted) and took nothing beyond what
 * this upload brought back; send again from there. `digests`: later uploads may be signed by their
 * frames' digests.
 */
export const UploadReply = v.object({
  ok: v.literal(true),
  finished: v.boolean(),
  durable: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  resend: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  /** The coordinator takes bodies signed by their frames' digests (docs/protocol.md, "Frame digests"). */
  digests: v.optional(v.boolean()),
})
export type UploadReply = v.InferOutput<typeof UploadReply>

/** Formats valibot issues as `path: message` lines. */
