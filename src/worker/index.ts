import { accessSync, constants, statSync } from "node:fs"
import { isAbsolute, join } from "node:path"
import { coordinatorTargets, resolveKey } from "../shared/config/load.ts"
import type { WorkerConfig } from "../shared/config/server-schema.ts"
import { DffmpegError, IdentityInUseError, TrustError } from "../shared/errors.ts"
import { newId } from "../shared/ids.ts"
import { hostname } from "node:os"
import type { Logger } from "../shared/log.ts"
import { createWorkerMapper } from "../shared/paths/mapping.ts"
import type { WorkerRegistration } from "../shared/protocol/schemas.ts"
import { MAX_FOLLOWING, type Assignment } from "../shared/protocol/worker.ts"
import { backoff } from "../shared/pause.ts"
import { VERSION } from "../shared/version.ts"
import { createWorkerTransport, openPeerTransports } from "../transports/index.ts"
import { resolveTransports } from "../shared/config/transports.ts"
import { retryable, UnknownWorkerError, type WorkerTransport } from "../transports/types.ts"
import { startRun, type Run } from "./runner.ts"
import { createMountMonitor } from "./mounts.ts"
import { workerPolicy } from "./policy-deps.ts"
import { createConfinement, runConfined } from "./sandbox.ts"
import { createCapabilityDetector } from "./capabilities.ts"
import { createHostLoadSampler } from "./host-load.ts"

export interface WorkerService {
  /** First call: stop taking jobs and wait for running ones. `force`: kill running jobs too. */
  stop(force?: boolean): Promise<void>
  readonly done: Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * A key file other users can read hands them the worker's identity (and so every job sent to it): warned
 * at every start. Read access for the worker's own group is fine (the install layout's
 * /etc/dffmpeg/keys/NAME.key is root:dffmpeg 0640); any other group's, or others', is not. (The proxy does
 * not warn: its stderr is ffmpeg's, byte for byte.)
 */
function warnOpenKeyFile(cfg: WorkerConfig, base: string, log: Logger): void {
  if (!cfg.hmac_key_file) return
  const p = isAbsolute(cfg.hmac_key_file) ? cfg.hmac_key_file : join(base, cfg.hmac_key_file)
  try {
    const st = statSync(p)
    const mode = st.mode & 0o777
    const ownGroup = st.gid === process.getgid?.() && !(mode & 0o030)
    if (mode & 0o007 || (mode & 0o070 && !ownGroup))
      log.warn(
        `hmac_key_file ${p} is accessible by ${mode & 0o007 ? "others" : "another group"} (mode 0${mode.toString(8)}); make it private: chmod 600 ${p}`,
      )
  } catch {
    // unreadable files were refused when the key was read
  }
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

/**
 * Registers with the coordinator (then proves its job channel with the token it receives there), keeps
 * one long poll open for assignments and runs each in its own process. Heartbeats report the jobs it
 * holds; jobs the coordinator no longer considers ours are killed, and if no heartbeat has been
 * acknowledged for two intervals the worker stops its jobs itself (self-fencing), before the coordinator
 * can give them to another worker. Coordinator outages are retried with jittered exponential backoff;
 * an authentication failure at start-up is fatal (it will not fix itself).
 *
 * `stop()` drains: no new work (re-registers as draining, gives back assignments), waits for running
 * jobs for at least `min_drain_time_seconds`; `stop(true)` (second signal) gives running jobs up: they
 * are re-queued when they may be, and fail with a clear reason otherwise.
 */
export async function startWorker(
  cfg: WorkerConfig,
  opts: { log: Logger; base: string; transport?: WorkerTransport },
): Promise<WorkerService> {
  const log = opts.log.withTag("worker")
  // This process (docs/operations.md, "One identity, one worker"): a new id at each start.
  const instance = { id: newId(), host: hostname().slice(0, 253), pid: process.pid }
  const binaries = resolveBinaries(cfg, log)
  const setpriv = process.platform === "linux" ? (Bun.which("setpriv") ?? undefined) : undefined
  if (process.platform === "linux" && !setpriv)
    log.warn("setpriv not found: ffmpeg processes may outlive a killed worker (install util-linux)")
  // Before anything else: a worker that cannot confine its jobs refuses to start.
  const confinement = await createConfinement(cfg, binaries, log.withTag("sandbox"), setpriv)
  // The brokers of `transports:` (each connected before the first registration; one that cannot be
  // reached is one error line), and HTTP: each request goes by the transport the coordinator picked.
  const wanted = resolveTransports(cfg.transports, opts.base)
  const peers =
    !opts.transport && wanted.enabled.some((t) => t !== "http_polling")
      ? await openPeerTransports({
          transports: wanted,
          identity: cfg.client_id,
          key: resolveKey(cfg, opts.base),
          log: log.withTag("transports"),
        })
      : undefined
  const transport =
    opts.transport ??
    createWorkerTransport({
      coordinators: coordinatorTargets(cfg.coordinator, opts.base),
      client: cfg.client_id,
      key: resolveKey(cfg, opts.base),
      fetch: peers?.fetch,
      instance: instance.id,
    })
  warnOpenKeyFile(cfg, opts.base, log)
  const mapper = createWorkerMapper({ paths: cfg.paths, passthrough: cfg.passthrough_paths })
  const policy = workerPolicy(cfg, binaries, log, confinement.owner)
  const mounts = createMountMonitor(cfg, log)
  const runs = new Map<string, Run>()
  const idleWaiters: (() => void)[] = []
  const stopping = new AbortController()
  let draining = false
  let timing = { pollWaitSeconds: 25, heartbeatSeconds: 5, registrationSeconds: 15 }
  let paths = await mounts.check()
  let lastAck = performance.now()
  // Whether heartbeats carry the host's load: only to a coordinator that said it takes it.
  let sendLoad = false
  const hostLoad = createHostLoadSampler({ log: log.withTag("host-load") })

  // Capabilities are read through the confinement jobs run in (its devices, its user), each command bounded.
  const detector = createCapabilityDetector({
    binaries,
    run: (exe, args) => runConfined(confinement, [exe, ...args], cfg.capability_timeout_seconds * 1000),
    remove: cfg.remove_capabilities,
    log: log.withTag("capabilities"),
  })

  const registration = async (): Promise<WorkerRegistration> => ({
    draining,
    binaries: [...binaries.keys()].sort(),
    paths,
    maxJobs: cfg.max_jobs,
    maxProbeJobs: cfg.max_probe_jobs,
    version: VERSION,
    capabilities: { platform: process.platform, arch: process.arch, pathTokens: true, ...confinement.capabilities },
    tools: await detector.tools(),
    labels: cfg.labels,
    weight: cfg.weight,
    // Only with brokers configured: a coordinator from before them refuses the field.
    ...(peers ? { transports: peers.usable() } : {}),
    instance,
  })

  const register = async () => {
    const reply = await transport.register(await registration())
    const { pollWaitSeconds, heartbeatSeconds, registrationSeconds } = reply
    timing = { pollWaitSeconds, heartbeatSeconds, registrationSeconds }
    sendLoad = reply.hostLoad === true
    lastAck = performance.now()
    if (peers) {
      const via = reply.transport ?? "http_polling"
      if (via !== peers.current) log.info("using transport", { transport: via })
      peers.pin(via)
    }
  }

  // First registration: fail fast on a wrong key, retry while the coordinator is down. The identity
  // served by another process: wait while that one may be a crashed predecessor (it takes over once the
  // coordinator counts it gone); refused once it was heard from since, or after the wait it was told.
  let rival: { instance: string; lastSeen: number; until: number } | undefined
  for (let attempt = 0; ; attempt++) {
    try {
      await register()
      break
    } catch (err) {
      if (err instanceof IdentityInUseError) {
        const d = inUse(err)
        if (!d) throw err
        const heard =
          rival?.instance === d.instance &&
          d.lastSeen > rival.lastSeen &&
          // Heard from since, and not just its poll's close being written: it heartbeats, it is alive.
          (d.pollOpen || d.lastSeen > (d.pollClosedAt ?? 0))
        if (rival?.instance !== d.instance) {
          rival = {
            instance: d.instance,
            lastSeen: d.lastSeen,
            // Past the wait it was told, plus two tries: by then a coordinator counts a silent one gone.
            until: performance.now() + (d.retryAfterSeconds + 2) * 1000,
          }
          log.warn("worker identity in use by another process; taking over if it is gone", {
            id: cfg.client_id,
            host: d.host,
            pid: d.pid,
            instance: d.instance,
            wait_seconds: d.retryAfterSeconds,
          })
        }
        if (heard || performance.now() > rival.until) throw err
        await Bun.sleep(Math.min(1000, Math.max(100, timing.heartbeatSeconds * 200)))
        continue
      }
      // The coordinator's certificate or reply signatures do not verify: say so every time, keep trying.
      if (err instanceof TrustError)
        log.error("coordinator not trusted; retrying", { url: transport.url, reason: err.message })
      // Anything but an outage (a wrong key, a refused registration) will not fix itself.
      else if (err instanceof DffmpegError && !retryable(err)) throw err
      else if (attempt === 0)
        log.warn("coordinator unavailable; retrying", { url: transport.url, reason: (err as Error).message })
      await Bun.sleep(backoff(attempt, err instanceof TrustError ? 30_000 : undefined))
    }
  }
  log.info("worker registered", {
    id: cfg.client_id,
    instance: instance.id,
    url: transport.url,
    transport: peers?.current ?? "http_polling",
    max_jobs: cfg.max_jobs,
    binaries: [...binaries.keys()].join(","),
    paths: paths.join(","),
  })

  const runOpts = {
    transport,
    log: log.withTag("runner"),
    mapper,
    policy,
    binaries,
    confinement,
    termAfterMs: cfg.cancel_term_after_seconds * 1000,
    killAfterMs: cfg.cancel_kill_after_seconds * 1000,
    outputLingerMs: cfg.output_linger_ms,
    allowedEnv: cfg.allowed_env,
    profiles: cfg.profiles,
  }
  /** Each run's lane, as its assignment said (undefined from an older coordinator). */
  const lanes = new Map<string, Assignment["lane"]>()
  /**
   * Whether `a` fits in a free slot: `max_jobs` transcodes and `max_probe_jobs` probes at once (a job of
   * no known lane, from an older coordinator, against both together).
   */
  const room = (a: Assignment) => {
    const held = [...lanes.values()]
    if (!a.lane) return held.length < cfg.max_jobs + cfg.max_probe_jobs
    const slots = a.lane === "probe" ? cfg.max_probe_jobs : cfg.max_jobs
    return held.filter((l) => l === a.lane).length < slots
  }
  const launch = (a: Assignment) => {
    const key = `${a.id}:${a.epoch}`
    if (runs.has(key)) return
    if (draining) {
      // Assigned before the coordinator saw us draining: give it back for another worker.
      transport
        .reject(a.id, a.epoch)
        .catch((err) => log.debug("could not give back a job", { job: a.id, reason: (err as Error).message }))
      return
    }
    if (!room(a)) {
      // More than its slots: whatever a coordinator believed (several on one database count in it, but
      // this is the last word), the worker gives it back for another worker, as while draining.
      log.warn("assignment beyond the worker's slots; giving it back", { job: a.id, lane: a.lane ?? "any" })
      transport
        .reject(a.id, a.epoch)
        .catch((err) => log.debug("could not give back a job", { job: a.id, reason: (err as Error).message }))
      return
    }
    const run = startRun(a, runOpts)
    runs.set(key, run)
    lanes.set(key, a.lane)
    run.done.finally(() => {
      runs.delete(key)
      lanes.delete(key)
      idleWaiters.splice(0).forEach((f) => f())
    })
  }
  // Whether downlinks are opened when the coordinator's poll names them: not by a worker with more slots
  // than a poll may name (it follows every one at once), nor after an older coordinator's reply.
  let lazyDownlinks = cfg.max_jobs + cfg.max_probe_jobs <= MAX_FOLLOWING
  // Jobs a poll named that we do not run (ended meanwhile, or lost in a restart), with when: named back
  // as followed for a minute, so polls wait rather than answer at once with them again until the
  // coordinator ends them (its janitor loses a job whose worker stopped reporting it).
  const unheld = new Map<string, number>()
  const UNHELD_MS = 60_000
  const followed = () => {
    const ids = [...runs.values()].filter((r) => r.following).map((r) => r.id)
    for (const [id, at] of unheld)
      if (performance.now() - at > UNHELD_MS) unheld.delete(id)
      else if (!ids.includes(id)) ids.push(id)
    return ids.slice(0, cfg.max_jobs + cfg.max_probe_jobs)
  }
  // Assignments received and not started yet: the poll need not offer them again while their claim is on its way.
  const holding = () =>
    [...runs.values()]
      .filter((r) => !r.started)
      .map((r) => r.id)
      // What a poll may list (the rest are offered again, and launching a known one does nothing).
      .slice(0, Math.min(cfg.max_jobs + cfg.max_probe_jobs, MAX_FOLLOWING))
  let needRegister = false
  // A broker link lost or back: register again, so the coordinator picks what works now (its token then
  // comes over that channel, proving it).
  peers?.onChange(() => {
    if (!stopping.signal.aborted) needRegister = true
  })
  // Another process serves the identity now (this one was cut off long enough to count as gone): stop.
  let lost: IdentityInUseError | undefined
  const lose = (err: IdentityInUseError) => {
    if (lost) return
    lost = err
    log.error("another worker process serves this identity now; stopping", { reason: err.message })
    stopping.abort()
  }
  const reregister = async () => {
    if (!needRegister) return
    await register()
    needRegister = false
    // Every registration_interval while idle: routine, at debug (docs/operations.md, "Logs").
    log.debug("worker re-registered", { url: transport.url })
  }
  const poller = (async () => {
    let attempt = 0
    while (!stopping.signal.aborted) {
      try {
        await reregister()
        // The next batch is asked for only after this one is handled: a re-registration goes in between.
        for await (const batch of transport.assignments(
          () => timing.pollWaitSeconds,
          stopping.signal,
          lazyDownlinks ? followed : undefined,
          holding,
        )) {
          attempt = 0
          if (batch.verify) {
            await transport.verify(batch.verify)
            log.info("worker online", { url: transport.url })
          }
          for (const a of batch.jobs) launch(a)
          // A coordinator that names no downlinks (an older one) expects every job's to be followed.
          if (!batch.downlink) lazyDownlinks = false
          if (!lazyDownlinks) for (const r of runs.values()) r.openDownlink()
          for (const d of batch.downlink ?? []) {
            const r = runs.get(`${d.id}:${d.epoch}`)
            if (r) r.openDownlink()
            else unheld.set(d.id, performance.now())
          }
          await reregister()
        }
      } catch (err) {
        if (stopping.signal.aborted) break
        if (err instanceof IdentityInUseError) {
          lose(err)
          break
        }
        // The coordinator forgot us (new database, reaped as offline): register again, as after any
        // error that waiting will not fix.
        const forgotten = err instanceof UnknownWorkerError
        if (forgotten || !retryable(err)) needRegister = true
        // Never a job from a reply that did not verify; logged every time, as it will not fix itself.
        if (err instanceof TrustError)
          log.error("coordinator not trusted; no work taken", { url: transport.url, reason: err.message })
        else if (!forgotten && attempt === 0) log.warn("poll failed; retrying", { reason: (err as Error).message })
        await Bun.sleep(backoff(attempt++, err instanceof TrustError ? 30_000 : undefined))
      }
    }
  })()

  // Heartbeats, self-fencing, re-registration and mount checks: timers, never blocking the event loop.
  const held = () => [...runs.values()].map((r) => ({ id: r.id, epoch: r.epoch }))
  let fenced = false
  const beat = async () => {
    try {
      const res = await transport.heartbeat(held(), sendLoad ? await hostLoad.sample() : undefined)
      lastAck = performance.now()
      fenced = false
      for (const s of res.stale) {
        const r = runs.get(`${s.id}:${s.epoch}`)
        if (!r) continue
        log.warn("job is no longer ours; killing it", { job: s.id, epoch: s.epoch })
        r.fence()
      }
      if (res.reregister) needRegister = true
    } catch (err) {
      if (err instanceof IdentityInUseError) lose(err)
      else if (err instanceof TrustError) log.error("heartbeat reply not trusted", { reason: err.message })
      else log.debug("heartbeat failed", { reason: (err as Error).message })
    }
  }
  const fenceCheck = () => {
    const silentMs = performance.now() - lastAck
    if (fenced || runs.size === 0 || silentMs <= 2 * timing.heartbeatSeconds * 1000) return
    fenced = true
    const why = `worker ${cfg.client_id} lost contact with the coordinator for ${(silentMs / 1000).toFixed(1)} s and stopped the job`
    log.error("no heartbeat acknowledged; stopping all jobs (self-fencing)", {
      jobs: runs.size,
      silent_seconds: +(silentMs / 1000).toFixed(1),
    })
    for (const r of runs.values()) r.abandon(why)
  }
  const every = (ms: () => number, fn: () => unknown) => {
    let t: ReturnType<typeof setTimeout>
    let off = false
    const loop = () => {
      t = setTimeout(
        async () => {
          await fn()
          if (!off) loop()
        },
        ms() * (0.9 + Math.random() * 0.2),
      )
    }
    loop()
    return () => {
      off = true
      clearTimeout(t)
    }
  }
  const timers = [
    every(() => timing.heartbeatSeconds * 1000, beat),
    every(() => Math.min(500, timing.heartbeatSeconds * 250), fenceCheck),
    every(
      () => timing.registrationSeconds * 1000,
      async () => {
        if (!stopping.signal.aborted) needRegister = true
      },
    ),
    every(
      () => cfg.mount_check_interval_seconds * 1000,
      async () => {
        const now = await mounts.check()
        if (now.join() === paths.join()) return
        paths = now
        // Advertise the change at once, not at the next registration.
        await register().catch((err) => {
          needRegister = true
          log.debug("re-registration failed", { reason: (err as Error).message })
        })
      },
    ),
  ]

  const idle = async () => {
    while (runs.size) await new Promise<void>((r) => idleWaiters.push(r))
  }

  let drained: Promise<void> | undefined
  let forced = false
  const stop = async (force = false) => {
    if (force && !forced) {
      forced = true
      log.warn("stopping running jobs", { jobs: runs.size })
      for (const r of runs.values()) r.abandon(`worker ${cfg.client_id} was shut down while running the job`)
    }
    drained ??= (async () => {
      draining = true
      log.info("draining: no new jobs; waiting for running ones", {
        jobs: runs.size,
        min_drain_seconds: cfg.min_drain_time_seconds,
      })
      await register().catch((err) =>
        log.warn("could not tell the coordinator we are draining", { reason: (err as Error).message }),
      )
      const minUntil = performance.now() + cfg.min_drain_time_seconds * 1000
      // Keep polling through the minimum drain time, to give back assignments already in flight.
      while (performance.now() < minUntil && !forced)
        await Promise.race([
          Bun.sleep(Math.min(100, minUntil - performance.now())),
          new Promise<void>((r) => idleWaiters.push(r)),
        ])
      await idle()
      stopping.abort()
      await poller
      for (const cancel of timers) cancel()
      await transport.deregister().catch((err) => log.debug("deregister failed", { reason: (err as Error).message }))
      await peers?.close()
      log.info("worker stopped")
    })()
    return drained
  }
  // Lost to another process: every job given up, then `done` fails with why (exit 3).
  const done = poller.then(async () => {
    if (!lost) return drained
    await stop(true)
    throw lost
  })
  return { stop, done: done.then(() => undefined), [Symbol.asyncDispose]: () => stop() }
}

/** The details of an IdentityInUseError from the coordinator (undefined when they are not its shape). */
function inUse(err: IdentityInUseError):
  | {
      instance: string
      host: string
      pid: number
      lastSeen: number
      pollOpen: boolean
      pollClosedAt: number | null
      retryAfterSeconds: number
    }
  | undefined {
  const d = err.details as Record<string, unknown> | undefined
  const n = (x: unknown) => typeof x === "number" && Number.isFinite(x)
  if (!d || typeof d.instance !== "string" || !n(d.lastSeen) || !n(d.retryAfterSeconds)) return undefined
  return {
    instance: d.instance,
    host: String(d.host),
    pid: Number(d.pid),
    lastSeen: d.lastSeen as number,
    pollOpen: d.pollOpen === true,
    pollClosedAt: n(d.pollClosedAt) ? (d.pollClosedAt as number) : null,
    // Bounded whatever a coordinator says: at most ten minutes.
    retryAfterSeconds: Math.min(600, Math.max(0, d.retryAfterSeconds as number)),
  }
}
