import { createAcker } from "./acks.ts"
import { StreamError, UnavailableError } from "../shared/errors.ts"
import { backoff, readJson, retryable, type ApiClient } from "../shared/http/client.ts"
import { pause } from "../shared/pause.ts"
import { Kind, frameJson, readFrames, type Frame } from "../shared/protocol/frames.ts"
import type { Job } from "../shared/protocol/schemas.ts"

/** How long a follower keeps trying to re-attach after losing the coordinator mid-job. */
export const RECONNECT_MS = 5 * 60_000

export interface JobFramesOptions {
  /** The job, when known; otherwise it is learned from the `job` event that opens a submit stream. */
  job?: string
  /** An already open stream (an attached submit's answer); further streams are opened as needed. */
  first?: ReadableStream<Uint8Array>
  /** Sends the submission again (its key makes it the same job) when `first` is lost before naming its job. */
  resubmit?: () => Promise<ReadableStream<Uint8Array>>
  /** Stream position to start after (0: from the beginning). */
  after?: number
  /** Extra query parameters of every re-opened stream (e.g. `progress: 1`). */
  query?: Record<string, string | number | undefined>
  signal?: AbortSignal
  /**
   * Acknowledge consumed output (the attached caller only: the coordinator then deletes it and the
   * worker may send more), at this cadence (client/acks.ts).
   */
  ack?: { everyBytes: number; everyMs: number }
}

/** The cadence of an attached caller's acknowledgements: well inside the coordinator's window (64 MiB by default, at least 1). */
export const ACK_CADENCE = { everyBytes: 4 * 1024 * 1024, everyMs: 200 }
/** Longest the last acknowledgement (after the outcome) may delay the caller's exit. */
const ACK_FLUSH_MS = 1000

/**
 * A job's frames from its stream, through coordinator restarts and dropped connections: after a
 * retryable failure the stream is re-opened after the last output position the consumer took, so
 * nothing is lost or repeated. Ends after the `exit` frame (which it yields); an `error` frame, a
 * refusal, or a coordinator gone for `RECONNECT_MS` throws. The one follow loop of the proxy, `client
 * attach` and `admin jobs logs -f`. With `ack` (the job's attached caller) the positions taken are
 * acknowledged as they go and once more after the outcome, so the coordinator deletes what was taken.
 */
export async function* jobFrames(api: ApiClient, o: JobFramesOptions): AsyncGenerator<Frame> {
  let job = o.job
  let cursor = o.after ?? 0
  let body = o.first
  let lostAt = 0
  let attempt = 0
  const acker =
    o.ack &&
    createAcker({
      ...o.ack,
      send: (pos) => api.json("POST", `/api/v1/jobs/${job}/ack`, { query: { pos }, timeoutMs: 5000, idempotent: true }),
    })
  try {
    yield* follow()
  } finally {
    acker?.stop()
  }

  async function* follow(): AsyncGenerator<Frame> {
    for (;;) {
      try {
        if (!body && !job && o.resubmit) body = await o.resubmit()
        if (!body) {
          const res = await api.request("GET", `/api/v1/jobs/${job}/stream`, {
            // Sealed by frame digests (the coordinator need not hash relayed bytes again); an older one ignores it.
            query: { after: cursor, digests: 1, ...o.query },
            signal: o.signal,
          })
          if (!res.ok || !res.body) await readJson(res)
          body = res.body!
        }
        for await (const f of readFrames(body)) {
          lostAt = 0
          attempt = 0
          if (f.kind === Kind.error)
            throw new StreamError((frameJson(f) as { message?: string }).message ?? "the coordinator ended the stream")
          if (f.kind === Kind.event) {
            const ev = frameJson(f) as { type?: string; job?: Job }
            if (ev.type === "job" && ev.job) job = ev.job.id
          }
          yield f
          // Only once the consumer has taken the bytes: a re-attach resumes after them.
          if (f.kind === Kind.stdout || f.kind === Kind.stderr) {
            cursor = f.seq
            acker?.taken(cursor, f.data.length)
          }
          if (f.kind === Kind.exit) {
            // Nothing is left to resume: what the caller took need not outlive the job on the coordinator.
            await acker?.flush(ACK_FLUSH_MS)
            return
          }
        }
        throw new UnavailableError("the coordinator closed the stream before the job ended")
      } catch (err) {
        body = undefined
        if (o.signal?.aborted) return
        if (!job && !(o.resubmit && retryable(err)))
          throw err instanceof UnavailableError
            ? new UnavailableError(`lost the coordinator while submitting: ${err.message}`)
            : err
        if (!retryable(err)) throw err
        lostAt ||= Date.now()
        if (Date.now() - lostAt > RECONNECT_MS)
          throw new UnavailableError(
            `lost the coordinator for ${RECONNECT_MS / 1000} s while following job ${job}: ${(err as Error).message}`,
          )
        // The first re-open is immediate: the coordinator takes a caller that stays away for a moment as gone.
        await pause(attempt++ ? backoff(attempt - 2) : 0, o.signal)
      }
    }
  }
}
