import { fstatSync, statSync } from "node:fs"
import { coordinatorUrl, loadConfig, resolveCa, resolveKey, type YamlExplainer } from "../shared/config/load.ts"
import { ClientConfig } from "../shared/config/schema.ts"
import { DffmpegError, InvalidError, OutputLostError, TooLargeError, UnavailableError } from "../shared/errors.ts"
import { toolOf } from "../shared/ffargs/argv.ts"
import { DEFAULT_ENV, mapReport, pickEnv, reportFiles } from "../shared/ffargs/env.ts"
import { backoff, createApiClient, readJson, retryable, type ApiClient } from "../shared/http/client.ts"
import { createUploader } from "../shared/http/uploader.ts"
import { callerRoots, createClientMapper } from "../shared/paths/mapping.ts"
import { createRootDecoder, rewrittenStreams, type Rewriter } from "../shared/paths/rewrite.ts"
import { FRAMES_MEDIA_TYPE, Kind, encodeFrame, frameJson } from "../shared/protocol/frames.ts"
import type { Job, Outcome } from "../shared/protocol/schemas.ts"
import { jobFiles } from "./contents.ts"
import { exitCodeOf, signalNumber } from "./outcome.ts"
import { createSink, type Writable } from "./output.ts"
import { createStatusLine, type JobStatusEvent, type StatusLine } from "./status-line.ts"
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
    Partial<Pick<ClientConfig, "forward_env">>
  api: ApiClient
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
  /** An already opened client instead of the one `configPath` names. */
  client?: Client
  io?: SessionIo
}

export async function openClient(configPath?: string, warn?: (line: string) => void, explainYaml?: YamlExplainer) {
  const { config, base, warnings } = await loadConfig("client", ClientConfig, configPath, {}, explainYaml)
  for (const w of warnings) warn?.(w)
  const api = createApiClient({
    url: coordinatorUrl(config.coordinator),
    ca: resolveCa(config.coordinator, base),
    client: config.client_id,
    key: resolveKey(config, base),
  })
  return { config, api }
}

/** The client to use and the job's arguments with this machine's paths turned into path variables. */
async function prepare(o: AttachedOptions) {
  const { config, api } = o.client ?? (await openClient(o.configPath, o.warn, o.explainYaml))
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
  return { config, api, job, roots: callerRoots(config.paths, o.args) }
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
  const { config, api, job, roots } = await prepare(o)
  const io = o.io ?? processIo()
  const stdin = o.stdin !== false && io.stdin !== undefined
  const res = await api.request("POST", "/api/v1/jobs", {
    // `digests`: the stream sealed by frame digests, which the coordinator has for what it relays (STREAMED_DIGESTS).
    query: { attach: 1, digests: 1, progress: o.status ? 1 : undefined },
    json: { ...job, stdin, attached: true },
  })
  if (!res.ok || !res.body) await readJson(res)
  return follow(api, res.body!, {
    stdin,
    signals: true,
    signalTimeoutMs: config.signal_timeout_seconds * 1000,
    statusLine: statusLineFor(o.status),
    io,
    paths: { roots, binary: job.binary, args: job.args },
    ack: true,
  })
}

/** Submits a job without following it; returns it (for `client submit --detach`). */
export async function submitDetached(o: AttachedOptions & { retries: number }): Promise<Job> {
  const { api, job } = await prepare(o)
  return api.json<Job>("POST", "/api/v1/jobs", { json: { ...job, stdin: false, attached: false, retries: o.retries } })
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

const statusLineFor = (on?: boolean) => (on ? createStatusLine((s) => void process.stderr.write(s)) : undefined)

export interface FollowOptions {
  /** Forward this process's stdin to the job. */
  stdin: boolean
  /** Forward SIGINT/SIGTERM/SIGHUP to the remote process (the proxy); cancel if it does not end in time. */
  signals: boolean
  signalTimeoutMs: number
  statusLine?: StatusLine
  /** Default: this process (`processIo`). */
  io?: SessionIo
  /**
   * The job's binary and (mapped) arguments and this caller's root of each path variable: the worker's
   * `$Var` tokens in stderr (and ffprobe's stdout) are written as these roots. Without it bytes pass as sent.
   */
  paths?: { roots: Record<string, string>; binary: string; args: string[] }
  /** Acknowledge consumed output: this is the job's attached caller (its submitter), not a later viewer. */
  ack?: boolean
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
    if (job) await api.json("POST", `/api/v1/jobs/${job}/cancel`, { timeoutMs: 3000 }).catch(() => {})
  }
  const onSignal = (sig: (typeof FORWARDED)[number]) => {
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
      query: { progress: o.statusLine ? 1 : undefined },
      ack: o.ack ? ACK_CADENCE : undefined,
    })
    for await (const f of frames) {
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
          const ev = frameJson(f) as { type: string; job?: Job } & Partial<JobStatusEvent>
          if (ev.type === "job" && ev.job) {
            job = ev.job.id
            startDownlink()
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
    // A failed job is an answer, not a reason to re-attach.
    return exitCodeOf(outcome, job ?? "?")
  }
  try {
    return await Promise.race([relay(), forced])
  } finally {
    o.statusLine?.stop()
    downlink?.stop()
    clearTimeout(deadline)
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
      void (await api.json("POST", `/api/v1/jobs/${job}/stdin`, { body, contentType: FRAMES_MEDIA_TYPE })),
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
