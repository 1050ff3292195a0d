import { chownSync, closeSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DffmpegError, TrustError } from "../shared/errors.ts"
import { createUploader } from "../shared/http/uploader.ts"
import type { Logger } from "../shared/log.ts"
import type { WorkerMapper } from "../shared/paths/mapping.ts"
import { createRootEncoder, type Escape, rewrittenStreams, type Rewriter } from "../shared/paths/rewrite.ts"
import { createKeyFilter, type ArgumentPolicy } from "./policy.ts"
import { acceptEnv, spawnEnv } from "./env.ts"
import { materialise, withSafeOff } from "./contents.ts"
import { DEFAULT_ENV } from "../shared/ffargs/env.ts"
import { toolOf } from "../shared/ffargs/argv.ts"
import { Kind, RELAYED_SIGNALS } from "../shared/protocol/frames.ts"
import type { ExitReport, ProgressReport } from "../shared/protocol/schemas.ts"
import type { Assignment } from "../shared/protocol/worker.ts"
import { createProgressTracker } from "./progress.ts"
import { PROGRESS_FD, probeDuration, progressSource } from "./progress-source.ts"
import type { Profile } from "../shared/config/server-schema.ts"
import { applyProfiles, describeRewrites } from "./profiles.ts"
import { createBatchEncoder, createRetainingSender, pieceSize, type OutputPiece } from "./output-batch.ts"
import { leftInScratch, lostFilesError } from "./scratch.ts"
import { INFO_FD, readChildPid, rootBinds, sandboxSignaller, signalOfExit, type Confinement } from "./sandbox.ts"
import { backoff } from "../shared/pause.ts"

/** Tries of a start claim whose outcome is unknown (the coordinator or the link went away meanwhile). */
const START_TRIES = 4
import { JobGoneError, retryable, StaleJobError, type WorkerTransport } from "../transports/types.ts"

export interface RunnerDeps {
  transport: WorkerTransport
  log: Logger
  mapper: WorkerMapper
  /** Checks the mapped arguments before spawning; undefined when `argument_policy: false`. */
  policy?: ArgumentPolicy
  /** Binary name → executable path, only those this worker may run. */
  binaries: Map<string, string>
  /** How jobs are started: setpriv (parent-death kill, run_as) and the bubblewrap sandbox. */
  confinement: Confinement
  /**
   * Stop schedule: `q` at once (SIGTERM at once when the process has no stdin pipe), SIGTERM after
   * `termAfterMs`, SIGKILL after `killAfterMs`.
   */
  termAfterMs: number
  killAfterMs: number
  /** The caller's environment variables a job may set (`allowed_env`); default: ffmpeg's own (DEFAULT_ENV). */
  allowedEnv?: readonly string[]
  /** Argument profiles (`profiles`), applied after path mapping and before the policy. */
  profiles?: readonly Profile[]
  /**
   * Ms a small batch of output waits on an idle line before it is uploaded (`output_linger_ms`), so a
   * process's last output and its exit go in one request (default 0: at once).
   */
  outputLingerMs?: number
}

export interface Run {
  id: string
  epoch: number
  done: Promise<void>
  /**
   * Stops the process, the exit is reported and the job ends canceled: gracefully (q, SIGTERM, SIGKILL),
   * or with `kill` by SIGKILL at once (its caller vanished: like a local ffmpeg whose parent died, it
   * must not finalise anything).
   */
  cancel(opts?: { kill?: boolean }): void
  /**
   * Stops the process gracefully and reports the job as given up (forced shutdown, lost contact): the
   * coordinator re-queues it when it may, and fails it with `reason` otherwise.
   */
  abandon(reason: string): void
  /** The job is no longer ours (stale epoch): SIGKILL now, report nothing. */
  fence(): void
  /**
   * Follows the job's downlink (signals, cancel; stdin too when the job relays it): at once for a job
   * relaying stdin, otherwise when the coordinator's poll says there is something on it. Once its process
   * is spawned if it is not yet; a second call does nothing.
   */
  openDownlink(): void
  /** Whether `openDownlink` was called (or the job relays stdin): the poll need not name it again. */
  readonly following: boolean
  /** Whether its start claim succeeded: until then the poll need not offer the assignment again. */
  readonly started: boolean
}

const dec = new TextDecoder()
/** Longest a finished job waits for the coordinator to end its downlink before cutting it. */
const DOWNLINK_END_MS = 1000
/**
 * Least ms between two uploads that carry only progress from the worker's own pipe (ffmpeg writes a
 * block every 0.5 s), and before the first: a quiet job costs the coordinator one request a second, its
 * last block goes with its exit.
 */
const PROGRESS_UPLOAD_MS = 1000
/** Longest an exited job's report waits for the end of its progress pipe and for its duration probe. */
const PROGRESS_END_MS = 1000

/** Whether a cancel frame (`{reason, kill?}`) asks for SIGKILL at once rather than a graceful stop. */
function cancelKills(data: Uint8Array): boolean {
  try {
    return (JSON.parse(dec.decode(data)) as { kill?: unknown }).kill === true
  } catch {
    return false
  }
}

/** Does the command read its input from stdin (`-i -`, `-i pipe:`, `-i pipe:0`, `-i /dev/stdin`)? */
function readsStdin(args: string[]): boolean {
  return args.some(
    (a, i) => i > 0 && args[i - 1] === "-i" && (a === "-" || a === "pipe:" || a === "pipe:0" || a === "/dev/stdin"),
  )
}

/**
 * Runs one assignment: accept (fencing on the epoch), translate paths, spawn the binary with an argv
 * array (never a shell), relay stdout/stderr as raw bytes, follow the job's downlink (caller stdin,
 * signals, cancel), report the exit.
 */
export function startRun(a: Assignment, deps: RunnerDeps): Run {
  const log = deps.log
  let proc: ReturnType<typeof Bun.spawn> | undefined
  let mode: "run" | "cancel" | "abandon" | "fenced" = "run"
  let abandonReason = ""
  let killNow = false
  let stdinOpen = false
  const timers: ReturnType<typeof setTimeout>[] = []
  const exited = () => !proc || proc.exitCode !== null || proc.signalCode !== null

  let intoSandbox: ((sig: NodeJS.Signals | number) => Promise<void>) | undefined
  const signal = (sig: NodeJS.Signals | number) => {
    try {
      if (exited()) return
      if (intoSandbox) void intoSandbox(sig)
      else proc?.kill(sig)
    } catch (err) {
      log.debug("kill failed", { job: a.id }, err as Error)
    }
  }

  /**
   * q on stdin (ffmpeg's own "stop and finalize"), then SIGTERM, then SIGKILL. Without a stdin pipe
   * SIGTERM, ffmpeg's other graceful stop, goes at once.
   */
  const gracefulStop = () => {
    if (!proc) return
    let asked = false
    if (stdinOpen) {
      try {
        const sink = proc.stdin as import("bun").FileSink
        sink.write("q")
        void Promise.resolve(sink.flush()).catch(() => {})
        asked = true
      } catch {
        // stdin already closed: the signals below do it
      }
    }
    if (!asked) signal("SIGTERM")
    else timers.push(setTimeout(() => signal("SIGTERM"), deps.termAfterMs))
    timers.push(setTimeout(() => signal("SIGKILL"), deps.killAfterMs))
  }

  const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v))
  // Kept until durable: an attached job's stdout may live only in the coordinator's memory until its caller took it.
  // Signed by frame digests once the coordinator said it takes them: it then seals the caller's stream
  // with the digests it computed checking the upload, instead of hashing every byte again.
  let digests = false
  const sender = createRetainingSender(async (body) => {
    const answer = await deps.transport.upload(a.id, a.epoch, body, { retain: true, digests })
    digests ||= answer.digests === true
    return answer
  })
  const uploader = createUploader<OutputPiece>({
    send: (body) => sender.send(body),
    retryable,
    delay: (n) => backoff(n),
    size: pieceSize,
    encode: createBatchEncoder(),
    linger: deps.outputLingerMs,
  })

  /** Reports the exit, with the last progress report when there is a new one (in the same request). */
  const report = async (exit: ExitReport, progress?: ProgressReport) => {
    if (mode === "fenced") return
    if (mode === "abandon") exit = { ...exit, abandoned: abandonReason }
    await uploader.push({ kind: Kind.exit, data: json(exit), progress: progress && json(progress) })
    await uploader.drain()
  }

  const scratchLeft = (dir: string) => {
    try {
      return leftInScratch(dir)
    } catch (err) {
      log.warn("cannot list the job's scratch directory", { job: a.id, reason: (err as Error).message })
      return []
    }
  }

  /**
   * Path mapping, then the argument profiles: before the start claim, so the claim can tell the timeline
   * what the profiles changed. A refusal is reported once the job is ours (below).
   */
  const prepare = (): { mapped: { args: string[]; cwd: string | null }; note?: string } | { refused: Error } => {
    try {
      const mapped = deps.mapper.mapArgs(a.args, a.paths, a.cwd, toolOf(a.binary))
      if (!deps.profiles?.length) return { mapped }
      const profiled = applyProfiles(a.binary, mapped.args, deps.profiles)
      const note = describeRewrites(profiled.rewrites)
      if (note) log.info("argument profile applied", { job: a.id, epoch: a.epoch, rewrites: note.slice(9) })
      return { mapped: { ...mapped, args: profiled.args }, note }
    } catch (err) {
      return { refused: err as Error }
    }
  }

  const downlink = new AbortController()
  // Ends the worker's own progress pipe reader and duration probe (at the job's end, whatever way it ends).
  const progressEnd = new AbortController()
  // A job relaying stdin needs its downlink from the start; any other only once there is something on it.
  let following = a.stdin
  // Set once the process is spawned: what `openDownlink` starts, and the downlink's loop once started.
  let follow: (() => void) | undefined
  let followed: Promise<void> | undefined
  let started = false
  const done = (async () => {
    const prepared = prepare()
    try {
      // A claim whose answer was lost (a coordinator killed after it committed) is claimed again: the
      // coordinator takes a repeat of this worker's claim at this epoch as the same claim. A few tries
      // within a heartbeat's reach, then the assignment is left to the janitor like any unanswered one.
      for (let attempt = 0; ; attempt++) {
        try {
          await deps.transport.start(a.id, a.epoch, "note" in prepared ? prepared.note : undefined)
          break
        } catch (err) {
          if (!retryable(err) || attempt >= START_TRIES - 1) throw err
          await Bun.sleep(backoff(attempt, 2000))
        }
      }
      started = true
    } catch (err) {
      // Not ours any more (reassigned, canceled): never run it.
      log.warn("job not started", { job: a.id, epoch: a.epoch, reason: (err as Error).message })
      return
    }
    let scratch: string | undefined
    let files: string | undefined
    let copyRoots: { name: string; forms: string[] }[] = []
    try {
      if (mode !== "run") return await report({ code: null, signal: null, error: "stopped before it started" })
      const bin = deps.binaries.get(a.binary)
      if (!bin)
        return await report({
          code: null,
          signal: null,
          error: `worker cannot run ${a.binary}: it is not in its binaries`,
        })
      let mapped: { args: string[]; cwd: string | null }
      let binds: ReturnType<typeof rootBinds>
      let callerEnv: Record<string, string>
      try {
        if ("refused" in prepared) throw prepared.refused
        mapped = prepared.mapped
        const accepted = acceptEnv(a, deps.allowedEnv ?? DEFAULT_ENV, deps.mapper)
        if (accepted.dropped.length)
          log.warn("caller environment dropped: not in allowed_env", { job: a.id, names: accepted.dropped.join(",") })
        callerEnv = accepted.env
        // Concat lists and filter scripts the job carries, written with our paths (before the policy reads them).
        const copies = materialise(a, mapped.args, deps.mapper)
        files = copies.dir
        copyRoots = copies.roots
        mapped = { ...mapped, args: copies.args }
        // The sandbox binds the roots as they resolved when the worker started, and only while they still do.
        binds = rootBinds(deps.mapper.roots(a.paths))
        if (deps.policy) {
          const box = deps.confinement
          const confine = (command: string[], cwd: string) => ({
            argv: box.argv({ roots: binds, cwd }, command),
            env: box.env(),
            infoFd: box.mode === "bwrap",
            started: (pid: number) => log.info("attachment names probe started", { job: a.id, epoch: a.epoch, pid }),
          })
          const job = {
            binary: a.binary,
            original: a.args,
            args: mapped.args,
            cwd: mapped.cwd,
            roots: deps.mapper.roots(a.paths),
            isPassthrough: deps.mapper.isPassthrough,
            confine,
            copies: copies.at,
          }
          mapped = { ...mapped, args: (await deps.policy.check(job)).args }
        }
        mapped = { ...mapped, args: withSafeOff(mapped.args, copies.lists) }
      } catch (err) {
        return await report({ code: null, signal: null, error: `worker refused the job: ${(err as Error).message}` })
      }
      const box = deps.confinement
      if (mapped.cwd === null) {
        // Private to the job (0700), owned by the user it runs as.
        scratch = mkdtempSync(join(tmpdir(), "dffmpeg-job-"))
        if (box.owner) chownSync(scratch, box.owner.uid, box.owner.gid)
      }
      const cwd = mapped.cwd ?? scratch!
      const sandboxed = box.mode === "bwrap"
      const env = spawnEnv(box.env(), callerEnv)
      // The worker's own -progress pipe and duration probe (after the policy: they are the worker's, not the caller's).
      const source = progressSource(a.binary, mapped.args, cwd, env ?? process.env)
      const sandbox = { roots: binds, scratch, files, cwd }
      const argv = box.argv(sandbox, [bin, ...source.args])
      // Without caller stdin the process gets /dev/null, exactly as a local call with none: EOF at once
      // (an overwrite prompt answers itself "not overwriting"); a cancel then stops it with SIGTERM.
      stdinOpen = a.stdin
      try {
        proc = Bun.spawn(argv, {
          cwd,
          env,
          stdio: [
            stdinOpen ? "pipe" : "ignore",
            "pipe",
            "pipe",
            // fd 3: bwrap's info pipe; fd 4 (PROGRESS_FD): the worker's own -progress pipe.
            ...(sandboxed || source.own ? ([sandboxed ? "pipe" : "ignore"] as const) : []),
            ...(source.own ? (["pipe"] as const) : []),
          ],
        })
        if (sandboxed) intoSandbox = sandboxSignaller(proc, readChildPid(proc.stdio[INFO_FD] as number), log)
      } catch (err) {
        return await report({
          code: null,
          signal: null,
          error: `cannot start ${a.binary} on the worker: ${(err as Error).message}`,
        })
      }
      log.info("job started", { job: a.id, epoch: a.epoch, pid: proc.pid })
      const child = proc
      // Reads copies of the output to report how far the job is; the bytes sent are the bytes read.
      const progress = createProgressTracker(a.binary, mapped.args, Date.now, source.own)
      const ffprobe = deps.binaries.get(a.binary.replace(/ffmpeg/i, "ffprobe")) ?? deps.binaries.get("ffprobe")
      const probed =
        progress && source.probe && ffprobe
          ? probeDuration(box, ffprobe, source.probe, sandbox, progressEnd.signal)
              .then((ms) => progress.probed(ms))
              .catch((err) => log.debug("duration probe failed", { job: a.id, reason: (err as Error).message }))
          : undefined
      // The caller reads its own paths: our roots leave as `$Var` tokens (docs/protocol.md, "Paths in the output").
      // Only for a caller that decodes them (an older one would show `$Var`): the job says so.
      const streams = a.pathTokens ? rewrittenStreams(a.binary, a.args) : undefined
      const roots = [
        ...deps.mapper.roots(a.paths).map((r) => ({ name: r.name, forms: [r.root, r.real] })),
        ...copyRoots,
      ]
      const encoder = (escape: Escape | undefined) => escape && createRootEncoder(roots, escape)
      const rewriters: Record<number, Rewriter | undefined> = {
        [Kind.stdout]: encoder(streams?.stdout),
        [Kind.stderr]: encoder(streams?.stderr),
      }
      const deliver = (piece: OutputPiece) =>
        uploader.push(piece).catch((err) => {
          // The coordinator took the job away or the upload failed for good: stop the process.
          if (mode === "run")
            log.warn("output upload failed; stopping the job", { job: a.id, reason: (err as Error).message })
          if (err instanceof StaleJobError || err instanceof JobGoneError) run.fence()
          else signal("SIGKILL")
        })
      // When progress last went up (a job's first second counts: a short job's goes with its exit alone),
      // whether any did, and whether the private pipe has a newer report not sent yet.
      let progressAt = Date.now()
      let progressSent = false
      let progressOwed = false
      const sendProgress = async () => {
        const report = progress?.take()
        progressOwed = false
        if (!report) return
        progressAt = Date.now()
        progressSent = true
        await deliver({ kind: Kind.stderr, data: new Uint8Array(0), progress: json(report) })
      }
      const pump = async (stream: ReadableStream<Uint8Array>, kind: typeof Kind.stdout | typeof Kind.stderr) => {
        const rewriter = rewriters[kind]
        const send = async (raw: Uint8Array, bytes: Uint8Array) => {
          if (!bytes.length && !raw.length) return
          const piece: OutputPiece = { kind, data: bytes }
          if (progress && raw.length) {
            progress.feed(kind === Kind.stdout ? "stdout" : "stderr", raw)
            const report = progress.take()
            // Same request as the bytes that carried it: progress never costs an extra round trip.
            if (report) {
              piece.progress = json(report)
              progressAt = Date.now()
              progressSent = true
              progressOwed = false
            }
          }
          if (!piece.data.length && !piece.progress) return
          await deliver(piece)
        }
        for await (const chunk of stream) {
          if (!chunk.length) continue
          await send(chunk, rewriter ? rewriter.push(chunk) : chunk)
        }
        // The bytes held back in case they began a root.
        if (rewriter) await send(new Uint8Array(0), rewriter.end())
      }
      /**
       * Drains the worker's own -progress pipe to its end (ffmpeg must never block on it): each block goes
       * up on its own, at most every PROGRESS_UPLOAD_MS unless stderr carried it meanwhile.
       */
      const ownProgress = async (fd: number, stop: AbortSignal) => {
        const reader = Bun.file(fd).stream().getReader()
        const cut = () => void reader.cancel().catch(() => {})
        stop.addEventListener("abort", cut, { once: true })
        try {
          for (;;) {
            const { done, value } = await reader.read()
            if (done) break
            progress?.feed("private", value)
            progressOwed = true
            if (Date.now() - progressAt >= PROGRESS_UPLOAD_MS) await sendProgress()
          }
        } catch (err) {
          log.debug("progress pipe ended", { job: a.id, reason: (err as Error).message })
        } finally {
          stop.removeEventListener("abort", cut)
          try {
            closeSync(fd)
          } catch {
            // already closed
          }
        }
      }
      const ownPiped = source.own ? ownProgress(proc.stdio[PROGRESS_FD] as number, progressEnd.signal) : undefined
      follow = () =>
        void (followed = followDownlink(a, child, deps, downlink.signal, {
          stdinEnded: () => (stdinOpen = false),
          signal: (sig) => signal(sig),
          cancel: (kill) => run.cancel({ kill }),
          refused: (reason) => run.abandon(reason),
          exited,
        }))
      if (following) follow()
      if (mode !== "run" && killNow) signal("SIGKILL")
      else if (mode !== "run") gracefulStop()
      await Promise.all([
        pump(child.stdout as ReadableStream<Uint8Array>, Kind.stdout),
        pump(child.stderr as ReadableStream<Uint8Array>, Kind.stderr),
        child.exited,
      ])
      for (const t of timers) clearTimeout(t)
      // The pipe ends with the process; a leftover holder of it (or a slow probe) only costs PROGRESS_END_MS.
      // The probe is waited for only when there is progress it would complete (its length: 100 % at the end).
      const ended = Bun.sleep(PROGRESS_END_MS)
      await Promise.race([ownPiped, ended])
      if (progressSent || progressOwed) await Promise.race([probed, ended])
      progressEnd.abort()
      await ownPiped
      // The last block (progress=end), and the length the probe found, go with the exit.
      const last = progressOwed || probed ? progress?.take() : undefined
      // In the sandbox a death by signal N reaches us as bwrap's exit 128+N: reported as the signal, as before.
      const sig = child.signalCode !== null ? String(child.signalCode) : sandboxed ? signalOfExit(child.exitCode) : null
      let exit: ExitReport = { code: sig ? null : child.exitCode, signal: sig }
      const lost = scratch ? scratchLeft(scratch) : []
      // Written where the caller cannot see it and deleted below: a failure, never an exit 0 with the file gone.
      if (lost.length) {
        log.warn("job wrote into its scratch working directory", { job: a.id, files: lost.length })
        exit = { ...exit, code: sig ? null : exit.code || 1, error: lostFilesError(a.binary, lost) }
      }
      log.info("job exited", {
        job: a.id,
        code: exit.code ?? undefined,
        signal: exit.signal ?? undefined,
        stopped: mode === "run" ? undefined : mode,
      })
      await report(exit, last)
      // The coordinator ends the downlink once the end committed: waiting for that (briefly) rather
      // than aborting it keeps its connection in the pool for the next job's requests.
      if (followed) await Promise.race([followed, Bun.sleep(DOWNLINK_END_MS)])
    } catch (err) {
      if (err instanceof StaleJobError || err instanceof JobGoneError)
        log.warn("job taken away", { job: a.id, reason: err.message })
      else log.error("job failed on the worker", { job: a.id }, err as Error)
      signal("SIGKILL")
    } finally {
      downlink.abort()
      progressEnd.abort()
      for (const t of timers) clearTimeout(t)
      uploader.close()
      if (scratch) rmSync(scratch, { recursive: true, force: true })
      if (files) rmSync(files, { recursive: true, force: true })
    }
  })()

  const run: Run = {
    id: a.id,
    epoch: a.epoch,
    done,
    cancel(opts) {
      if (mode !== "run") return
      mode = "cancel"
      log.info("canceling job", { job: a.id, kill: opts?.kill || undefined })
      killNow = opts?.kill === true
      if (killNow) signal("SIGKILL")
      else gracefulStop()
    },
    abandon(reason) {
      if (mode === "fenced" || mode === "abandon") return
      const was = mode
      mode = "abandon"
      abandonReason = reason
      if (was === "run") gracefulStop()
    },
    fence() {
      if (mode === "fenced") return
      mode = "fenced"
      uploader.close()
      signal("SIGKILL")
    },
    openDownlink() {
      if (following) return
      following = true
      follow?.()
    },
    get following() {
      return following
    },
    get started() {
      return started
    },
  }
  return run
}

/**
 * Follows the job's downlink until the job ends: writes the caller's stdin into the child (ending it
 * at end-of-input), delivers signals and cancel. Resumes after the last frame seen if the stream drops.
 * Once `on.exited()`, frames reach nothing (the process is gone: its pid may be another's) and a
 * dropped stream is not resumed; the loop ends when the coordinator ends the stream.
 */
function followDownlink(
  a: Assignment,
  child: { stdin: unknown },
  deps: RunnerDeps,
  stop: AbortSignal,
  on: {
    stdinEnded(): void
    signal(sig: NodeJS.Signals): void
    cancel(kill: boolean): void
    refused(reason: string): void
    exited(): boolean
  },
): Promise<void> {
  const sink = a.stdin ? (child.stdin as import("bun").FileSink) : undefined
  // ffmpeg takes the caller's stdin as keys when no input reads it: filter commands are dropped.
  const keys = deps.policy && !readsStdin(a.args) ? createKeyFilter() : undefined
  return (async () => {
    let after = 0
    let attempt = 0
    while (!stop.aborted) {
      try {
        for await (const f of deps.transport.input(a.id, a.epoch, after, stop)) {
          attempt = 0
          if (on.exited()) continue
          if (f.kind === Kind.stdin && sink) {
            sink.write(keys ? keys(f.data) : f.data)
            await sink.flush()
          } else if (f.kind === Kind.stdinEnd && sink) {
            on.stdinEnded()
            await sink.end()
          } else if (f.kind === Kind.signal) {
            const sig = dec.decode(f.data)
            if (RELAYED_SIGNALS.has(sig)) {
              deps.log.info("forwarding signal", { job: a.id, signal: sig })
              on.signal(sig as NodeJS.Signals)
            }
          } else if (f.kind === Kind.cancel) on.cancel(cancelKills(f.data))
          if (f.kind !== Kind.cancel && f.kind !== Kind.ping) after = Math.max(after, f.seq)
        }
        return
      } catch (err) {
        if (stop.aborted || on.exited()) return
        if (err instanceof TrustError) {
          // Forged stdin, signals or cancels must not reach the process: stop the job instead.
          deps.log.error("job downlink not trusted; stopping the job", { job: a.id, reason: err.message })
          return on.refused(`worker stopped the job: ${err.message}`)
        }
        if (err instanceof DffmpegError && !retryable(err)) {
          deps.log.warn("job downlink ended: the coordinator refused it", { job: a.id, reason: err.message })
          return
        }
        deps.log.debug("job downlink interrupted", { job: a.id, reason: (err as Error).message })
        await Bun.sleep(backoff(attempt++))
      }
    }
  })().catch((err) => deps.log.debug("job downlink ended", { job: a.id, reason: (err as Error).message }))
}
