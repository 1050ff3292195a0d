import { Hono, type Context } from "hono"
import { AuthError, ConflictError, InvalidError, NotFoundError, TooLargeError } from "../../../shared/errors.ts"
import { reportFiles } from "../../../shared/ffargs/env.ts"
import { toolOf } from "../../../shared/ffargs/argv.ts"
import { checkSubmittedArgs } from "../../../shared/ffargs/submission.ts"
import { checkJobFiles } from "../../../shared/paths/contents.ts"
import { newId } from "../../../shared/ids.ts"
import { NEXT_PAGE_HEADER } from "../../../shared/http/pages.ts"
import { varOf } from "../../../shared/paths/vars.ts"
import { followOutput } from "../../../shared/follow.ts"
import { pause } from "../../../shared/pause.ts"
import {
  FRAMES_MEDIA_TYPE,
  Kind,
  RELAYED_SIGNALS,
  concatFrames,
  decodeFrames,
  encodeFrame,
  encodeJsonFrame,
  FrameError,
  type Frame,
} from "../../../shared/protocol/frames.ts"
import * as v from "valibot"
import { WITHDRAWN_FOR_FALLBACK } from "../../../shared/protocol/fallback.ts"
import {
  JobStatus,
  SubmitRequest,
  isTerminal,
  issueLines,
  type Job,
  type Outcome,
  type Worker,
} from "../../../shared/protocol/schemas.ts"
import { CapName, JobNeeds } from "../../../shared/protocol/capabilities.ts"
import { jobLane, jobNeeds } from "../../../shared/ffargs/needs.ts"
import { classify, queueKey } from "../../priorities.ts"
import { eligible, knownNeeds, serving, slots, unrunnable } from "../../scheduler.ts"
import type { InputChunk, JobListing, StreamRow } from "../../../store/types.ts"
import { asSummary } from "../../../store/summary.ts"
import { topic } from "../../hub.ts"
import { CALLER_GONE, cancelJob, signaledExit } from "../../jobs.ts"
import { connectionsOf, infoOf, type Deps } from "../app.ts"
import { checkArguments, checkQueueQuota } from "../quotas.ts"
import { beforeQuery, frameStream, intQuery, jobIdParam, jsonBody, sinceQuery, workerName } from "../_util.ts"
import { createWorkerProtocol, outputBounds } from "../../worker-protocol.ts"
import { StartRequest } from "../../../shared/protocol/worker.ts"
import { requireRole, type AuthEnv, type Principal } from "../middleware/hmac.ts"

const PAGE = 256
const NEED_LISTS = ["encoders", "decoders", "hwaccels", "hwDevices", "filters", "muxers", "demuxers"] as const

/** Arguments a job stream re-reads with the job's state: none are needed, the summary is the smallest read. */
const STATE_ONLY = { argsChars: 2 }

function canRead(p: Principal, job: Pick<Job, "requester" | "workerId">): boolean {
  return p.role === "admin" || job.requester === p.name || (p.role === "worker" && job.workerId === p.name)
}

export function jobRoutes(deps: Deps) {
  const { store, hub, log, now, config } = deps
  const app = new Hono<AuthEnv>()
  const connections = connectionsOf(deps)
  const info = infoOf(deps)
  const protocol = createWorkerProtocol({ ...deps, info })
  const bounds = outputBounds(config)
  // Streams say they are alive this often; for an attached job each one also counts as the caller's heartbeat.
  const KEEPALIVE_MS = Math.min(15_000, config.heartbeat_interval * 1000)

  /**
   * Open streams of attached callers on this coordinator, per job. When the last one closes before the
   * job ended and the caller does not come back within a short grace (a live caller re-opens a dropped
   * stream at once), the caller is gone (killed, crashed): the job is canceled as `CALLER_GONE`, which
   * its worker kills rather than finalises, so a dead caller is a dead ffmpeg within about half a
   * second. Whether it came back is judged from the database, not from this map: every caller stream
   * writes `client_seen_at` as it opens, so one re-opened through another coordinator sharing the
   * database keeps the job (`cancelIfCallerGone` cancels only if nobody wrote it since the close).
   */
  const callers = new Map<string, number>()
  /** Jobs whose caller's last stream closed, until its grace is over: a start claim waits for the verdict. */
  const leaving = new Map<string, Promise<void>>()
  const CALLER_GRACE_MS = Math.min(config.caller_grace_seconds, config.heartbeat_interval) * 1000
  const callerLeft = (id: string) => {
    const n = (callers.get(id) ?? 1) - 1
    if (n > 0) return void callers.set(id, n)
    callers.delete(id)
    const closedAt = now()
    const verdict = pause(CALLER_GRACE_MS).then(() => callerGoneUnlessBack(id, closedAt))
    leaving.set(id, verdict)
    void verdict.finally(() => {
      if (leaving.get(id) === verdict) leaving.delete(id)
    })
  }
  /**
   * The grace is over: cancel the job as `CALLER_GONE` unless its caller came back, here or through
   * another coordinator (seen in the database since `closedAt`). Never rejects.
   */
  const callerGoneUnlessBack = async (id: string, closedAt: number) => {
    if (callers.has(id)) return
    try {
      // Most streams end because the job ended: check without taking the write lock.
      const cur = await store.getJob(id)
      if (!cur || isTerminal(cur.status) || (cur.clientSeenAt ?? -Infinity) >= closedAt) return
      const done = await store.cancelIfCallerGone(
        id,
        closedAt,
        `${CALLER_GONE} (its connection closed and did not come back)`,
        now(),
      )
      if (!done) return
      log.warn("job canceled: its caller went away", { job: id, status: done.status })
    } catch (err) {
      log.error("could not cancel an abandoned job", { job: id }, err as Error)
    }
  }

  const load = async (c: Context<AuthEnv>): Promise<Job> => {
    const id = jobIdParam(c)
    const job = await store.getJob(id)
    if (!job || !canRead(c.get("principal"), job)) throw new NotFoundError(`no job ${id}`)
    return job
  }
  /** `load` for streams: a bounded summary, so opening many streams of a large job costs no more than of a small one. */
  const loadState = async (c: Context<AuthEnv>): Promise<JobListing> => {
    const id = jobIdParam(c)
    const job = await store.getJobSummary(id, STATE_ONLY)
    if (!job || !canRead(c.get("principal"), job)) throw new NotFoundError(`no job ${id}`)
    return job
  }

  /**
   * The job's output from position `after`, then its outcome; ends when the job is terminal. With
   * `?progress=1` the stream also carries `status` events (state, worker, progress) whenever they change
   * while the output is quiet, for a terminal status line; the proxy never asks for them.
   */
  const streamOutput = (c: Context<AuthEnv>, job: Job, after: number, first?: Uint8Array, taken?: () => void) => {
    const slot = taken ?? connections.stream(job.id, c.get("principal").name, c.req.raw.signal)
    return frameStream(c, async (write, signal) => {
      // Only the requester's own stream of an attached job shows that the caller is still there.
      const caller = job.attached && c.get("principal").name === job.requester
      let left = false
      const leave = () => {
        if (caller && !left) callerLeft(job.id)
        left = true
      }
      if (caller) {
        callers.set(job.id, (callers.get(job.id) ?? 0) + 1)
        signal.addEventListener("abort", leave, { once: true })
      }
      try {
        await relayOutput(job, after, first, write, signal, caller, c.req.query("progress") === "1")
      } finally {
        leave()
        slot()
      }
    })
  }

  const relayOutput = async (
    job: Job,
    after: number,
    first: Uint8Array | undefined,
    write: (b: Uint8Array | Frame) => Promise<void>,
    signal: AbortSignal,
    caller: boolean,
    watch: boolean,
  ) => {
    // Bun sends the headers with the first bytes: a ping tells the caller at once that the stream is open.
    await write(first ?? encodeFrame(Kind.ping, after))
    let shown = ""
    let seen = now()
    // A caller's stream says it is there as it opens: a re-open (here, or after a stream closed on
    // another coordinator whose grace is running) must be in the database before that grace ends. Only
    // the submission's own stream (`first`) skips it: the job was just stored seen.
    if (caller && first !== undefined && job.clientSeenAt !== null) seen = Math.min(seen, job.clientSeenAt)
    else if (caller) await store.touchClient(job.id, seen)
    let cursor = after
    // Listening before the first read: output stored while a page is read wakes the next wait.
    const stored = hub.subscribe(topic.output(job.id))
    const { ended } = await followOutput<StreamRow, Job>({
      after,
      read: (from, limit) => store.readOutput(job.id, from, limit ?? PAGE),
      page: PAGE,
      onRow: async (r) => {
        await write({
          kind: r.stream === "stdout" ? Kind.stdout : Kind.stderr,
          seq: r.pos,
          data: r.data,
          digest: r.digest,
        })
        cursor = r.pos
      },
      live: {
        state: async () => (await store.getJobSummary(job.id, STATE_ONLY)) ?? undefined,
        ended: (cur) => isTerminal(cur.status),
        idle: async (cur) => {
          if (!watch) return
          const key = `${cur.status}|${cur.workerId}|${cur.cancelRequestedAt}|${cur.progress?.at}`
          if (key === shown) return
          shown = key
          const canceling = cur.cancelRequestedAt !== null
          await write(
            encodeJsonFrame(Kind.event, cursor, {
              type: "status",
              status: canceling ? "canceling" : cur.status,
              workerId: cur.workerId,
              progress: cur.progress,
            }),
          )
        },
        wait: async () => {
          const before = now()
          const hint = await stored.wait(KEEPALIVE_MS, signal)
          // Woken by the timer rather than by new output: tell the client the stream is alive.
          if (!signal.aborted && now() - before >= KEEPALIVE_MS) await write(encodeFrame(Kind.ping, cursor))
          if (caller && !signal.aborted && now() - seen >= KEEPALIVE_MS) await store.touchClient(job.id, (seen = now()))
          if (!hint) return undefined
          // Status events show progress, which changes without a transition (its hint says output):
          // a watched stream reads the state on every wake-up.
          if (watch || !hint.job) return { output: !!hint.output }
          return { state: asSummary(hint.job), output: !!hint.output }
        },
      },
      signal,
    }).finally(() => stored.close())
    if (!ended) return
    const outcome: Outcome = {
      status: ended.status,
      code: ended.exitCode,
      signal: ended.exitSignal,
      error: ended.error,
    }
    await write(encodeJsonFrame(Kind.exit, cursor, outcome))
  }

  /**
   * A submission's lane, priority, needs and place in the queue (docs/scheduling.md): read once from its
   * command line and the `scheduling` config, and stored with the job. Needs a command names beyond the
   * schema's bounds (hundreds of encoders) are refused as the caller's mistake.
   */
  const placement = (requester: string, binary: string, args: string[], at: number) => {
    const lane = jobLane(binary, args)
    const { priority, labels } = classify(config.scheduling, { requester, binary, args })
    // A name no ffmpeg could list (`tee:x` as a filter) is left for the worker's ffmpeg to refuse.
    const named = jobNeeds(binary, args)
    for (const k of NEED_LISTS) named[k] = named[k].filter((n) => v.is(CapName, n))
    const parsed = v.safeParse(JobNeeds, { ...named, labels })
    if (!parsed.success)
      throw new InvalidError(
        "the command names codecs, filters or formats no worker could have",
        issueLines(parsed.issues),
      )
    const key = queueKey(lane, priority, at, config.scheduling.aging_seconds * 1000)
    return { lane, priority, needs: parsed.output, queueKey: key }
  }

  /**
   * Right after submission: a job that no online worker could ever run fails now, with what is missing
   * (the janitor's reason, which the caller prints as one `dffmpeg:` line); with no worker online at all
   * it waits for one (a restart) until its timeout. One that only waits for a busy capable worker is
   * told so (`wait`, shown on a terminal). `workers`: as the submission read them.
   */
  const judge = async (job: Job, workers: Worker[]): Promise<{ failed?: Job; wait?: string }> => {
    const live = { now: now(), staleMs: deps.staleMs }
    if (!workers.some((w) => serving(w, live))) return {}
    const why = unrunnable(job, workers, live)
    if (why) {
      const failed = await store.failJob(job.id, why, now(), job.epoch)
      if (failed) log.warn("job failed at submission: no worker can run it", { job: job.id, reason: why })
      return { failed }
    }
    const able = workers.filter((w) => eligible(job, w, live))
    const loads = await store.laneLoads()
    const free = able.some((w) => {
      const l = loads.get(w.id) ?? { probe: 0, transcode: 0 }
      const s = slots({ worker: w, load: l.transcode, probes: l.probe }, job.lane)
      return s.used < s.total
    })
    if (free) return {}
    const n = able.length
    return {
      wait: `waiting for a free slot: the ${n === 1 ? "worker" : `${n} workers`} that can run it ${n === 1 ? "is" : "are"} busy`,
    }
  }

  /**
   * The answer to a repeated submission (same requester and `submission` key): the job the first one
   * created, as its first answer was (an attached caller's stream from the start, which it never
   * received). A key reused for another command is refused: the key names one submission, not a slot.
   */
  const resubmitted = (c: Context<AuthEnv>, job: Job, req: SubmitRequest, attach: boolean) => {
    if (
      job.binary !== req.binary ||
      JSON.stringify(job.args) !== JSON.stringify(req.args) ||
      job.attached !== (attach || req.attached)
    )
      throw new ConflictError(`submission ${req.submission} was already used for job ${job.id}, another command`, {
        job: job.id,
      })
    log.info("repeated submission answered with its job", { job: job.id, requester: job.requester })
    const answer = { ...job, files: [] }
    if (attach) return streamOutput(c, job, 0, encodeJsonFrame(Kind.event, 0, { type: "job", job: answer }))
    return c.json(answer, 200)
  }

  app.post("/", async (c) => {
    const p = c.get("principal")
    requireRole(p, "client", "admin")
    const req = jsonBody(c, SubmitRequest)
    if (!config.allowed_binaries.includes(req.binary))
      throw new InvalidError(
        `binary ${req.binary} is not allowed (allowed_binaries: ${config.allowed_binaries.join(", ")})`,
      )
    // Sizes first: everything after reads every argument.
    checkArguments(req, config.limits)
    checkSubmittedArgs(req.binary, req.args)
    const reports = req.env.FFREPORT === undefined ? [] : reportFiles(req.env.FFREPORT)
    for (const a of [...req.args, ...(req.cwd ? [req.cwd] : []), ...reports]) {
      const name = varOf(a)
      if (name !== undefined && !req.paths.includes(name))
        throw new InvalidError(`argument ${a.slice(0, 80)} uses $${name}, which is not listed in paths`)
    }
    checkJobFiles(toolOf(req.binary), req.args, req.paths, req.files)
    if (req.cwd !== null && varOf(req.cwd) === undefined)
      throw new InvalidError("cwd must be a path variable ($Var/...) or null")
    const attach = c.req.query("attach") === "1"
    if (attach && req.retries > 0)
      throw new InvalidError(
        "retries are for detached jobs: a job re-run under an attached caller would repeat its output",
      )
    // A submission repeated after a lost answer (here or on another coordinator): its job, not a second.
    const prior = req.submission === undefined ? undefined : await store.jobBySubmission(p.name, req.submission)
    if (prior) return resubmitted(c, prior, req, attach)
    await checkQueueQuota(store, p.name, config.limits)
    const placing = placement(p.name, req.binary, req.args, now())
    // Read once for the submission: its needs, its info plan and its verdict all judge by these workers.
    const workers = await store.listWorkers()
    placing.needs = knownNeeds(req.binary, placing.needs, workers)
    const paths = [...new Set(req.paths)].sort()
    // An info command is answered by the reference worker, from the cache when it was asked before.
    const plan = await info.plan(
      {
        binary: req.binary,
        args: req.args,
        paths,
        env: req.env,
        pathTokens: req.pathTokens,
        needs: placing.needs,
      },
      workers,
    )
    // An attached caller's stream is counted before the job exists: a refusal then creates nothing (and
    // comes after the info plan, which only reads, so a failed read cannot keep a stream slot).
    const slot = attach ? connections.stream(undefined, p.name, c.req.raw.signal) : undefined
    const fresh = {
      id: newId(),
      requester: p.name,
      binary: req.binary,
      args: req.args,
      paths,
      cwd: req.cwd,
      env: req.env,
      files: req.files,
      stdin: req.stdin,
      attached: attach || req.attached,
      pathTokens: req.pathTokens,
      retries: req.retries,
      ...placing,
      ...(plan ? { lane: "probe" as const, pin: plan.pin } : {}),
      ...(req.submission !== undefined ? { submission: req.submission } : {}),
    }
    // Followed before it exists: its worker's first upload cannot come before.
    if (plan?.kind === "ask") info.asking(fresh, plan)
    if (plan?.kind === "wait") info.waiting(fresh, plan)
    if (plan) deps.metrics.info(req.binary, plan.kind)
    let job = await (plan?.kind === "answer"
      ? store.createAnswered(fresh, plan.answer, plan.reason, now())
      : store.createJob(fresh, now())
    ).catch(async (err) => {
      slot?.()
      info.abandoned(fresh.id)
      // The same submission committed meanwhile through another coordinator (the unique key refused ours).
      const raced = req.submission === undefined ? undefined : await store.jobBySubmission(p.name, req.submission)
      if (raced) return raced
      throw err
    })
    if (job.id !== fresh.id) return resubmitted(c, job, req, attach)
    log.info(plan?.kind === "answer" ? "job answered from the info cache" : "job submitted", {
      job: job.id,
      requester: p.name,
      binary: job.binary,
      lane: job.lane,
      priority: job.priority,
      pin: plan?.pin,
    })
    // An answered job has ended; any other is judged now: one no online worker could run fails at once.
    const verdict: { failed?: Job; wait?: string } = plan?.kind === "answer" ? {} : await judge(job, workers)
    if (verdict.failed) job = verdict.failed
    else if (job.lane === "probe" && plan?.kind !== "answer") deps.janitor.watchProbe(job.id)
    // The caller has just sent the files (up to 4 MiB): the answer does not echo them (GET /jobs/:id shows them).
    const answer = { ...job, files: [] }
    if (attach)
      return streamOutput(
        c,
        job,
        0,
        encodeJsonFrame(Kind.event, 0, { type: "job", job: answer, ...(verdict.wait ? { wait: verdict.wait } : {}) }),
        slot,
      )
    return c.json(answer, 201)
  })

  app.get("/", async (c) => {
    const p = c.get("principal")
    const status = c.req.query("status")
    if (status !== undefined && !v.is(JobStatus, status))
      throw new InvalidError(`status must be one of ${JobStatus.options.join(", ")}`)
    // Larger pages are cut to max_page_size; the header says where the next one starts.
    const limit = Math.min(intQuery(c, "limit", 100), config.limits.max_page_size)
    const rows = await store.listJobSummaries({
      requester: p.role === "admin" ? c.req.query("requester") || undefined : p.name,
      worker: p.role === "admin" ? c.req.query("worker") || undefined : undefined,
      status: status as JobStatus | undefined,
      since: sinceQuery(c),
      before: beforeQuery(c),
      limit: limit + 1,
    })
    const jobs = rows.slice(0, limit)
    if (rows.length > limit && jobs.length) c.header(NEXT_PAGE_HEADER, jobs[jobs.length - 1].id)
    return c.json(jobs)
  })

  app.get("/:id", async (c) => c.json(await load(c)))

  app.get("/:id/events", async (c) => {
    const job = await load(c)
    return c.json(await store.events(job.id))
  })

  /** Stops a job: at once if it has not started, otherwise its worker stops the process and it ends canceled. */
  app.post("/:id/cancel", async (c) => {
    const id = jobIdParam(c)
    const p = c.get("principal")
    const done = await cancelJob(store, id, { name: p.name }, now(), {
      authorize: (job) => {
        if (!canRead(p, job)) throw new NotFoundError(`no job ${id}`)
        if (job.requester !== p.name && p.role !== "admin")
          throw new AuthError("only the requester or an admin may cancel a job", 403)
      },
      log,
    })
    return c.json(done, done.status === "canceled" ? 200 : 202)
  })

  app.get("/:id/stream", async (c) => {
    const job = await loadState(c)
    return streamOutput(c, job, intQuery(c, "after", 0))
  })

  /**
   * The attached caller took the job's output up to `pos`: what it no longer needs for resuming is
   * deleted, and a worker waiting for room in the window goes on. Only the requester acknowledges: an
   * admin following the log must not delete what the caller has yet to read.
   */
  app.post("/:id/ack", async (c) => {
    const p = c.get("principal")
    const job = await loadState(c)
    if (job.requester !== p.name) throw new AuthError("only the requester may acknowledge a job's output", 403)
    const acked = await store.ackOutput(job.id, intQuery(c, "pos"), bounds.stderrTailBytes)
    return c.json({ ok: true, acked: acked ?? 0 })
  })

  /**
   * The chunks of a stdin upload not stored yet, which must follow what is stored with no gap: the
   * worker reads a job's input in sequence order after a cursor, so a chunk arriving after a higher one
   * would never be read. A chunk at or below the last stored sequence is a resend and is dropped; a
   * gap is 409 with the expected sequence (the client sends in order, one request at a time, so it
   * never makes one).
   */
  const freshInput = async (job: Job, chunks: InputChunk[]) => {
    const stored = await store.inputBytes(job.id)
    const fresh: InputChunk[] = []
    let expected = stored.lastSeq + 1
    for (const ch of [...chunks].sort((a, b) => a.seq - b.seq)) {
      if (ch.seq < expected) continue
      if (ch.seq > expected)
        throw new ConflictError(`stdin gap: expected sequence ${expected}, got ${ch.seq}`, { expected })
      fresh.push(ch)
      expected++
    }
    return { stored, fresh }
  }

  /**
   * 413 once a job's stdin would pass `limits.max_stdin_bytes` (counted from what is stored, without
   * reading it, plus the new chunks: resent ones are not counted twice). The job is canceled: a process
   * that got only part of its input would produce a wrong result rather than fail.
   */
  const checkStdinQuota = async (job: Job, storedBytes: number, fresh: InputChunk[]) => {
    const max = config.limits.max_stdin_bytes
    let bytes = storedBytes
    for (const ch of fresh) if (ch.kind === Kind.stdin) bytes += ch.data.length
    if (bytes <= max) return
    const done = await store.requestCancel(
      job.id,
      `its standard input passed ${max} bytes (limits.max_stdin_bytes)`,
      now(),
    )
    if (done) log.warn("job canceled: stdin over the limit", { job: job.id, limit: max })
    throw new TooLargeError(
      `the standard input of job ${job.id} is over ${max} bytes (limits.max_stdin_bytes); the job is canceled`,
    )
  }

  /**
   * A signal to a caller whose job has not started ends the job at once with the exit code a local
   * ffmpeg would have given it, rather than waiting for a worker to deliver it. Once the job runs the
   * store refuses this and the worker delivers the stored signal as usual.
   */
  const signaledBeforeStart = async (job: Job, fresh: InputChunk[]) => {
    const frame = fresh.find((ch) => ch.kind === Kind.signal)
    if (!frame || (job.status !== "queued" && job.status !== "assigned")) return
    const sig = new TextDecoder().decode(frame.data)
    const reason = `the caller received ${sig} before the job started`
    const done = await store.withdrawJob(job.id, reason, signaledExit(job.binary, sig), now())
    if (done) log.info("job canceled: its caller was signaled before it started", { job: job.id, signal: sig })
  }

  /**
   * Its caller runs the job on its own machine instead (a local fallback, docs/fallback.md): withdrawn
   * while it has not started, so it never runs twice; 409 once it runs or ended (the caller then follows it).
   */
  app.post("/:id/withdraw", async (c) => {
    const job = await load(c)
    const p = c.get("principal")
    if (job.requester !== p.name) throw new AuthError("only the requester may withdraw a job", 403)
    const done = await store.withdrawJob(job.id, WITHDRAWN_FOR_FALLBACK, null, now())
    if (!done) {
      const status = (await store.getJob(job.id))?.status ?? "deleted"
      throw new ConflictError(`job ${job.id} is ${status}: only a job that has not started can be withdrawn`, {
        status,
      })
    }
    log.info("job withdrawn: its caller runs it locally", { job: job.id, by: p.name })
    return c.json(done)
  })

  app.post("/:id/stdin", async (c) => {
    const job = await load(c)
    const p = c.get("principal")
    if (job.requester !== p.name && p.role !== "admin")
      throw new AuthError("only the requester may write a job's stdin", 403)
    const chunks: InputChunk[] = []
    for (const f of framesOf(c)) {
      if (f.kind === Kind.signal && !RELAYED_SIGNALS.has(new TextDecoder().decode(f.data)))
        throw new InvalidError(`signal must be one of ${[...RELAYED_SIGNALS].join(", ")}`)
      if (f.kind !== Kind.stdin && f.kind !== Kind.stdinEnd && f.kind !== Kind.signal)
        throw new InvalidError(`unexpected frame kind ${f.kind} in a stdin upload`)
      if (f.seq < 1) throw new InvalidError("stdin sequence numbers start at 1")
      chunks.push({ seq: f.seq, kind: f.kind, data: f.data })
    }
    if (isTerminal(job.status)) return c.json({ ok: true, ignored: true })
    const { stored, fresh } = await freshInput(job, chunks)
    await checkStdinQuota(job, stored.bytes, fresh)
    await store.appendInput(job.id, fresh)
    await signaledBeforeStart(job, fresh)
    return c.json({ ok: true })
  })

  // ---- worker side: the HTTP binding of the worker protocol (coordinator/worker-protocol.ts) ----

  /** A worker gives back an assignment it will not run (draining, cannot run it): re-queued elsewhere. */
  app.post("/:id/reject", async (c) => {
    const worker = workerName(c)
    await protocol.reject(worker, jobIdParam(c), intQuery(c, "epoch"))
    return c.json({ ok: true })
  })

  app.post("/:id/start", async (c) => {
    const worker = workerName(c)
    const id = jobIdParam(c)
    // A job whose caller just vanished must never start: wait for the grace's verdict (a cancel the
    // machine then refuses the start for) rather than start it and kill it moments later.
    await leaving.get(id)
    // Workers without argument profiles (and those from before them) send no body.
    const note = c.get("body")?.length ? jsonBody(c, StartRequest).note : undefined
    await protocol.start(worker, id, intQuery(c, "epoch"), note)
    return c.json({ ok: true })
  })

  app.post("/:id/output", async (c) => {
    const worker = workerName(c)
    const id = jobIdParam(c)
    const epoch = intQuery(c, "epoch")
    // `retain=1`: the worker keeps what it sends until the answer's `durable` covers it (docs/protocol.md, "Held output").
    const retain = c.req.query("retain") === "1"
    const frames = framesOf(c)
    // A body signed by its frames' digests brings them: a held payload keeps its own, to seal the stream with.
    const digests = c.get("digests")
    if (digests) frames.forEach((f, i) => (f.digest = digests[i]))
    const { finished, durable, resend } = await protocol.upload(worker, id, epoch, frames, { retain })
    // `digests`: this coordinator takes bodies signed by their frames' digests (docs/protocol.md, "Frame digests").
    return c.json({
      ok: true,
      finished,
      ...(durable !== undefined ? { durable } : {}),
      ...(resend ? { resend } : {}),
      ...(retain ? { digests: true } : {}),
    })
  })

  app.get("/:id/input", async (c) => {
    const worker = workerName(c)
    const downlink = await protocol.input(worker, jobIdParam(c), intQuery(c, "epoch"))
    const after = intQuery(c, "after", 0)
    // Counted per identity only: a job's callers filling its output streams must not cut off its worker.
    const slot = connections.stream(undefined, worker, c.req.raw.signal)
    return frameStream(c, async (write, signal) => {
      try {
        for await (const f of downlink(after, signal)) await write(encodeFrame(f.kind, f.seq, f.data))
      } finally {
        slot()
      }
    })
  })

  /**
   * One page of a job's output after position `after`, without following it (`admin jobs logs` without
   * -f): stdout and stderr frames in order, at most `limit` chunks and about 4 MiB. An empty body means
   * nothing more has been written yet; readers page on from the last position they got.
   */
  app.get("/:id/output", async (c) => {
    const job = await load(c)
    const after = intQuery(c, "after", 0)
    const limit = intQuery(c, "limit", PAGE)
    if (limit < 1 || limit > 1000) throw new InvalidError("query parameter limit must be from 1 to 1000")
    const frames: Uint8Array[] = []
    let bytes = 0
    for (const r of await store.readOutput(job.id, after, limit)) {
      // Stop at a size a client holds comfortably in memory; at least one chunk, so paging always advances.
      if (frames.length && bytes + r.data.length > OUTPUT_PAGE_BYTES) break
      frames.push(encodeFrame(r.stream === "stdout" ? Kind.stdout : Kind.stderr, r.pos, r.data))
      bytes += r.data.length
    }
    // concatFrames allocates a fresh ArrayBuffer; its declared type is only the wider ArrayBufferLike.
    return c.body(concatFrames(frames) as Uint8Array<ArrayBuffer>, 200, { "Content-Type": FRAMES_MEDIA_TYPE })
  })

  return app
}

const OUTPUT_PAGE_BYTES = 4 * 1024 * 1024

function framesOf(c: Context<AuthEnv>) {
  try {
    return decodeFrames(c.get("body"))
  } catch (err) {
    if (err instanceof FrameError) throw new InvalidError(`malformed frames: ${err.message}`)
    throw err
  }
}
