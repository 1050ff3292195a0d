import * as v from "valibot"
import type { CoordinatorConfig } from "../shared/config/server-schema.ts"
import { IdentityInUseError, InvalidError, UnavailableError } from "../shared/errors.ts"
import type { HostLoad } from "../shared/protocol/host-load.ts"
import { timings } from "./janitor.ts"
import { newToken } from "../shared/ids.ts"
import type { Logger } from "../shared/log.ts"
import { EMPTY, Kind, frameJson, type Frame } from "../shared/protocol/frames.ts"
import {
  ExitReport,
  ProgressReport,
  isTerminal,
  issueLines,
  type Job,
  type Worker,
} from "../shared/protocol/schemas.ts"
import { type Assignment } from "../shared/protocol/worker.ts"
import { VERSION } from "../shared/version.ts"
import type { JobListing, OutputBounds, OutputChunk, Store } from "../store/types.ts"
import { JobGoneError, StaleJobError, UnknownWorkerError, type WorkerProtocol } from "../transports/types.ts"
import { topic, type Hint, type Notifier } from "./hub.ts"
import { asSummary } from "../store/summary.ts"
import { callerGone } from "./jobs.ts"
import type { InfoCache } from "./info.ts"
import type { TransportName } from "../shared/protocol/transports.ts"

export interface WorkerProtocolDeps {
  store: Store
  /** Where polls and downlinks wait; who is woken follows from the store's changes (wakeups.ts). */
  hub: Notifier
  log: Logger
  now: () => number
  config: CoordinatorConfig
  /** Follows uploads of info jobs for their answer (coordinator/info.ts). */
  info?: InfoCache
  /** Whether a transport can carry a peer's traffic now (enabled, and its broker connected); HTTP when absent. */
  serves?: (t: TransportName) => boolean
}

/**
 * The transport a peer gets: the first of its list (in its order of preference) that `serves` accepts,
 * or InvalidError naming both sides' lists.
 */
export function pickTransport(
  offered: readonly TransportName[] | undefined,
  serves: (t: TransportName) => boolean,
  served: readonly TransportName[],
): TransportName {
  const list = offered ?? ["http_polling"]
  const pick = list.find(serves)
  if (pick) return pick
  throw new InvalidError(
    `no common transport: the peer offers ${list.join(", ")}; this coordinator serves ${served.filter(serves).join(", ") || "none right now"}`,
  )
}

/** Reads of a job's state that need none of its arguments: the summary is the smallest read. */
const STATE_ONLY = { argsChars: 2 }
/** Rows read per page of a job's input. */
const PAGE = 256
/** How long a closed poll waits for the worker's next one before the close is written (see `polls`). */
const POLL_CLOSE_MS = 250
/** A reopened poll writes the worker's row again only if it was last touched this long ago. */
const POLL_TOUCH_MS = 1000

interface PollEntry {
  /** Polls of the worker open now. */
  open: number
  /** When this process last wrote the worker's row for a poll. */
  touchedAt: number
  /** The close waiting to be written. */
  closing?: ReturnType<typeof setTimeout>
}

const toAssignment = (j: Job): Assignment => ({
  id: j.id,
  epoch: j.epoch,
  binary: j.binary,
  args: j.args,
  paths: j.paths,
  cwd: j.cwd,
  env: j.env,
  files: j.files,
  stdin: j.stdin,
  lane: j.lane,
  pathTokens: j.pathTokens,
})

function frameData(f: Frame): unknown {
  try {
    return frameJson(f)
  } catch {
    throw new InvalidError("frame payload is not valid JSON")
  }
}

/**
 * The coordinator half of the worker protocol (src/transports/types.ts): registration in two stages,
 * long poll, heartbeats, claiming and giving back jobs, output uploads and the job downlink, on the store.
 * Transport bindings call it; it knows no HTTP. It wakes nobody itself: the store reports each change and
 * coordinator/wakeups.ts derives the wake-ups and scheduler passes from it.
 */
export function createWorkerProtocol(deps: WorkerProtocolDeps): WorkerProtocol {
  const { store, hub, log, now, config } = deps
  const served: readonly TransportName[] = config.transports.enabled_transports.length
    ? config.transports.enabled_transports
    : ["http_polling"]
  const serves = (t: TransportName) => served.includes(t) && (deps.serves?.(t) ?? t === "http_polling")
  // Downlinks say they are alive this often (as a job's output streams do).
  const KEEPALIVE_MS = Math.min(15_000, config.heartbeat_interval * 1000)

  const bounds = outputBounds(config)
  /**
   * When another process with a worker's identity counts as gone (store InstanceLiveness): silent for two
   * heartbeats with no poll open (a live worker heartbeats every interval, and stops its jobs itself
   * after two without an answer), or for the janitor's offline threshold.
   */
  const liveness = { quietMs: 2 * config.heartbeat_interval * 1000, staleMs: timings(config).workerStale }

  const timing = () => ({
    pollWaitSeconds: config.poll_wait_seconds,
    heartbeatSeconds: config.heartbeat_interval,
    registrationSeconds: config.registration_interval,
  })

  /**
   * The polls open per worker in this process, and the close not yet recorded. A worker polls again
   * right after each answer, so recording every close and every reopening would cost two writes per
   * assignment: a close is written only once the worker has had no poll open for POLL_CLOSE_MS (under
   * poll_gone_seconds, so nothing that judges a closed poll waits longer for it than it did).
   */
  const polls = new Map<string, PollEntry>()
  const closeGraceMs = Math.min(POLL_CLOSE_MS, (config.scheduling.poll_gone_seconds * 1000) / 4)
  const pollOpened = (name: string): PollEntry & { reopened: boolean } => {
    let e = polls.get(name)
    const reopened = !!e?.closing
    if (e?.closing) clearTimeout(e.closing)
    if (!e) polls.set(name, (e = { open: 0, touchedAt: 0 }))
    e.closing = undefined
    e.open++
    return Object.assign(e, { reopened })
  }
  const pollClosed = (name: string, e: PollEntry) => {
    if (--e.open > 0) return
    // Answered or dropped (the worker was killed, its link cut): from then, a worker that does not poll
    // again within poll_gone_seconds gets no new work.
    const closedAt = now()
    e.closing = setTimeout(() => {
      if (polls.get(name) === e && e.open === 0) polls.delete(name)
      store
        .touchWorker(name, closedAt, "closed")
        .catch((err) => log.debug("could not record a closed poll", { worker: name, reason: (err as Error).message }))
    }, closeGraceMs)
    // A coordinator stopping does not wait to record it: the worker's next poll finds another process.
    e.closing.unref?.()
  }

  /** The job if it is `worker`'s at `epoch`; JobGoneError or StaleJobError otherwise. */
  const ownJob = async (worker: string, id: string, epoch: number): Promise<JobListing> => {
    const job = await store.getJobSummary(id, STATE_ONLY)
    if (!job) throw new JobGoneError(`no job ${id}`)
    if (job.workerId !== worker || job.epoch !== epoch)
      throw new StaleJobError(`job ${id} is no longer assigned to ${worker} at epoch ${epoch}`, {
        status: job.status,
        epoch: job.epoch,
      })
    return job
  }

  return {
    async register(name, reg) {
      const binaries = reg.binaries.filter((b) => config.allowed_binaries.includes(b))
      const transport = pickTransport(reg.transports, serves, served)
      const before = await store.getWorker(name)
      const worker = await store.upsertWorker(name, { ...reg, binaries }, newToken(), now(), transport, liveness)
      if (before && before.transport !== worker.transport)
        log.info("worker changed transport", {
          worker: name,
          from: before.transport ?? "http_polling",
          to: transport,
        })
      if (
        before?.status !== worker.status ||
        before.paths.join() !== worker.paths.join() ||
        before.binaries.join() !== worker.binaries.join()
      ) {
        log.info("worker registered", {
          worker: name,
          status: worker.status,
          version: reg.version,
          binaries: binaries.join(","),
          paths: reg.paths.join(","),
          max_jobs: reg.maxJobs,
        })
      }
      // What its binaries can do, when it changed (a new build, a capability removed, a device gone).
      const tools = capabilityLine(worker.tools)
      if (capabilityLine(before?.tools ?? {}) !== tools)
        log.info("worker capabilities", { worker: name, tools: tools || "none registered" })
      return { worker, coordinatorVersion: VERSION, ...timing(), transport, hostLoad: true }
    },

    async verify(name, token) {
      if (!(await store.verifyWorker(name, token, now())))
        throw new UnknownWorkerError("registration token does not match; register again")
      log.info("worker online", { worker: name })
    },

    async deregister(name, instance) {
      if (await store.setWorkerStatus(name, "offline", now(), instance))
        log.info("worker deregistered", { worker: name })
      else if (instance)
        log.info("a worker process that does not serve the identity stopped", { worker: name, instance })
    },

    async heartbeat(name, held, instance, hostLoad) {
      const w = await store.getWorker(name)
      if (!w) throw new UnknownWorkerError(`worker ${name} is not registered; register first`)
      servedBy(w, instance)
      const stale = await store.heartbeat(name, held, now(), hostLoad && rounded(hostLoad))
      return { stale, reregister: w.status === "offline" }
    },

    // Answers at once with every job assigned and not yet started (so an assignment whose answer was
    // lost is offered again), with every running job whose downlink has something the worker does not
    // follow yet (a signal, a cancel), or with the registration token to echo.
    async poll(name, waitSeconds, signal, hold, following, holding, via = "http_polling", instance) {
      // Sub-second waits are valid (poll_wait_seconds may be 0.05): the worker echoes what it was told.
      const waitMs = Math.min(waitSeconds, config.poll_wait_seconds) * 1000
      const w = await store.getWorker(name)
      if (!w || w.status === "offline") throw new UnknownWorkerError(`worker ${name} is not registered; register first`)
      servedBy(w, instance)
      // Liveness is proven over the negotiated channel: a poll that comes another way (its broker link
      // broke, it fell back to HTTP) registers again, and the coordinator picks what works now.
      const negotiated = w.transport ?? "http_polling"
      if (negotiated !== via)
        throw new UnknownWorkerError(
          `worker ${name} registered for ${negotiated} but polled over ${via}; register again`,
        )
      const slots = w.maxJobs + w.maxProbeJobs
      if (following && following.length > slots)
        throw new InvalidError(`a poll follows at most ${slots} downlinks (this worker's job slots)`)
      if (holding && holding.length > slots)
        throw new InvalidError(`a poll holds at most ${slots} assignments (this worker's job slots)`)
      if (w.status === "registering") return { jobs: [], downlink: [], verify: await store.workerToken(name) }
      const release = hold?.()
      // Listening before the first read: an assignment or a signal committed while it reads wakes the next wait.
      const told = hub.subscribe(topic.worker(name))
      const entry = pollOpened(name)
      try {
        const until = now() + waitMs
        // Being heard from makes the worker eligible again: the scheduler hears of it (wakeups.ts). An
        // open poll also clears the time its last one closed (Liveness.pollGoneMs). A poll that reopens
        // before its last close was recorded, and whose row was touched within POLL_TOUCH_MS, leaves the
        // row as it is: it still says open, and seen just now.
        if (!entry.reopened || now() - entry.touchedAt >= POLL_TOUCH_MS) {
          entry.touchedAt = now()
          await store.touchWorker(name, entry.touchedAt, "open")
        }
        for (;;) {
          const { assigned, downlink, quiet } = await store.pollFor(name, following, holding)
          if (assigned.length || downlink.length || signal.aborted || now() >= until)
            return { jobs: assigned.map(toAssignment), downlink }
          // While a running job's downlink is left closed, its poll re-reads as often as that downlink
          // would have: a cancel or a signal written by another process (admin --local on the same
          // database) wakes nobody here.
          // Held assignments are about to run (their start wakes nobody: the worker reported it).
          const soon = quiet || (holding?.length ?? 0) > 0
          await told.wait(soon ? Math.min(KEEPALIVE_MS, until - now()) : until - now(), signal)
        }
      } finally {
        told.close()
        release?.()
        pollClosed(name, entry)
      }
    },

    async reject(worker, id, epoch) {
      const job = await ownJob(worker, id, epoch)
      const done = await store.unassign(job.id, epoch, `worker ${worker} refused the job`, now())
      if (!done)
        throw new StaleJobError(`job ${job.id} cannot be given back: it is ${job.status}`, {
          status: job.status,
          epoch: job.epoch,
        })
      log.info("job refused by its worker; re-queued", { job: job.id, worker })
    },

    async start(worker, id, epoch, note) {
      // The claim is guarded on this worker and epoch: the job is read only to say why it was refused.
      const started = await store.start(id, worker, epoch, now(), note)
      if (!started) {
        const job = await ownJob(worker, id, epoch)
        // This worker's claim at this epoch again: its answer was lost on the way, the claim stands.
        // (Polls offer only assigned jobs, so nothing else of this worker claims a running one.)
        if (job.status === "running") return
        throw new StaleJobError(`job ${job.id} cannot start: it is ${job.status}`, {
          status: job.status,
          epoch: job.epoch,
        })
      }
      log.info("job running", { job: id, worker, epoch, note })
    },

    async upload(worker, id, epoch, frames, opts) {
      const chunks: OutputChunk[] = []
      let exit: ExitReport | undefined
      let progress: ProgressReport | undefined
      for (const f of frames) {
        if (f.kind === Kind.progress) {
          // Only the latest report of a batch matters; it is stored with the output in one transaction.
          const parsed = v.safeParse(ProgressReport, frameData(f))
          if (!parsed.success) throw new InvalidError("invalid progress frame", issueLines(parsed.issues))
          progress = parsed.output
        } else if (f.kind === Kind.stdout || f.kind === Kind.stderr) {
          if (exit) throw new InvalidError("output after the exit frame")
          if (f.seq < 1) throw new InvalidError("output sequence numbers start at 1")
          chunks.push({
            seq: f.seq,
            stream: f.kind === Kind.stdout ? "stdout" : "stderr",
            data: f.data,
            digest: f.digest,
          })
        } else if (f.kind === Kind.exit) {
          const parsed = v.safeParse(ExitReport, frameData(f))
          if (!parsed.success) throw new InvalidError("invalid exit frame", issueLines(parsed.issues))
          exit = parsed.output
        } else throw new InvalidError(`unexpected frame kind ${f.kind} in an output upload`)
      }
      // A full window waits for the caller's acknowledgement (listening before the first try, so one
      // committed meanwhile is not slept through), at most window_wait_seconds; then the worker retries.
      const room = hub.subscribe(topic.acked(id))
      let res: Awaited<ReturnType<Store["appendOutput"]>>
      try {
        // Elapsed real time, not the store's clock: this bounds a wait, it is never stored or compared.
        const until = performance.now() + config.relay.window_wait_seconds * 1000
        for (;;) {
          res = await store.appendOutput(id, worker, epoch, chunks, exit, now(), progress, bounds, opts)
          if (res.ok || res.reason !== "window-full" || performance.now() >= until) break
          await room.wait(until - performance.now())
        }
      } finally {
        room.close()
      }
      if (!res.ok) {
        // Held output this process lost (it restarted): the worker sends it again from there.
        if (res.reason === "resend") {
          log.info("held output lost in a restart; the worker sends it again", { job: id, worker, from: res.expected })
          return { finished: false, resend: res.expected }
        }
        if (res.reason === "window-full") {
          log.debug("output window full; the worker retries", { job: id, worker, window_mb: config.relay.window_mb })
          throw new UnavailableError(
            `the output window of job ${id} is full (relay.window_mb = ${config.relay.window_mb}): its caller has not acknowledged it yet; retry`,
          )
        }
        if (res.reason === "not-found") throw new JobGoneError(`no job ${id}`)
        if (res.reason === "gap")
          throw new StaleJobError(`output gap: expected sequence ${res.expected}`, { expected: res.expected })
        throw new StaleJobError(`job ${id} is no longer running on ${worker} at epoch ${epoch}`, {
          status: res.job?.status,
          epoch: res.job?.epoch,
        })
      }
      deps.info?.uploaded(id, epoch, chunks, res.finished ? exit : undefined, res.job)
      if (res.finished && exit) {
        log.info("job finished", {
          job: id,
          worker,
          status: res.job.status,
          code: exit.code ?? undefined,
          signal: exit.signal ?? undefined,
          error: exit.error,
        })
      }
      return { finished: res.finished, ...(opts?.retain ? { durable: res.durable } : {}) }
    },

    async input(worker, id, epoch) {
      const job = await ownJob(worker, id, epoch)
      return async function* (after, signal) {
        let cursor = after
        let cancelSent = false
        // Listening before the first read: input stored while it reads wakes the next wait.
        const stored = hub.subscribe(topic.input(job.id))
        // What the last wake-up was told (coordinator/hub.ts): nothing on the first pass, read everything.
        let told: Hint | undefined
        try {
          while (!signal.aborted) {
            // Told only of a transition: no input was stored since the last read.
            if (!told?.job || told.input) {
              const rows = await store.readInput(job.id, cursor, PAGE)
              for (const r of rows) {
                yield { kind: r.kind, seq: r.seq, data: r.data }
                cursor = r.seq
              }
              // A short page is all that was stored.
              if (rows.length === PAGE) continue
            }
            // A job told (committed before the read above) is read as its summary reads it.
            const cur = told?.job ? asSummary(told.job) : await store.getJobSummary(job.id, STATE_ONLY)
            if (!cur || cur.epoch !== job.epoch || isTerminal(cur.status)) return
            if (cur.cancelRequestedAt !== null && !cancelSent) {
              cancelSent = true
              // A vanished caller's job is killed, not finalised: nobody is left to read what it would write.
              const cancel = { reason: cur.error, kill: callerGone(cur.error) }
              yield { kind: Kind.cancel, seq: cursor, data: enc.encode(JSON.stringify(cancel)) }
            }
            const before = now()
            told = await stored.wait(KEEPALIVE_MS, signal)
            if (!signal.aborted && now() - before >= KEEPALIVE_MS) yield { kind: Kind.ping, seq: cursor, data: EMPTY }
          }
        } finally {
          stored.close()
        }
      }
    },
  }
}

const enc = new TextEncoder()

/**
 * IdentityInUseError for a call from another process than the one serving the identity (a process that
 * lost it to a restart while it was cut off, or one that sends a made-up instance).
 */
function servedBy(w: Worker, instance: string | undefined): void {
  if (!instance || !w.instance || w.instance.id === instance) return
  throw new IdentityInUseError(
    `worker identity ${w.id} is served by another worker process now: host ${w.instance.host} (pid ${w.instance.pid}, instance ${w.instance.id})`,
    { identity: w.id, instance: w.instance.id, host: w.instance.host, pid: w.instance.pid },
  )
}

/** A load as stored: percentages to 0.1, the load average to 0.01 (what an operator reads; bounded JSON). */
function rounded(l: HostLoad): HostLoad {
  const r = (n: number, d: number) => Math.round(n * d) / d
  return {
    ...l,
    cpuPercent: r(l.cpuPercent, 10),
    load1: r(l.load1, 100),
    gpus: l.gpus.map((g) => ({ ...g, utilPercent: g.utilPercent === null ? null : r(g.utilPercent, 10) })),
  }
}

/** `ffmpeg 5.1.9 (encoders 217, hwaccels vulkan); ffprobe 5.1.9 (...)`: a worker's tools for the log. */
function capabilityLine(tools: Worker["tools"]): string {
  return Object.entries(tools)
    .map(([b, t]) => `${b} ${t.version} (encoders ${t.encoders.length}, hwaccels ${t.hwaccels.join(",") || "none"})`)
    .join("; ")
}

/** The store's output bounds from the coordinator's `relay:` settings. */
export function outputBounds(config: CoordinatorConfig): OutputBounds {
  const MiB = 1024 * 1024
  return {
    windowBytes: config.relay.window_mb * MiB,
    stderrTailBytes: config.relay.stderr_tail_kb * 1024,
    detachedBytes: config.relay.detached_output_mb * MiB,
  }
}
