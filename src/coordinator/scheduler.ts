import type { Job, Worker } from "../shared/protocol/schemas.ts"
import type { Logger } from "../shared/log.ts"
import type { Store } from "../store/index.ts"
import type { LaneLoad, QueueCursor } from "../store/types.ts"
import { deviceOf, NO_NEEDS, type JobNeeds, type Lane, type ToolCapabilities } from "../shared/protocol/capabilities.ts"
import { NO_CAPABLE_WORKER } from "../shared/protocol/fallback.ts"

/** Lanes in dispatch order: probes first. */
const LANES: Lane[] = ["probe", "transcode"]

const free = (c: Candidate, lane: Lane) => {
  const s = slots(c, lane)
  return s.used < s.total
}

/** Slots of `lane` free across the candidates. */
const freeSlots = (candidates: Candidate[], lane: Lane) =>
  candidates.reduce((n, c) => {
    const s = slots(c, lane)
    return n + Math.max(0, s.total - s.used)
  }, 0)

export interface Candidate {
  worker: Worker
  /** Transcodes assigned to or running on it (its `maxJobs` slots). */
  load: number
  /** Probes assigned to or running on it (its `maxProbeJobs` slots); 0 when absent. */
  probes?: number
}

/** When a worker is judged: `now`, and how recently it must have been heard from to be given work. */
export interface Liveness {
  now: number
  staleMs: number
  /**
   * For new assignments only (the scheduler's): a worker whose last poll connection closed this long ago
   * and that has not polled since is taken as gone (killed, cut off) and gets no new work until it polls
   * again. The janitor's and the submission's "could any worker ever run it" leave it out.
   */
  pollGoneMs?: number
}

/** Online (not registering, draining or offline) and, when `live` is given, heard from less than `staleMs` ago. */
export function serving(worker: Worker, live?: Liveness): boolean {
  return (
    (worker.status ?? "online") === "online" &&
    (!live || live.now - worker.lastSeen < live.staleMs) &&
    (live?.pollGoneMs === undefined ||
      worker.pollClosedAt === null ||
      worker.pollClosedAt === undefined ||
      live.now - worker.pollClosedAt < live.pollGoneMs)
  )
}

/**
 * The one rule for whether `worker` may be given `job`, its load aside: it is serving (above), is the
 * worker the job is pinned to (if any), is not barred from the job (an assignment to it timed out), has
 * the binary, advertises every path variable the job needs and has every capability and label it needs
 * (`missing`). The scheduler places jobs by it, and the
 * janitor fails a queued job as one no worker can run by the same rule and the same liveness, so it
 * fails exactly the jobs the scheduler would never place. Liveness belongs in the rule: a worker that
 * stopped polling gets nothing new even before the janitor reaps it (the janitor did not check it; it
 * agreed in practice only because it reaps silent workers first). Without `live` the workers are
 * taken as already known to be live (`pick` over a pass's candidates).
 */
export function eligible(job: Eligible, worker: Worker, live?: Liveness): boolean {
  return (
    serving(worker, live) &&
    (!job.pin || job.pin === worker.id) &&
    !job.barred?.includes(worker.id) &&
    worker.binaries.includes(job.binary) &&
    job.paths.every((p) => worker.paths.includes(p)) &&
    (!job.pathTokens || writesPathTokens(worker)) &&
    missing(job, worker).length === 0
  )
}

/** What `eligible` reads of a job. */
export type Eligible = Pick<Job, "binary" | "paths"> & Partial<Pick<Job, "pathTokens" | "needs" | "pin" | "barred">>

/**
 * The job's needs this worker's tools or labels lack, each as `kind name` (`encoder h264_nvenc`,
 * `label gpu=nvidia`): empty when it has them all. A worker that registered no tools for the job's
 * binary (one from before issue 12) is taken to have whatever the job needs, as before; labels are
 * always checked.
 */
export function missing(job: Pick<Eligible, "binary" | "needs">, worker: Pick<Worker, "tools" | "labels">): string[] {
  const needs = job.needs
  if (!needs) return []
  const out: string[] = []
  const tool = Object.hasOwn(worker.tools ?? {}, job.binary) ? worker.tools[job.binary] : undefined
  if (tool) {
    const lists = [
      ["encoder", needs.encoders],
      ["decoder", needs.decoders],
      ["hwaccel", needs.hwaccels],
      ["hw device", needs.hwDevices],
      ["filter", needs.filters],
      ["muxer", needs.muxers],
      ["demuxer", needs.demuxers],
    ] as const
    for (const [kind, want] of lists) {
      if (!want?.length) continue
      const names = nameSets(tool)[kind]
      for (const name of want)
        if (!names.has(kind.endsWith("muxer") ? name.toLowerCase() : name)) out.push(`${kind} ${name}`)
    }
  }
  for (const [k, val] of Object.entries(needs.labels ?? {}))
    if (worker.labels?.[k] !== val) out.push(`label ${k}=${val}`)
  return out
}

/**
 * Why none of `workers` could ever run `job` (load aside, by `eligible`), or undefined when one could:
 * what the janitor and the submission fail a job with. When workers have the binary and paths but lack
 * capabilities, the needs none of them has are named (`no online worker has encoder h264_nvenc`); a job
 * barred from workers is told so (a pin never makes a job unrunnable: it lapses, `lapsedPin`); otherwise what it needs of the basics (binary, `$Var`
 * paths, path tokens) is listed, as before issue 12.
 */
export function unrunnable(job: Eligible, workers: Worker[], live: Liveness): string | undefined {
  const up = workers.filter((w) => serving(w, live))
  job = lapsedPin(job, up)
  if (up.some((w) => eligible(job, w, live))) return undefined
  const basic = up.filter(
    (w) =>
      w.binaries.includes(job.binary) &&
      job.paths.every((p) => w.paths.includes(p)) &&
      (!job.pathTokens || writesPathTokens(w)),
  )
  // A pin still here is a worker that could run it (`lapsedPin`): eligible above. Only bars remain.
  const open = basic.filter((w) => !job.barred?.includes(w.id))
  if (open.length) {
    const lacks = open.map((w) => missing(job, w))
    const common = lacks[0].filter((x) => lacks.every((l) => l.includes(x)))
    if (common.length) return `${NO_CAPABLE_WORKER} has ${common.join(", ")}`
    const each = open.slice(0, 5).map((w, i) => `${w.id} lacks ${lacks[i].join(", ")}`)
    return `${NO_CAPABLE_WORKER} has all it needs (${each.join("; ")}${open.length > 5 ? "; ..." : ""})`
  }
  if (basic.length)
    return `${NO_CAPABLE_WORKER} may run it: every one that could failed to start it in time (${job.barred!.join(", ")})`
  // Path tokens are named only when they are what is missing: a worker has the rest but is older.
  const older = job.pathTokens && up.some((w) => eligible({ ...job, pathTokens: false }, w, live))
  const need = [
    job.binary,
    ...job.paths.map((p) => `$${p}`),
    ...(older ? ["path tokens (a worker as new as its caller)"] : []),
  ].join(", ")
  return `${NO_CAPABLE_WORKER} can run it (needs ${need})`
}

/** What `waitReasons` reads of a queued job. */
export type Waiting = Eligible & Pick<Job, "id" | "lane" | "queueKey">

/**
 * Why each queued job of `jobs` is still waiting, in a few words, by the rules the scheduler places jobs
 * by (`serving`, `eligible`, `unrunnable`, `pinNow`, `slots`) and the queue's order (lowest queue key,
 * then id, per lane): `no worker online`, `draining: ...`, what no worker has (`unrunnable`), `waiting
 * for its pinned worker w1 to poll`, `all N slots busy`, `behind N higher-priority jobs` (jobs ahead of it
 * in its lane that a worker able to run it could run too). Only jobs among `jobs` count as ahead: the
 * dashboard passes the queued jobs it lists (at most 200).
 */
export function waitReasons(
  jobs: Waiting[],
  workers: Worker[],
  loads: Map<string, LaneLoad>,
  live: Liveness,
): Map<string, string> {
  const out = new Map<string, string>()
  const up = workers.filter((w) => serving(w, live))
  const heard = (w: Worker) => live.now - w.lastSeen < live.staleMs
  const draining = workers.filter((w) => w.status === "draining" && heard(w))
  const candidates: Candidate[] = up.map((worker) => ({
    worker,
    load: loads.get(worker.id)?.transcode ?? 0,
    probes: loads.get(worker.id)?.probe ?? 0,
  }))
  const order = [...jobs].sort((a, b) => a.queueKey - b.queueKey || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  for (const job of order) {
    if (!up.length) {
      out.set(
        job.id,
        draining.length ? `draining: no worker takes new jobs (${names(draining)} draining)` : "no worker online",
      )
      continue
    }
    const why = unrunnable(job, workers, live)
    if (why) {
      // The workers that could run it are draining: they will again once undrained.
      const could = draining.filter((w) => eligible(job, { ...w, status: "online" }, live))
      out.set(job.id, could.length ? `draining: only ${names(could)} can run it` : why)
      continue
    }
    const placed = lapsedPin(job, up)
    const able = candidates.filter((c) => eligible(placed, c.worker, live))
    if (pinNow(placed, candidates) === WAIT) {
      out.set(job.id, `waiting for its pinned worker ${placed.pin} to poll again`)
      continue
    }
    const ahead = order.filter(
      (o) =>
        o.lane === job.lane &&
        (o.queueKey < job.queueKey || (o.queueKey === job.queueKey && o.id < job.id)) &&
        able.some((c) => eligible(lapsedPin(o, up), c.worker, live)),
    ).length
    const behind = ahead ? `behind ${ahead} higher-priority job${ahead === 1 ? "" : "s"}` : ""
    const lanes = able.map((c) => slots(c, job.lane))
    if (lanes.every((l) => l.used >= l.total)) {
      const total = lanes.reduce((n, l) => n + l.total, 0)
      const kind = job.lane === "probe" ? " probe" : ""
      out.set(job.id, `all ${total}${kind} slot${total === 1 ? "" : "s"} busy${behind ? `, ${behind}` : ""}`)
      continue
    }
    out.set(job.id, behind || "a slot is free: the next scheduling pass assigns it")
  }
  return out
}

const names = (ws: Worker[]) =>
  ws
    .slice(0, 3)
    .map((w) => w.id)
    .join(", ") + (ws.length > 3 ? ", ..." : "")

type NameSets = Record<"encoder" | "decoder" | "hwaccel" | "hw device" | "filter" | "muxer" | "demuxer", Set<string>>
const setsOf = new WeakMap<ToolCapabilities, NameSets>()

/**
 * A worker's tool lists as sets, built once per tools object (a scheduling pass reads the workers once
 * and judges every queued job against them). Built per call, a pass over 10 000 queued jobs with two
 * workers of ~1 900 names each took 2.2 s of CPU, and every change to the queue or a slot starts a pass.
 */
function nameSets(tool: ToolCapabilities): NameSets {
  let sets = setsOf.get(tool)
  if (!sets) {
    sets = {
      encoder: new Set(tool.encoders),
      decoder: new Set(tool.decoders),
      hwaccel: new Set(tool.hwaccels),
      "hw device": new Set(tool.hwDevices),
      filter: new Set(tool.filters),
      muxer: formatNames(tool.muxers),
      demuxer: formatNames(tool.demuxers),
    }
    setsOf.set(tool, sets)
  }
  return sets
}

/**
 * The names a worker's (de)muxer list answers to: ffmpeg lists a demuxer under all its names at once
 * (`matroska,webm`, `mov,mp4,m4a,3gp,3g2,mj2`), and matches format names case-insensitively.
 */
function formatNames(list: string[]): Set<string> {
  const out = new Set<string>()
  for (const entry of list) for (const n of entry.split(",")) if (n) out.add(n.toLowerCase())
  return out
}

/**
 * `needs` without the software names (codecs, filters, formats) that no registered worker's ffmpeg knows
 * (`-c:v nonexistent_codec`, a typo, `libfdk_aac` in no build of the cluster): such a command is left to a
 * worker's ffmpeg, whose own error (`Unknown encoder '...'`, exit 1) is what a local ffmpeg of that build
 * prints, byte for byte. Names that need a hardware device (`h264_nvenc`, `scale_vaapi`: `deviceOf`),
 * hwaccels, device types and labels are kept: a build lists those whether or not the host can use them,
 * so missing them everywhere means no worker can run the job (it fails at once, or falls back).
 */
export function knownNeeds(binary: string, needs: JobNeeds, workers: Worker[]): JobNeeds {
  const judged = workers.filter((w) => w.tools?.[binary])
  if (!judged.length) return needs
  const known = (kind: "encoders" | "decoders" | "filters" | "muxers" | "demuxers", name: string) =>
    deviceOf(name) !== undefined ||
    judged.some((w) => missing({ binary, needs: { ...NO_NEEDS, [kind]: [name] } }, w).length === 0)
  const keep = (kind: "encoders" | "decoders" | "filters" | "muxers" | "demuxers") =>
    needs[kind].filter((n) => known(kind, n))
  return {
    ...needs,
    encoders: keep("encoders"),
    decoders: keep("decoders"),
    filters: keep("filters"),
    muxers: keep("muxers"),
    demuxers: keep("demuxers"),
  }
}

/**
 * Does the worker write its roots as path tokens for a job that asks (docs/protocol.md)? Workers from
 * before issue 11 do not say so, and their output would be read wrongly by a caller that decodes tokens.
 */
export const writesPathTokens = (worker: Pick<Worker, "capabilities">): boolean =>
  worker.capabilities.pathTokens === true

/** A candidate's slots and their use in a lane: probes have their own (`maxProbeJobs`). */
export function slots(c: Candidate, lane: Lane | undefined): { used: number; total: number } {
  return lane === "probe"
    ? { used: c.probes ?? 0, total: c.worker.maxProbeJobs }
    : { used: c.load, total: c.worker.maxJobs }
}

/**
 * Pure choice: the worker `eligible` for `job` with a free slot in the job's lane, preferring one whose
 * poll is open (one whose poll just closed may be dead), then the lowest relative load in the lane;
 * between equally loaded workers the higher `weight`, then the fewer jobs, then the lower id. A worker that lost or gave up this job before is passed over while another eligible
 * worker exists, even a busy one (the job then waits for it); one it is barred from never gets it.
 */
export function pick(
  job: Eligible & { excluded?: string[]; lane?: Lane },
  candidates: Candidate[],
  live?: Liveness,
): Candidate | undefined {
  const able = candidates.filter((c) => eligible(job, c.worker, live))
  const excluded = job.excluded ?? []
  const avoid = excluded.length > 0 && able.some((c) => !excluded.includes(c.worker.id))
  let best: Candidate | undefined
  let bestSlots = { used: 0, total: 1 }
  for (const c of able) {
    const s = slots(c, job.lane)
    if (s.used >= s.total) continue
    if (avoid && excluded.includes(c.worker.id)) continue
    if (!best || better(c, s, best, bestSlots)) {
      best = c
      bestSlots = s
    }
  }
  return best
}

function better(c: Candidate, s: { used: number; total: number }, b: Candidate, bs: { used: number; total: number }) {
  // A worker with its poll open first: one whose poll just closed may be dead (kill -9) or between polls.
  const open = (w: Worker) => w.pollClosedAt === null || w.pollClosedAt === undefined
  if (open(c.worker) !== open(b.worker)) return open(c.worker)
  const x = s.used / s.total
  const y = bs.used / bs.total
  if (x !== y) return x < y
  if (c.worker.weight !== b.worker.weight) return c.worker.weight > b.worker.weight
  if (s.used !== bs.used) return s.used < bs.used
  return c.worker.id < b.worker.id
}

export const WAIT = Symbol("wait")

/**
 * The pin a pass places `job` by. A pin (an info command's reference worker, coordinator/info.ts) holds
 * while its worker serves and could run the job; while that worker's poll is closed (it is between two
 * polls, or was just killed) the job waits for its next poll rather than go elsewhere; once the worker no
 * longer serves (its poll gone past `poll_gone_seconds`, or offline), or can no longer run the job (barred
 * from it after an assignment timed out, re-registered without a path variable the job names), the pin
 * lapses and any able worker may answer, so a reference worker never strands or fails the command.
 */
export function pinNow(job: Eligible, candidates: Candidate[]): string | null | typeof WAIT {
  if (!job.pin) return null
  const w = candidates.find((c) => c.worker.id === job.pin)?.worker
  if (!w || !pinnedCanRun(job, w)) return null
  return w.pollClosedAt === null || w.pollClosedAt === undefined ? job.pin : WAIT
}

/** `job` without its pin when the pinned worker is not among `up` (the workers that serve) or cannot run it: see `pinNow`. */
export function lapsedPin<J extends Eligible>(job: J, up: Worker[]): J {
  return job.pin && !up.some((w) => w.id === job.pin && pinnedCanRun(job, w)) ? { ...job, pin: null } : job
}

/** Whether its pinned worker (known to serve) could run `job`, the pin aside. */
const pinnedCanRun = (job: Eligible, w: Worker) => eligible({ ...job, pin: null }, w)

export interface Scheduler {
  /**
   * Asks for a scheduling pass soon; passes never overlap and requests made during one cause one more
   * (kicks coalesce). A pass over lanes known to hold nothing queued reads nothing.
   */
  kick(): void
  /** Resolves when no pass is running or pending (tests, shutdown). */
  idle(): Promise<void>
}

/** What a pass knows of a lane's queue: jobs in it, nothing in it, or nothing known. */
type LaneState = "queued" | "empty" | "unknown"

/**
 * Event-driven: the store's changes that could make an assignment possible (a job queued, a slot freed,
 * a worker registered or polling) call `kick()` (coordinator/wakeups.ts), and an assignment wakes its
 * worker's poll the same way; there is no timer in the hot path. Every assignment is a guarded UPDATE (queued → assigned), so a racing pass, or another
 * coordinator sharing the database, can never assign a job twice; and the database counts the worker's
 * load in the lane in the same transaction (writer.ts `claim`), so two coordinators' passes never give
 * a worker more than its slots: the loads a pass reads are its plan, the database's count decides.
 *
 * The scheduler follows the store's changes itself for one thing: which lanes may hold queued jobs. A
 * job becoming queued (submitted, given back, retried) marks its lane; a pass that leaves a lane with
 * nothing queued marks it empty, and while it is empty a kick (a slot freed, a poll) costs no statement.
 * The store reports only this process's commits, so a lane's emptiness is trusted for `emptyTrustMs`
 * (default 2 s) and then read again (one indexed read) at the next kick: a job queued by another
 * coordinator on the same database is seen within that, or at once once the notifier carries it.
 */
export function createScheduler(deps: {
  store: Store
  log: Logger
  now: () => number
  staleMs: number
  /** A worker whose poll connection closed this long ago without a new poll gets nothing new (Liveness). */
  pollGoneMs?: number
  /** How long a lane found empty is taken as empty without reading it again (ms). */
  emptyTrustMs?: number
}): Scheduler {
  let running: Promise<void> | undefined
  let again = false

  /** The largest page of queued jobs a pass reads at once. */
  const PAGE = 200
  const trustMs = deps.emptyTrustMs ?? 2_000
  const state = new Map<Lane, LaneState>(LANES.map((l) => [l, "unknown"]))
  /** When each lane was last found empty (coordinator time). */
  const emptyAt = new Map<Lane, number>()
  /** Bumped at every job queued in the lane: a pass that read the lane before it must not call it empty. */
  const queuedSeq = new Map<Lane, number>(LANES.map((l) => [l, 0]))
  deps.store.changes((c) => {
    if (c.type === "job" && c.to === "queued") {
      const lane = c.job.lane
      state.set(lane, "queued")
      queuedSeq.set(lane, (queuedSeq.get(lane) ?? 0) + 1)
    }
  })
  let timer: ReturnType<typeof setTimeout> | undefined
  let timerAt = Infinity
  /** One pass at `at` (coordinator time), or earlier; for pins waiting for their worker (pinNow). */
  const lookAgainAt = (at: number) => {
    if (deps.pollGoneMs === undefined || at >= timerAt) return
    clearTimeout(timer)
    timerAt = at
    timer = setTimeout(
      () => {
        timer = undefined
        timerAt = Infinity
        kick()
      },
      Math.max(0, at - deps.now()),
    )
    timer.unref?.()
  }
  const pass = async () => {
    // Most kicks (a job started or ended, a poll) come when nothing is queued: a lane known empty is
    // not read at all; a lane of unknown state is asked with one indexed read before the workers and
    // their loads are read; a lane known to hold jobs is paged at once.
    const seqAtStart = new Map(queuedSeq)
    const waiting: Lane[] = []
    for (const lane of LANES) {
      let st = state.get(lane)!
      if (st === "empty" && deps.now() - (emptyAt.get(lane) ?? 0) >= trustMs) st = "unknown"
      if (st === "unknown") {
        st = (await deps.store.queuedJobs(1, undefined, lane)).length ? "queued" : "empty"
        if (st === "empty") markEmpty(lane, seqAtStart)
        else state.set(lane, st)
      }
      if (st === "queued") waiting.push(lane)
    }
    if (!waiting.length) return
    const live = { now: deps.now(), staleMs: deps.staleMs, pollGoneMs: deps.pollGoneMs }
    const workers = (await deps.store.listWorkers()).filter((w) => serving(w, live))
    if (!workers.length) return
    const loads = await deps.store.laneLoads()
    const candidates: Candidate[] = workers.map((worker) => ({
      worker,
      load: loads.get(worker.id)?.transcode ?? 0,
      probes: loads.get(worker.id)?.probe ?? 0,
    }))
    // Probes first, in their own slots; then transcodes. Each lane is paged through in queue order
    // (priority with aging: see docs/scheduling.md), so that jobs no worker can run never starve those
    // behind them; a lane's paging stops as soon as every slot of that lane is taken. The first page is
    // as many jobs as there are free slots (one free slot reads one job, not a page of 200); each next
    // page, needed only when jobs were skipped (no worker fits, a pin waits), is twice the last, up to PAGE.
    for (const lane of waiting) {
      let after: QueueCursor | undefined
      // One more than the free slots: a lane whose every job fits is then known to be empty after it.
      let size = Math.min(PAGE, freeSlots(candidates, lane) + 1)
      while (candidates.some((c) => free(c, lane))) {
        const page = size
        size = Math.min(PAGE, size * 2)
        const queued = await deps.store.queuedJobs(page, after, lane)
        let left = queued.length
        for (const job of queued) {
          const pin = pinNow(job, candidates)
          // Its worker's poll is closed (between two polls, or killed): wait for it to poll again, or
          // for the pin to lapse once poll_gone_seconds have passed; a pass then looks again.
          if (pin === WAIT) {
            const closed = candidates.find((c) => c.worker.id === job.pin)!.worker.pollClosedAt!
            lookAgainAt(closed + (deps.pollGoneMs ?? 0) + 10)
            continue
          }
          const choice = pick({ ...job, pin }, candidates, live)
          if (!choice) continue
          const done = await deps.store.assign(job.id, choice.worker.id, deps.now())
          if (!done) {
            // Taken by another coordinator's pass, or the worker's slots are: the database counts them
            // in the assignment (another coordinator assigns too), so what this pass counted is read again.
            const now = await deps.store.laneLoads()
            for (const c of candidates) {
              c.load = now.get(c.worker.id)?.transcode ?? 0
              c.probes = now.get(c.worker.id)?.probe ?? 0
            }
            continue
          }
          left--
          if (lane === "probe") choice.probes = (choice.probes ?? 0) + 1
          else choice.load++
          deps.log.info("job assigned", { job: job.id, worker: choice.worker.id, epoch: done.epoch, lane })
        }
        if (queued.length < page) {
          // The lane's last page, every job of it assigned: nothing is left queued in it.
          if (!left && !after) markEmpty(lane, seqAtStart)
          break
        }
        const last = queued[queued.length - 1]
        after = { key: last.queueKey, id: last.id }
      }
    }
  }

  /** `lane` found empty by a pass that started at `seq`, unless a job was queued in it since. */
  function markEmpty(lane: Lane, seq: Map<Lane, number>) {
    if (queuedSeq.get(lane) !== seq.get(lane)) return
    state.set(lane, "empty")
    emptyAt.set(lane, deps.now())
  }

  const run = async () => {
    do {
      again = false
      try {
        await pass()
      } catch (err) {
        // What the pass knew may be wrong now: every lane is read again at the next pass.
        for (const lane of LANES) if (state.get(lane) === "empty") state.set(lane, "unknown")
        deps.log.error("scheduling pass failed", err as Error)
      }
    } while (again)
    running = undefined
  }

  const kick = () => {
    if (running) {
      again = true
      return
    }
    // Started after the current task, so every change listener of the commit that kicked (the lane
    // marking above among them) has run before the pass reads what it knows.
    running = Promise.resolve().then(run)
  }
  return {
    kick,
    async idle() {
      while (running) await running
    },
  }
}
