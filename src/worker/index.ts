import { accessSync, constants, statSync } from "node:fs"
import { isAbsolute } from "node:path"
import { coordinatorUrl, resolveKey } from "../shared/config/load.ts"
import type { WorkerConfig } from "../shared/config/schema.ts"
import { AuthError, DffmpegError } from "../shared/errors.ts"
import { backoff, createApiClient, retryable } from "../shared/http/client.ts"
import type { Logger } from "../shared/log.ts"
import { createWorkerMapper } from "../shared/paths/mapping.ts"
import type { Assignment, WorkerRegistration } from "../shared/protocol/schemas.ts"
import { VERSION } from "../shared/version.ts"
import { startRun, type Run } from "./runner.ts"
import { httpTransport } from "./transport/http.ts"
import type { WorkerTransport } from "./transport/types.ts"

export interface WorkerService {
  /** First call: stop taking jobs and wait for running ones. `force`: kill running jobs too. */
  stop(force?: boolean): Promise<void>
  readonly done: Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** Executable paths of the configured binaries that exist; the others are logged and not advertised. */
function resolveBinaries(cfg: WorkerConfig, log: Logger): Map<string, string> {
  const out = new Map<string, string>()
  for (const [name, path] of Object.entries(cfg.binaries)) {
    const exe = isAbsolute(path) ? path : Bun.which(path)
    try {
      if (!exe) throw new Error("not found on PATH")
      accessSync(exe, constants.X_OK)
      out.set(name, exe)
    } catch (err) {
      log.warn("binary not available; not advertised", { binary: name, path, reason: (err as Error).message })
    }
  }
  return out
}

/** Path variables whose directory exists now; a missing one is not advertised. */
function healthyPaths(cfg: WorkerConfig, log: Logger): string[] {
  const out: string[] = []
  for (const [name, dir] of Object.entries(cfg.paths)) {
    try {
      if (!statSync(dir).isDirectory()) throw new Error("not a directory")
      out.push(name)
    } catch (err) {
      log.warn("path variable unavailable; not advertised", { variable: name, path: dir, reason: (err as Error).message })
    }
  }
  return out.sort()
}

/**
 * Registers with the coordinator, then keeps one long poll open for assignments and runs each in its
 * own process. Coordinator outages are retried with jittered exponential backoff; an authentication
 * failure at start-up is fatal (it will not fix itself).
 */
export async function startWorker(cfg: WorkerConfig, opts: { log: Logger; base: string; transport?: WorkerTransport }): Promise<WorkerService> {
  const log = opts.log.withTag("worker")
  const transport = opts.transport ?? httpTransport(createApiClient({ url: coordinatorUrl(cfg.coordinator), client: cfg.client_id, key: resolveKey(cfg, opts.base) }))
  const binaries = resolveBinaries(cfg, log)
  const mapper = createWorkerMapper({ paths: cfg.paths, passthrough: cfg.passthrough_paths })
  const setpriv = process.platform === "linux" ? (Bun.which("setpriv") ?? undefined) : undefined
  if (process.platform === "linux" && !setpriv) log.warn("setpriv not found: ffmpeg processes may outlive a killed worker (install util-linux)")
  const runs = new Map<string, Run>()
  const stopping = new AbortController()
  let pollWait = 25

  const registration = (): WorkerRegistration => ({
    binaries: [...binaries.keys()].sort(),
    paths: healthyPaths(cfg, log),
    maxJobs: cfg.max_jobs,
    version: VERSION,
    capabilities: {},
  })

  const register = async () => {
    pollWait = (await transport.register(registration())).pollWaitSeconds
  }

  // First registration: fail fast on a wrong key, retry while the coordinator is down.
  for (let attempt = 0; ; attempt++) {
    try {
      await register()
      break
    } catch (err) {
      if (err instanceof AuthError || (err instanceof DffmpegError && !retryable(err))) throw err
      if (attempt === 0) log.warn("coordinator unavailable; retrying", { url: transport.url, reason: (err as Error).message })
      await Bun.sleep(backoff(attempt))
    }
  }
  log.info("worker registered", { id: cfg.client_id, url: transport.url, max_jobs: cfg.max_jobs, binaries: [...binaries.keys()].join(",") })

  const launch = (a: Assignment) => {
    const key = `${a.id}:${a.epoch}`
    if (runs.has(key)) return
    const run = startRun(a, { transport, log: log.withTag("runner"), mapper, binaries, setpriv })
    runs.set(key, run)
    run.done.finally(() => runs.delete(key))
  }

  const loop = (async () => {
    let attempt = 0
    let registered = true
    while (!stopping.signal.aborted) {
      try {
        if (!registered) {
          await register()
          registered = true
          log.info("worker re-registered", { url: transport.url })
        }
        const jobs = await transport.poll(pollWait, stopping.signal)
        attempt = 0
        for (const a of jobs) launch(a)
      } catch (err) {
        if (stopping.signal.aborted) break
        // 409: the coordinator forgot us (new database, restart): register again.
        if (err instanceof DffmpegError && err.status === 409) registered = false
        else if (attempt === 0) log.warn("poll failed; retrying", { reason: (err as Error).message })
        if (!retryable(err) && !(err instanceof DffmpegError && err.status === 409)) registered = false
        await Bun.sleep(backoff(attempt++))
      }
    }
  })()

  let stopped: Promise<void> | undefined
  const stop = async (force = false) => {
    stopping.abort()
    if (force) for (const r of runs.values()) r.kill()
    stopped ??= (async () => {
      await loop
      await Promise.allSettled([...runs.values()].map((r) => r.done))
      log.info("worker stopped")
    })()
    return stopped
  }
  const done = loop.then(() => stopped)
  return { stop, done: done.then(() => undefined), [Symbol.asyncDispose]: () => stop() }
}
