import { fstatSync, statSync } from "node:fs"
import { coordinatorTargets, loadConfig, resolveKey, type YamlExplainer } from "../shared/config/load.ts"
import { ClientConfig, type FallbackConfig } from "../shared/config/schema.ts"
import { resolveTransports } from "../shared/config/transports.ts"
import { loadPeerTransports } from "../cli-loader.ts"
import { DffmpegError, InvalidError, OutputLostError, TooLargeError, UnavailableError } from "../shared/errors.ts"
import { toolOf } from "../shared/ffargs/argv.ts"
import { DEFAULT_ENV, mapReport, pickEnv, reportFiles } from "../shared/ffargs/env.ts"
import { backoff, createApiClient, readJson, retryable, type ApiClient } from "../shared/http/client.ts"
import { createUploader } from "../shared/http/uploader.ts"
import { callerRoots, createClientMapper } from "../shared/paths/mapping.ts"
import { createRootDecoder, rewrittenStreams, type Rewriter } from "../shared/paths/rewrite.ts"
import { FRAMES_MEDIA_TYPE, Kind, encodeFrame, frameJson } from "../shared/protocol/frames.ts"
import type { Job, Outcome } from "../shared/protocol/schemas.ts"
import { WITHDRAWN_FOR_FALLBACK, type FallbackReason } from "../shared/protocol/fallback.ts"
import { jobFiles } from "./contents.ts"
import {
  Diverted,
  appendLog,
  localCommand,
  logPath,
  outcomeFallback,
  reportPending,
  runLocal,
  submitFallback,
} from "./fallback.ts"
import { exitCodeOf, signalNumber } from "./outcome.ts"
import { createSink, type Writable } from "./output.ts"
import { createStatusLine, type JobStatusEvent, type StatusLine } from "./status-line.ts"
import { tapStdin, type StdinTap } from "./stdin-tap.ts"
import { ACK_CADENCE, jobFrames } from "./stream.ts"

/** What a session touches besides the API: this process's streams, stdin and signals (tests give fakes). */
export interface SessionIo {
  stdout: Writable
  stderr: Writable
  /** This process's stdin; undefined when there is none to forward (closed, or /dev/null). */
  stdin?: () => AsyncIterable<Uint8Array>
  /** Where forwarded signals come from. */
  signals: Pick<NodeJS.EventEmitter, "on" | "off">
}

/** The real process: its stdout, stderr, stdin (when it has one) and signals. */
export function processIo(): SessionIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: hasStdin() ? () => Bun.stdin.stream() : undefined,
    signals: process,
  }
}

/** An opened client: its config and the signed API client (`openClient`). */
export interface Client {
  config: Pick<ClientConfig, "paths" | "passthrough_paths" | "signal_timeout_seconds"> &
    Partial<Pick<ClientConfig, "forward_env" | "fallback">>
  api: ApiClient
  /** Directory the config's relative paths are relative to (`fallback.log_file`); default: the working directory. */
  base?: string
}

export interface AttachedOptions {
  binary: string
  args: string[]
  configPath?: string
  /** Prints config warnings (unknown keys) to stderr; off in proxy mode unless stderr is a terminal. */
  warn?: (line: string) => void
  /** Forward this process's stdin to the remote process. */
  stdin?: boolean
  explainYaml?: YamlExplainer
  /** Show where the job is (queued, running, progress) on stderr while its output is quiet; TTYs only, never the proxy. */
  status?: boolean
  /**
   * Prints the coordinator's one-line notices about the job (it waits for a busy worker) to stderr; only
   * when stderr is a terminal, so a caller parsing ffmpeg's output never sees them.
   */
  notice?: (line: string) => void
  /** An already opened client instead of the one `configPath` names. */
  client?: Client
  io?: SessionIo
}

export async function openClient(configPath?: string, warn?: (line: string) => void, explainYaml?: YamlExplainer) {
  const { config, base, warnings } = await loadConfig("client", ClientConfig, configPath, {}, explainYaml)
  for (const w of warnings) warn?.(w)
  const key = resolveKey(config, base)
  // A broker in `transports:`: the adapters come in a chunk of their own, loaded only then (a proxy call on
  // HTTP loads neither). Requests go over the first transport that works, in the order listed.
  const wanted = resolveTransports(config.transports, base)
  const peers = wanted.enabled.some((t) => t !== "http_polling")
    ? await (await loadPeerTransports())
        .openClientTransports({ transports: wanted, identity: config.client_id, key })
        .catch((err: Error) => {
          // That chunk has its own copy of the error classes: the proxy's edge knows only its own.
          throw new UnavailableError(err.message)
        })
    : undefined
  const api = createApiClient({
    coordinators: coordinatorTargets(config.coordinator, base),
    client: config.client_id,
    key,
    fetch: peers?.fetch,
  })
  return { config, api, base, close: () => peers?.close() }
}

/** The client to use and the job's arguments with this machine's paths turned into path variables. */
async function prepare(o: AttachedOptions) {
  const { config, api, base } = o.client ?? (await openClient(o.configPath, o.warn, o.explainYaml))
  const mapper = createClientMapper({ paths: config.paths, passthrough: config.passthrough_paths, cwd: process.cwd() })
  const tool = toolOf(o.binary)
  const mapped = mapper.mapArgs(o.args, tool)
  const env = callerEnv(process.env, config.forward_env ?? DEFAULT_ENV, mapper, mapped, process.cwd())
  // Concat lists and filter scripts travel rewritten (only this machine knows the paths inside them).
  const files = jobFiles(tool, o.args, mapper, mapped, process.cwd())
  // This client writes the worker's path tokens back as its own paths (`follow`'s `paths`): the job says so.
  const job = {
    binary: o.binary,
    args: mapped.args,
    paths: mapped.paths,
    cwd: mapped.cwd,
    env,
    pathTokens: true,
    ...(files.length ? { files } : {}),
  }
  return { config, api, base: base ?? process.cwd(), job, roots: callerRoots(config.paths, o.args) }
}

/**
 * The variables of `env` that `names` forwards, FFREPORT's report files turned into path variables like
 * arguments (their variables added to `mapped.paths`). A report ffmpeg would write into an unmapped
 * working directory (a relative `file=`, or none: `%p-%t.log`) is refused, as it would be lost.
 */
export function callerEnv(
  env: Record<string, string | undefined>,
  names: readonly string[],
  mapper: ReturnType<typeof createClientMapper>,
  mapped: { paths: string[]; cwd: string | null },
  cwd: string,
): Record<string, string> {
  const out = pickEnv(env, names)
  if (out.FFREPORT === undefined) return out
  const report = out.FFREPORT
  for (const file of reportFiles(report))
    if (!file.startsWith("/") && mapped.cwd === null)
      throw new InvalidError(
        `FFREPORT writes its report ${file} into the working directory ${cwd}, which is under no path mapping; run from a mapped directory or give FFREPORT an absolute file=`,
      )
  out.FFREPORT = mapReport(report, (file) => {
    try {
      const one = mapper.mapArgs([file])
      mapped.paths = [...new Set([...mapped.paths, ...one.paths])].sort()
      return one.args[0]!
    } catch (err) {
      if (err instanceof InvalidError) throw new InvalidError(`FFREPORT file=${file}: ${err.message}`)
      throw err
    }
  })
  return out
}

/**
 * Submits a job and relays it as if it ran here: stdout and stderr byte for byte, stdin forwarded,
 * and the remote exit code returned. dffmpeg's own failures are thrown as DffmpegError.
 */
export async function runAttached(o: AttachedOptions): Promise<number> {
  const { config, api, base, job, roots } = await prepare(o)
  const io = o.io ?? processIo()
  const stdin = o.stdin !== false && io.stdin !== undefined
  const fb = config.fallback
  // With a fallback configured, what the job's downlink reads of stdin is kept so that a local run gets it too.
  const tap = fb && stdin ? tapStdin(io.stdin!, STDIN_REPLAY_BYTES) : undefined
  const log = fb && logPath(fb, base)
  let report: Promise<number> | undefined
  const runHere = async (reason: FallbackReason, detail: string) =>
    runFallback(o, {
      before: report,
      fb: fb!,
      reason,
      detail,
      io,
      tap,
      log: log!,
      api: reason === "coordinator_unreachable" ? undefined : api,
    })
  // One key for every attempt of this submission, on whichever coordinator: one job however often it is sent.
  const submission = crypto.randomUUID()
  const submit = async () => {
    const res = await api.request("POST", "/api/v1/jobs", {
      // `digests`: the stream sealed by frame digests, which the coordinator has for what it relays (STREAMED_DIGESTS).
      query: { attach: 1, digests: 1, progress: o.status ? 1 : undefined },
      json: { ...job, stdin, attached: true, submission },
      idempotent: true,
    })
    if (!res.ok || !res.body) await readJson(res)
    return res
  }
  let res: Response
  try {
    res = await submit()
  } catch (err) {
    const reason = submitFallback(fb, err)
    if (!reason) throw err
    return runHere(reason, (err as Error).message)
  }
  // The coordinator answers again: what earlier fallbacks logged goes with this call, alongside the job.
  report = log ? reportPending(api, log, REPORT_TIMEOUT_MS) : undefined
  try {
    return await follow(api, res.body!, {
      resubmit: async () => (await submit()).body!,
      stdin,
      signals: true,
      signalTimeoutMs: config.signal_timeout_seconds * 1000,
      statusLine: statusLineFor(o.status),
      notice: o.notice,
      io: tap ? { ...io, stdin: tap.remote } : io,
      paths: { roots, binary: job.binary, args: job.args },
      ack: true,
      divert: fb && {
        queueTimeoutMs: fb.when.includes("queue_timeout") ? fb.queue_timeout_seconds * 1000 : undefined,
        withdraw: async (id) => {
          // Input already gone to the coordinator beyond what can be replayed: the job stays remote.
          if (tap && !tap.hold()) return false
          try {
            await api.json("POST", `/api/v1/jobs/${id}/withdraw`, { timeoutMs: REPORT_TIMEOUT_MS })
            return true
          } catch (err) {
            // Refused (it started), or the answer was lost: the job's state says which.
            const now = retryable(err)
              ? await api
                  .json<Job>("GET", `/api/v1/jobs/${id}`, { timeoutMs: REPORT_TIMEOUT_MS })
                  .catch(() => undefined)
              : undefined
            if (now?.status === "canceled" && now.error === WITHDRAWN_FOR_FALLBACK) return true
            tap?.release()
            return false
          }
        },
        outcome: (oc) => {
          const reason = outcomeFallback(fb, oc)
          return reason && (!tap || tap.hold()) ? reason : undefined
        },
      },
    })
  } catch (err) {
    if (!(err instanceof Diverted)) throw err
    return await runHere(err.reason, err.detail)
  } finally {
    // Sent while the job ran; a slow coordinator delays the exit by at most REPORT_TIMEOUT_MS.
    await report
  }
}

/** Bytes of stdin kept for a local run while a job waits remotely (above it, the job is never run here). */
export const STDIN_REPLAY_BYTES = 1024 * 1024
/** Longest a fallback report (or a withdrawal) may take: the proxy's normal path never waits longer. */
export const REPORT_TIMEOUT_MS = 2000

/**
 * A local fallback run: the caller's command, rewritten, on this machine's binary; logged whatever happens
 * (a log that cannot be written is said on stderr, the run goes on), and reported at once when the
 * coordinator is known to answer (`api`).
 */
async function runFallback(
  o: AttachedOptions,
  f: {
    fb: FallbackConfig
    reason: FallbackReason
    detail: string
    io: SessionIo
    tap?: StdinTap
    log: string
    api?: ApiClient
    /** A report under way (it holds the ledger's lock): this run's record goes after it. */
    before?: Promise<unknown>
  },
): Promise<number> {
  const cmd = localCommand(f.fb, o.binary, o.args)
  const at = Date.now()
  let code: number | null = null
  let error: string | undefined
  try {
    code = await runLocal(cmd, { stdin: f.tap?.started ? f.tap.handOff() : undefined, signals: f.io.signals })
    return code
  } catch (err) {
    error = (err as Error).message
    throw err
  } finally {
    const entry = {
      id: crypto.randomUUID(),
      time: new Date(at).toISOString(),
      at,
      reason: f.reason,
      detail: f.detail,
      tool: cmd.tool,
      binary: cmd.path,
      args: o.args,
      argv: cmd.args,
      exit_code: code,
      ...(error !== undefined ? { error } : {}),
    }
    try {
      appendLog(f.log, entry)
      if (f.api) {
        await f.before
        await reportPending(f.api, f.log, REPORT_TIMEOUT_MS)
      }
    } catch (err) {
      f.io.stderr.write(`dffmpeg: warning: could not log a fallback to ${f.log}: ${(err as Error).message}\n`)
    }
  }
}

/** Submits a job without following it; returns it (for `client submit --detach`). */
export async function submitDetached(o: AttachedOptions & { retries: number }): Promise<Job> {
  const { api, job } = await prepare(o)
  return api.json<Job>("POST", "/api/v1/jobs", {
    json: { ...job, stdin: false, attached: false, retries: o.retries, submission: crypto.randomUUID() },
    idempotent: true,
  })
}

export interface AttachOptions {
  /** The job to follow. */
  id: string
  configPath?: string
  warn?: (line: string) => void
  status?: boolean
  client?: Client
  io?: SessionIo
}

/** Follows an existing job from the start of its output (`client attach`): replayed, then live. */
export async function attach(o: AttachOptions): Promise<number> {
  const { config, api } = o.client ?? (await openClient(o.configPath, o.warn))
  // Its binary and arguments tell which streams carry `$Var` tokens and how its writer escapes them; a job
  // submitted by an older client has none (its worker wrote its own paths).
  const job = await api.json<Job>("GET", `/api/v1/jobs/${o.id}`)
  const res = await api.request("GET", `/api/v1/jobs/${o.id}/stream`, {
    query: { after: 0, progress: o.status ? 1 : undefined },
  })
  if (!res.ok || !res.body) await readJson(res)
  return follow(
    api,
    res.body!,
    {
      stdin: false,
      signals: false,
      signalTimeoutMs: config.signal_timeout_seconds * 1000,
      statusLine: statusLineFor(o.status),
      io: o.io,
      paths: job.pathTokens ? { roots: callerRoots(config.paths), binary: job.binary, args: job.args } : undefined,
    },
    o.id,
  )
}

/** A coordinator's text as one line of printable characters (a terminal must not be driven by it). */
const printableLine = (s: string) => s.replace(/[^\x20-\x7e\u00a0-\uffff]/g, "?").slice(0, 300)

const statusLineFor = (on?: boolean) => (on ? createStatusLine((s) => void process.stderr.write(s)) : undefined)

export interface FollowOptions {
  /**
   * Sends the submission again (same key: the same job) when the first stream is lost before it named
   * its job; without it such a loss is final.
   */
  resubmit?: () => Promise<ReadableStream<Uint8Array>>
  /** Forward this process's stdin to the job. */
  stdin: boolean
  /** Forward SIGINT/SIGTERM/SIGHUP to the remote process (the proxy); cancel if it does not end in time. */
  signals: boolean
  signalTimeoutMs: number
  statusLine?: StatusLine
  /** Where the submission's notice goes (`dffmpeg: waiting for a free slot: ...`); nowhere without it. */
  notice?: (line: string) => void
  /** Default: this process (`processIo`). */
  io?: SessionIo
  /**
   * The job's binary and (mapped) arguments and this caller's root of each path variable: the worker's
   * `$Var` tokens in stderr (and ffprobe's stdout) are written as these roots. Without it bytes pass as sent.
   */
  paths?: { roots: Record<string, string>; binary: string; args: string[] }
  /** Acknowledge consumed output: this is the job's attached caller (its submitter), not a later viewer. */
  ack?: boolean
  /**
   * Local fallback (runAttached): the follow throws `Diverted` instead of returning when the job is to run
   * here: its outcome says so (`outcome`), or it was withdrawn after waiting `queueTimeoutMs` without
   * output (`withdraw`: true when the coordinator withdrew it, so it never runs there).
   */
  divert?: {
    queueTimeoutMs?: number
    withdraw: (job: string) => Promise<boolean>
    outcome: (o: Outcome) => FallbackReason | undefined
  }
}

const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP"] as const

/**
 * False when stdin is closed or is /dev/null: nothing can ever be read, so the remote process gets
 * /dev/null too and no relay is set up (saves two requests per job, which matters for short ffprobes).
 */
export function hasStdin(): boolean {
  try {
    const st = fstatSync(0)
    if (!st.isCharacterDevice()) return true
    return st.rdev !== statSync("/dev/null").rdev
  } catch {
    return false
  }
}

/**
 * Relays a job's frame stream, re-attaching after the last position seen if the connection drops.
 * Signals are forwarded to the remote process; if it has not ended `signalTimeoutMs` after the first
 * one, the job is canceled and this process exits 128+signal. A reader that closed our stdout (EPIPE)
 * cancels the job too.
 */
export async function follow(
  api: ApiClient,
  first: ReadableStream<Uint8Array>,
  o: FollowOptions,
  knownJob?: string,
): Promise<number> {
  const io = o.io ?? processIo()
  const out = createSink(io.stdout)
  const err = createSink(io.stderr)
  let job = knownJob
  let downlink: Downlink | undefined
  let outcome: Outcome | undefined
  const pending: string[] = []
  let deadline: ReturnType<typeof setTimeout> | undefined
  let forceExit!: (code: number) => void
  let forceFail!: (err: DffmpegError) => void
  const forced = new Promise<number>((resolve, reject) => {
    forceExit = resolve
    forceFail = reject
  })
  const cancel = async () => {
    if (job) await api.json("POST", `/api/v1/jobs/${job}/cancel`, { timeoutMs: 3000, idempotent: true }).catch(() => {})
  }
  let signaled = false
  const onSignal = (sig: (typeof FORWARDED)[number]) => {
    signaled = true
    if (downlink) downlink.signal(sig)
    else pending.push(sig)
    deadline ??= setTimeout(async () => {
      await cancel()
      io.stderr.write(
        `dffmpeg: the remote process did not stop within ${o.signalTimeoutMs / 1000} s of ${sig}; canceled job ${job ?? "(not yet submitted)"}\n`,
      )
      forceExit(128 + (signalNumber(sig) ?? 0))
    }, o.signalTimeoutMs)
  }
  if (o.signals) for (const sig of FORWARDED) io.signals.on(sig, onSignal)
  // queue_timeout: a job with no output yet after the timeout is withdrawn (refused once it started).
  let queueTimer: ReturnType<typeof setTimeout> | undefined
  let withdrawal: Promise<boolean> | undefined
  const startQueueTimer = () => {
    const ms = o.divert?.queueTimeoutMs
    if (ms === undefined || queueTimer || withdrawal || !job) return
    const id = job
    queueTimer = setTimeout(() => {
      if (!signaled) withdrawal = o.divert!.withdraw(id)
    }, ms)
  }
  const diverted = async (oc: Outcome): Promise<Diverted | undefined> => {
    // A caller that asked its command to stop does not get it started again here.
    if (!o.divert || signaled) return undefined
    if (withdrawal && (await withdrawal) && oc.status === "canceled" && oc.error === WITHDRAWN_FOR_FALLBACK)
      return new Diverted("queue_timeout", `job ${job} waited ${o.divert.queueTimeoutMs! / 1000} s without starting`)
    const reason = o.divert.outcome(oc)
    return reason && new Diverted(reason, `job ${job}: ${oc.error}`)
  }
  const startDownlink = () => {
    if (downlink || !job || (!o.stdin && !o.signals)) return
    // The coordinator refused more stdin (limits.max_stdin_bytes) and canceled the job itself: say so
    // once and stop, rather than waiting for the process to end on part of its input.
    downlink = openDownlink(api, job, o.stdin ? io.stdin : undefined, forceFail)
    for (const sig of pending.splice(0)) downlink.signal(sig)
  }
  const streams = o.paths && rewrittenStreams(o.paths.binary, o.paths.args)
  const decoder = (escape: Parameters<typeof createRootDecoder>[1] | undefined): Rewriter | undefined =>
    o.paths && escape && createRootDecoder(o.paths.roots, escape)
  const decoders = { out: decoder(streams?.stdout), err: decoder(streams?.stderr) }
  const relay = async (): Promise<number> => {
    const frames = jobFrames(api, {
      job,
      first,
      resubmit: o.resubmit,
      query: { progress: o.statusLine ? 1 : undefined },
      ack: o.ack ? ACK_CADENCE : undefined,
    })
    for await (const f of frames) {
      // Output: the job runs, it is not waiting any more.
      if (f.kind === Kind.stdout || f.kind === Kind.stderr) clearTimeout(queueTimer)
      switch (f.kind) {
        case Kind.stdout:
          o.statusLine?.clear()
          await out.write(decoders.out ? decoders.out.push(f.data) : f.data)
          if (out.broken) {
            await cancel()
            throw new OutputLostError(`the reader closed our standard output; canceled job ${job}`)
          }
          break
        case Kind.stderr:
          o.statusLine?.clear()
          await err.write(decoders.err ? decoders.err.push(f.data) : f.data)
          break
        case Kind.event: {
          const ev = frameJson(f) as { type: string; job?: Job; wait?: unknown } & Partial<JobStatusEvent>
          if (ev.type === "job" && ev.job) {
            job = ev.job.id
            if (typeof ev.wait === "string") o.notice?.(`dffmpeg: ${printableLine(ev.wait)}\n`)
            startDownlink()
            startQueueTimer()
          } else if (ev.type === "status" && typeof ev.status === "string") {
            o.statusLine?.update({ status: ev.status, workerId: ev.workerId ?? null, progress: ev.progress ?? null })
          }
          break
        }
        case Kind.exit:
          // What was held back in case it began a token, before the exit code.
          if (decoders.out) await out.write(decoders.out.end())
          if (decoders.err) await err.write(decoders.err.end())
          outcome = frameJson(f) as Outcome
          break
      }
    }
    if (!outcome) throw new UnavailableError(`the stream of job ${job ?? "?"} ended without its outcome`)
    clearTimeout(queueTimer)
    const divert = await diverted(outcome)
    if (divert) throw divert
    // A failed job is an answer, not a reason to re-attach.
    return exitCodeOf(outcome, job ?? "?")
  }
  try {
    return await Promise.race([relay(), forced])
  } finally {
    o.statusLine?.stop()
    downlink?.stop()
    clearTimeout(deadline)
    clearTimeout(queueTimer)
    if (o.signals) for (const sig of FORWARDED) io.signals.off(sig, onSignal)
  }
}

interface Downlink {
  signal(sig: string): void
  stop(): void
}

/**
 * The caller's side of the job's downlink: this process's stdin (in order, ending with an
 * end-of-input frame) and the signals it receives, in one sequence so their order is kept.
 */
function openDownlink(
  api: ApiClient,
  job: string,
  stdin: SessionIo["stdin"],
  refused: (err: TooLargeError) => void,
): Downlink {
  let stopped = false
  let seq = 0
  const up = createUploader({
    send: async (body) =>
      // Idempotent by sequence number: a batch stored before its answer was lost is not stored twice.
      void (await api.json("POST", `/api/v1/jobs/${job}/stdin`, {
        body,
        contentType: FRAMES_MEDIA_TYPE,
        idempotent: true,
      })),
    retryable,
    delay: (n) => backoff(n),
    maxBacklog: 16 * 1024 * 1024,
  })
  if (stdin)
    (async () => {
      try {
        for await (const chunk of stdin()) {
          if (stopped) return
          if (chunk.length) await up.push(encodeFrame(Kind.stdin, ++seq, chunk))
        }
      } catch (err) {
        // The upload failed for good (the coordinator's answer); reading a closed stdin is an empty input.
        if (err instanceof DffmpegError) throw err
      }
      if (!stopped) await up.push(encodeFrame(Kind.stdinEnd, ++seq))
      // A refusal of the last batches is only seen once they were sent.
      if (!stopped) await up.drain()
    })().catch((err) => {
      if (err instanceof TooLargeError && !stopped) refused(err)
    })
  return {
    signal(sig) {
      up.push(encodeFrame(Kind.signal, ++seq, new TextEncoder().encode(sig))).catch(() => {})
    },
    stop() {
      stopped = true
      up.close()
    },
  }
}
