import { infoCommand, toolOf } from "../shared/ffargs/argv.ts"
import type { Logger } from "../shared/log.ts"
import type { JobNeeds, ToolCapabilities } from "../shared/protocol/capabilities.ts"
import type { ExitReport, Job, Worker } from "../shared/protocol/schemas.ts"
import type { Answer, OutputChunk, Store } from "../store/types.ts"
import { eligible, type Eligible, type Liveness } from "./scheduler.ts"

/**
 * Consistent answers to info commands (issue 12 item 4). `-version`, `-encoders`, `-h encoder=...` and the
 * like describe the binary that runs them, so a cluster of different builds would answer at random. Every
 * info command is run by one reference worker per binary: `reference_worker` while it is online and has
 * the binary's tools, else the online worker with the widest tools (most encoders + decoders + hwaccels +
 * filters, ties by id). The job is pinned to it; the byte-exact answer (stdout and stderr as it uploaded
 * them, and the exit code) is kept under (worker, hash of its tools for the binary, binary, arguments,
 * path variables, environment, path tokens), and a later identical command is answered from it: the job
 * is created already ended with those bytes, with no worker round trip and no slot. An entry goes when
 * that worker's tools hash changes (a new build, a capability removed); entries live in memory, bounded
 * by `info_cache_entries` and {@link INFO_CACHE_BYTES}, least recently used first.
 */

/** All cached answers together hold at most this many bytes. */
export const INFO_CACHE_BYTES = 64 * 1024 * 1024
/** One answer larger than this (a `-h full` is about 1 MiB) is passed on but not kept. */
export const INFO_ENTRY_BYTES = 4 * 1024 * 1024
/** Info jobs followed for their answer at once, and jobs waiting for one; past it the oldest are forgotten. */
const PENDING_MAX = 1024

/** What of a submission decides its answer. */
export interface InfoRequest {
  binary: string
  args: string[]
  paths: string[]
  env: Record<string, string>
  pathTokens: boolean
  /**
   * What the submission computed the job needs (labels from client rules among them): the reference
   * worker is one that has it. Not part of the key: the worker it names is.
   */
  needs?: JobNeeds
}

/** What a submitted info command becomes: a job answered from the cache, or one pinned to the reference worker. */
export type InfoPlan =
  | { kind: "answer"; answer: Answer; reason: string; pin: string }
  | { kind: "ask"; pin: string; key: string; hash: string; from: string }
  /** An identical command is being asked already: this one waits for its answer (and runs if none comes). */
  | { kind: "wait"; pin: string; key: string }

export interface InfoCache {
  /** Undefined when the command is not an info command, or no online worker has tools for its binary. */
  /** `workers`: the registered workers when the caller has just read them (a submission), else read here. */
  plan(req: InfoRequest, workers?: Worker[]): Promise<InfoPlan | undefined>
  /** The job created for an `ask` plan: its answer is kept when it ends cleanly on the plan's worker. */
  asking(job: Pick<Job, "id">, plan: Extract<InfoPlan, { kind: "ask" }>): void
  /** The job created for a `wait` plan (queued, pinned): answered with the asked one's answer when it comes. */
  waiting(job: Pick<Job, "id">, plan: Extract<InfoPlan, { kind: "wait" }>): void
  /** A worker's upload as the store accepted it (worker-protocol.ts): the answer of a followed job. */
  uploaded(id: string, epoch: number, chunks: OutputChunk[], exit: ExitReport | undefined, after: Job): void
  /** The job of a plan was never created (the store refused it): forget it, so the next identical command asks. */
  abandoned(id: string): void
  /** Entries and bytes held, jobs followed and jobs waiting, for tests. */
  size(): { entries: number; bytes: number; pending: number; waiting: number }
}

/** The widest tools of a binary: how many names it lists. */
const width = (t: ToolCapabilities) => t.encoders.length + t.decoders.length + t.hwaccels.length + t.filters.length

/**
 * The reference worker for `job` (its binary, path variables, path tokens and needs) among `workers`:
 * `preferred` when it could run the job and has tools for its binary, else such a worker with the widest
 * tools, ties by id. "Could run" is the scheduler's own rule (`eligible`: serving, with the binary, every
 * path variable the job names, path tokens if it asks, and the labels a client rule gives it), so an info
 * command is never pinned to a worker that stopped polling, nor to one that lacks the `$Var` of the
 * caller's working directory or a label its caller's jobs must have (pinned there, the command could
 * not run there). Workers that registered no tools (older ones) are never it.
 */
export function referenceWorker(
  workers: Worker[],
  job: Pick<Eligible, "binary" | "paths" | "pathTokens" | "needs">,
  preferred?: string,
  live?: Liveness,
): Worker | undefined {
  const { binary } = job
  const able = workers.filter((w) => w.tools[binary] && eligible(job, w, live))
  const chosen = able.find((w) => w.id === preferred)
  if (chosen) return chosen
  return able.sort((a, b) => width(b.tools[binary]!) - width(a.tools[binary]!) || (a.id < b.id ? -1 : 1))[0]
}

const hex = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex")

/** A stable hash of one binary's tools on a worker. */
export const toolsHash = (tool: ToolCapabilities) => hex(JSON.stringify(tool)).slice(0, 32)

/** The cache key of a request answered by `worker` whose tools hash `hash`. */
export function infoKey(worker: string, hash: string, req: InfoRequest): string {
  const env = Object.entries(req.env).sort(([a], [b]) => (a < b ? -1 : 1))
  return hex(JSON.stringify([worker, hash, req.binary, req.args, [...req.paths].sort(), env, req.pathTokens ? 1 : 0]))
}

interface Entry {
  worker: string
  hash: string
  answer: Answer
  bytes: number
  /** What the timeline says of it. */
  from: string
}

interface Pending {
  key: string
  worker: string
  hash: string
  from: string
  epoch: number
  seq: number
  rows: Answer["rows"]
  bytes: number
  tooBig: boolean
}

export function createInfoCache(deps: {
  store: Pick<Store, "listWorkers" | "changes" | "answerJob">
  log: Logger
  maxEntries: number
  preferred?: string
  maxBytes?: number
  /** How the scheduler judges a worker live; without it, only the stored status counts. */
  live?: () => Liveness
  now?: () => number
}): InfoCache {
  const now = deps.now ?? Date.now
  const maxBytes = deps.maxBytes ?? INFO_CACHE_BYTES
  // A Map keeps insertion order: re-inserting on use makes its first key the least recently used.
  const entries = new Map<string, Entry>()
  const pending = new Map<string, Pending>()
  /** Per key being asked: the jobs (queued, pinned to the same worker) waiting for its answer. */
  const waiters = new Map<string, string[]>()
  let waiting = 0
  /** The asked job `id` ended: its waiters get its answer, or (none came) are left to run as any job. */
  const settle = (key: string, answer?: { answer: Answer; reason: string }) => {
    const ids = waiters.get(key) ?? []
    waiters.delete(key)
    waiting -= ids.length
    if (!answer) return
    for (const id of ids)
      deps.store
        .answerJob(id, answer.answer, answer.reason, now())
        .catch((err) =>
          deps.log.warn("could not answer a waiting info command", { job: id, reason: (err as Error).message }),
        )
  }
  let bytes = 0
  const drop = (key: string) => {
    const e = entries.get(key)
    if (!e) return
    entries.delete(key)
    bytes -= e.bytes
  }
  const keep = (key: string, e: Entry) => {
    drop(key)
    if (deps.maxEntries === 0 || e.bytes > INFO_ENTRY_BYTES) return
    entries.set(key, e)
    bytes += e.bytes
    while (entries.size > deps.maxEntries || bytes > maxBytes) drop(entries.keys().next().value!)
  }
  // A followed job that ends without an exit upload (canceled, failed by the janitor) is forgotten.
  deps.store.changes((c) => {
    if (c.type !== "job" || c.event === "exit" || !["completed", "failed", "canceled"].includes(c.to)) return
    const p = pending.get(c.job.id)
    if (!p) return
    pending.delete(c.job.id)
    settle(p.key)
  })

  return {
    async plan(req, workers) {
      if (!infoCommand(toolOf(req.binary), req.args)) return undefined
      const ref = referenceWorker(workers ?? (await deps.store.listWorkers()), req, deps.preferred, deps.live?.())
      if (!ref) return undefined
      const tool = ref.tools[req.binary]!
      const hash = toolsHash(tool)
      // The worker's tools changed (a new build, a capability removed): its old answers are stale.
      for (const [k, e] of entries) if (e.worker === ref.id && e.hash !== hash) drop(k)
      const key = infoKey(ref.id, hash, req)
      const from = `${req.binary} ${tool.version} of worker ${ref.id}`
      const hit = entries.get(key)
      if (hit) {
        // Most recently used now.
        entries.delete(key)
        entries.set(key, hit)
        return { kind: "answer", answer: hit.answer, reason: `answered from the info cache: ${hit.from}`, pin: ref.id }
      }
      // Ten identical commands at once (a media server starting) ask the worker once.
      if (deps.maxEntries > 0 && [...pending.values()].some((p) => p.key === key))
        return { kind: "wait", pin: ref.id, key }
      return { kind: "ask", pin: ref.id, key, hash, from }
    },

    asking(job, plan) {
      if (deps.maxEntries === 0) return
      const { key, pin: worker, hash, from } = plan
      pending.set(job.id, { key, worker, hash, from, epoch: -1, seq: 0, rows: [], bytes: 0, tooBig: false })
      while (pending.size > PENDING_MAX) {
        const [id, old] = pending.entries().next().value!
        pending.delete(id)
        settle(old.key)
      }
    },

    waiting(job, plan) {
      // Past the bound it is simply not answered early: it runs on the reference worker like the first.
      if (waiting >= PENDING_MAX) return
      waiters.set(plan.key, [...(waiters.get(plan.key) ?? []), job.id])
      waiting++
    },

    uploaded(id, epoch, chunks, exit, after) {
      const p = pending.get(id)
      if (!p) return
      // A new attempt (the first was lost) starts its output again.
      if (p.epoch !== epoch) Object.assign(p, { epoch, seq: 0, rows: [], bytes: 0, tooBig: false })
      for (const c of chunks) {
        if (c.seq <= p.seq) continue
        p.seq = c.seq
        p.bytes += c.data.length
        if (p.bytes > INFO_ENTRY_BYTES) p.tooBig = true
        // A copy: the frame's bytes are a view of the whole request body, which must not stay alive with it.
        if (!p.tooBig) p.rows.push({ stream: c.stream, data: c.data.slice() })
      }
      if (!exit) return
      pending.delete(id)
      const clean = exit.code !== null && !exit.signal && !exit.error && !exit.abandoned
      // Only the reference worker's own answer: a pinned job runs nowhere else, this says so again.
      const ended = after.status === "completed" || after.status === "failed"
      if (!clean || p.tooBig || !ended || after.workerId !== p.worker) return settle(p.key)
      const answer = { rows: p.rows, code: exit.code! }
      keep(p.key, { worker: p.worker, hash: p.hash, answer, bytes: p.bytes, from: p.from })
      settle(p.key, { answer, reason: `answered with the answer of job ${id}: ${p.from}` })
      deps.log.debug("info answer cached", { job: id, worker: p.worker, bytes: p.bytes })
    },

    abandoned(id) {
      const p = pending.get(id)
      if (p) {
        pending.delete(id)
        settle(p.key)
      }
      for (const [key, ids] of waiters) {
        const i = ids.indexOf(id)
        if (i === -1) continue
        ids.splice(i, 1)
        waiting--
        if (!ids.length) waiters.delete(key)
      }
    },

    size: () => ({ entries: entries.size, bytes, pending: pending.size, waiting }),
  }
}
