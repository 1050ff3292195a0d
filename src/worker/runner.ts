import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConflictError, DffmpegError, NotFoundError } from "../shared/errors.ts"
import { backoff, retryable } from "../shared/http/client.ts"
import { createUploader } from "../shared/http/uploader.ts"
import type { Logger } from "../shared/log.ts"
import type { WorkerMapper } from "../shared/paths/mapping.ts"
import { Kind, encodeFrame, encodeJsonFrame } from "../shared/protocol/frames.ts"
import type { Assignment, ExitReport } from "../shared/protocol/schemas.ts"
import type { WorkerTransport } from "./transport/types.ts"

export interface RunnerDeps {
  transport: WorkerTransport
  log: Logger
  mapper: WorkerMapper
  /** Binary name → executable path, only those this worker may run. */
  binaries: Map<string, string>
  /** `setpriv` path: children get SIGKILL when the worker dies (Linux); undefined elsewhere. */
  setpriv?: string
}

export interface Run {
  id: string
  epoch: number
  done: Promise<void>
  /** Kills the process now (second shutdown signal, or the job was taken away). */
  kill(signal?: NodeJS.Signals): void
}

/**
 * Runs one assignment: accept (fencing on the epoch), translate paths, spawn the binary with an argv
 * array (never a shell), relay stdout/stderr as raw bytes, feed stdin from the caller, report the exit.
 */
export function startRun(a: Assignment, deps: RunnerDeps): Run {
  const log = deps.log
  let proc: ReturnType<typeof Bun.spawn> | undefined
  let killed = false
  const kill = (signal: NodeJS.Signals = "SIGKILL") => {
    killed = true
    try {
      proc?.kill(signal)
    } catch (err) {
      log.debug("kill failed", { job: a.id }, err as Error)
    }
  }

  let seq = 0
  const uploader = createUploader({
    send: (body) => deps.transport.upload(a.id, a.epoch, body),
    retryable,
    delay: (n) => backoff(n),
  })

  const report = async (exit: ExitReport) => {
    await uploader.push(encodeJsonFrame(Kind.exit, 0, exit))
    await uploader.drain()
  }

  const done = (async () => {
    try {
      await deps.transport.start(a.id, a.epoch)
    } catch (err) {
      // Not ours any more (reassigned, canceled): never run it.
      log.warn("job not started", { job: a.id, epoch: a.epoch, reason: (err as Error).message })
      return
    }
    let scratch: string | undefined
    try {
      const bin = deps.binaries.get(a.binary)
      if (!bin) return await report({ code: null, signal: null, error: `worker cannot run ${a.binary}: it is not in its binaries` })
      let mapped: { args: string[]; cwd: string | null }
      try {
        mapped = deps.mapper.mapArgs(a.args, a.paths, a.cwd)
      } catch (err) {
        return await report({ code: null, signal: null, error: `worker refused the job: ${(err as Error).message}` })
      }
      const cwd = mapped.cwd ?? (scratch = mkdtempSync(join(tmpdir(), "dffmpeg-job-")))
      const argv = [bin, ...mapped.args]
      try {
        proc = Bun.spawn(deps.setpriv ? [deps.setpriv, "--pdeathsig", "KILL", "--", ...argv] : argv, { cwd, stdin: a.stdin ? "pipe" : "ignore", stdout: "pipe", stderr: "pipe" })
      } catch (err) {
        return await report({ code: null, signal: null, error: `cannot start ${a.binary} on the worker: ${(err as Error).message}` })
      }
      log.info("job started", { job: a.id, epoch: a.epoch, pid: proc.pid })
      const child = proc
      const pump = async (stream: ReadableStream<Uint8Array>, kind: number) => {
        for await (const chunk of stream) {
          if (!chunk.length) continue
          await uploader.push(encodeFrame(kind, ++seq, chunk)).catch((err) => {
            // The coordinator took the job away (409) or the upload failed for good: stop the process.
            if (!killed) log.warn("output upload failed; stopping the job", { job: a.id, reason: (err as Error).message })
            kill()
          })
        }
      }
      const stdinDone = a.stdin ? feedStdin(a, child, deps, () => child.exitCode !== null || child.signalCode !== null) : new AbortController()
      await Promise.all([pump(child.stdout as ReadableStream<Uint8Array>, Kind.stdout), pump(child.stderr as ReadableStream<Uint8Array>, Kind.stderr), child.exited])
      stdinDone.abort()
      const signal = child.signalCode === null ? null : String(child.signalCode)
      const exit: ExitReport = { code: signal ? null : child.exitCode, signal }
      log.info("job exited", { job: a.id, code: exit.code ?? undefined, signal: exit.signal ?? undefined })
      await report(exit)
    } catch (err) {
      if (err instanceof ConflictError || err instanceof NotFoundError) log.warn("job taken away", { job: a.id, reason: err.message })
      else log.error("job failed on the worker", { job: a.id }, err as Error)
      kill()
    } finally {
      uploader.close()
      if (scratch) rmSync(scratch, { recursive: true, force: true })
    }
  })()

  return { id: a.id, epoch: a.epoch, done, kill }
}

/** Streams the caller's stdin into the child, resuming after the last byte written if the stream drops. */
function feedStdin(a: Assignment, child: { stdin: unknown }, deps: RunnerDeps, exited: () => boolean): AbortController {
  const ac = new AbortController()
  const sink = child.stdin as import("bun").FileSink
  ;(async () => {
    let after = 0
    let attempt = 0
    while (!ac.signal.aborted && !exited()) {
      try {
        for await (const f of deps.transport.input(a.id, a.epoch, after, ac.signal)) {
          attempt = 0
          if (f.kind === Kind.stdin) {
            sink.write(f.data)
            await sink.flush()
            after = f.seq
          } else if (f.kind === Kind.stdinEnd) {
            await sink.end()
            return
          }
        }
        return
      } catch (err) {
        if (ac.signal.aborted || exited()) return
        if (err instanceof DffmpegError && !retryable(err)) return
        deps.log.debug("stdin stream interrupted", { job: a.id, reason: (err as Error).message })
        await Bun.sleep(backoff(attempt++))
      }
    }
  })().catch((err) => deps.log.debug("stdin feed ended", { job: a.id, reason: (err as Error).message }))
  return ac
}
