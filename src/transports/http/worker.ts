import * as v from "valibot"
import { ConflictError, DffmpegError, NotFoundError, TrustError } from "../../shared/errors.ts"
import { readJson, retryable as httpRetryable, type ApiClient } from "../../shared/http/client.ts"
import { FRAMES_MEDIA_TYPE, readFrames } from "../../shared/protocol/frames.ts"
import { framesBodyHash } from "../../shared/auth/hmac.ts"
import { issueLines } from "../../shared/protocol/schemas.ts"
import { HeartbeatReply, OkReply, PollReply, RegisterReply, UploadReply } from "../../shared/protocol/worker.ts"
import {
  JobGoneError,
  ProtocolError,
  StaleJobError,
  TransportUnavailableError,
  UnknownWorkerError,
  type WorkerTransport,
} from "../types.ts"

/** A reply body checked against its schema: a coordinator that answers something else is named, not trusted. */
function reply<S extends v.GenericSchema>(schema: S, what: string, value: unknown): v.InferOutput<S> {
  const res = v.safeParse(schema, value)
  if (!res.success) throw new ProtocolError(`the coordinator's ${what} reply is not valid`, issueLines(res.issues))
  return res.output
}

/**
 * HTTP failures as the protocol's typed errors. A 409 on a job call means the job is no longer ours at
 * that epoch, on a worker call that the coordinator does not know us. Besides outages, a job's uploads
 * and downlink also retry 401 and 413: the coordinator never refuses a worker's valid key, and a worker's
 * batches (at most 4 MiB) are under every upload cap, so these come unsigned from something between us
 * and the coordinator (or from a key revoked meanwhile); giving up would let a forged reply kill a running
 * job or lose its cancel. While they last heartbeats fail too, and self-fencing stops the job after two
 * intervals, as in any outage.
 */
function typed(scope: "worker" | "job" | "job-stream") {
  return (err: unknown): never => {
    if (err instanceof TrustError || err instanceof ProtocolError) throw err
    if (err instanceof ConflictError)
      throw scope === "worker"
        ? new UnknownWorkerError(err.message, err.details)
        : new StaleJobError(err.message, err.details)
    if (scope !== "worker" && err instanceof NotFoundError) throw new JobGoneError(err.message)
    const forged = scope === "job-stream" && err instanceof DffmpegError && (err.status === 401 || err.status === 413)
    if (forged || httpRetryable(err)) throw new TransportUnavailableError((err as Error).message)
    throw err
  }
}
const onWorker = typed("worker")
const onJob = typed("job")
const onJobStream = typed("job-stream")

/** The default transport: signed HTTP to the coordinator, long poll for work, framed bodies for bytes. */
export function httpWorkerTransport(api: ApiClient, instance?: string): WorkerTransport {
  // The process calling (docs/operations.md, "One identity, one worker"), where it changes what a call does.
  const own = instance ? { instance } : {}
  return {
    kind: "http",
    url: api.url,
    register: ({ instance: proc, ...reg }) =>
      api
        // Repeatable (docs/protocol.md, "Several coordinators"): register, verify, heartbeat, deregister,
        // start (a repeat of the claim stands) and uploads (by sequence number); reject is not. The
        // process in the query: a coordinator from before it ignores the parameters (a body field it refuses).
        .json("POST", "/api/v1/worker/register", {
          json: reg,
          query: proc ? { instance: proc.id, host: proc.host, pid: proc.pid } : {},
          idempotent: true,
        })
        .then((r) => reply(RegisterReply, "register", r), onWorker),
    async verify(token) {
      reply(
        OkReply,
        "verify",
        await api.json("POST", "/api/v1/worker/verify", { json: { token }, idempotent: true }).catch(onWorker),
      )
    },
    async deregister() {
      reply(
        OkReply,
        "deregister",
        await api
          .json("POST", "/api/v1/worker/deregister", { query: own, timeoutMs: 3000, idempotent: true })
          .catch(onWorker),
      )
    },
    // One long poll per batch, asked for only when the consumer pulls the next one.
    async *assignments(waitSeconds, signal, following, holding) {
      while (!signal.aborted) {
        const wait = waitSeconds()
        let body: unknown
        try {
          body = await api.json("GET", "/api/v1/worker/poll", {
            // Sent even when empty: it says this worker opens downlinks when the poll names them.
            query: { wait, following: following?.().join(","), holding: holding?.().join(",") || undefined, ...own },
            signal,
            timeoutMs: (wait + 10) * 1000,
          })
        } catch (err) {
          if (signal.aborted) return
          onWorker(err)
        }
        yield reply(PollReply, "poll", body)
      }
    },
    heartbeat: (held, hostLoad) =>
      api
        .json("POST", "/api/v1/worker/heartbeat", {
          query: own,
          json: hostLoad ? { jobs: held, hostLoad } : { jobs: held },
          timeoutMs: 5000,
          idempotent: true,
        })
        .then((r) => reply(HeartbeatReply, "heartbeat", r), onWorker),
    async reject(job, epoch) {
      reply(OkReply, "reject", await api.json("POST", `/api/v1/jobs/${job}/reject`, { query: { epoch } }).catch(onJob))
    },
    async start(job, epoch, note) {
      const opts = note
        ? { query: { epoch }, json: { note }, idempotent: true }
        : { query: { epoch }, idempotent: true }
      reply(OkReply, "start", await api.json("POST", `/api/v1/jobs/${job}/start`, opts).catch(onJob))
    },
    async upload(job, epoch, frames, opts) {
      const body = await api
        .json("POST", `/api/v1/jobs/${job}/output`, {
          query: { epoch, ...(opts?.retain ? { retain: 1 } : {}) },
          body: frames,
          contentType: FRAMES_MEDIA_TYPE,
          // The encoder's bodies are whole frames; one of more than FRAMES_DIGEST_MAX is signed by its SHA-256.
          ...(opts?.digests ? { framesHash: framesBodyHash(frames)?.hash } : {}),
          timeoutMs: 30_000,
          idempotent: true,
        })
        .catch(onJobStream)
      const r = reply(UploadReply, "output", body)
      return { durable: r.durable, resend: r.resend, digests: r.digests }
    },
    async *input(job, epoch, after, signal) {
      try {
        const res = await api.request("GET", `/api/v1/jobs/${job}/input`, { query: { epoch, after }, signal })
        if (!res.ok || !res.body) await readJson(res)
        yield* readFrames(res.body!)
      } catch (err) {
        onJobStream(err)
      }
    },
  }
}
