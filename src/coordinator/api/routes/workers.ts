import { Hono } from "hono"
import * as v from "valibot"
import { ConflictError, NotFoundError } from "../../../shared/errors.ts"
import { newToken } from "../../../shared/ids.ts"
import { WorkerRegistration, type Assignment, type Job, type Worker } from "../../../shared/protocol/schemas.ts"
import { VERSION } from "../../../shared/version.ts"
import { topic } from "../../hub.ts"
import { connectionsOf, type Deps } from "../app.ts"
import { jsonBody, secondsQuery } from "../_util.ts"
import { requireRole, type AuthEnv } from "../middleware/hmac.ts"

const toAssignment = (j: Job): Assignment => ({
  id: j.id,
  epoch: j.epoch,
  binary: j.binary,
  args: j.args,
  paths: j.paths,
  cwd: j.cwd,
  stdin: j.stdin,
})

const Held = v.pipe(
  v.array(
    v.strictObject({ id: v.pipe(v.string(), v.maxLength(26)), epoch: v.pipe(v.number(), v.integer(), v.minValue(0)) }),
  ),
  v.maxLength(4096),
)
const Heartbeat = v.strictObject({ jobs: Held })
const Verify = v.strictObject({ token: v.pipe(v.string(), v.maxLength(64)) })

/** Routes a worker uses to join, prove its channel, receive work and report liveness (HTTP transport). */
export function workerRoutes(deps: Deps) {
  const { store, hub, log, now, config } = deps
  const app = new Hono<AuthEnv>()
  const connections = connectionsOf(deps)

  const timing = () => ({
    pollWaitSeconds: config.poll_wait_seconds,
    heartbeatSeconds: config.heartbeat_interval,
    registrationSeconds: config.registration_interval,
  })

  /**
   * Stage one of registration. A new (or offline) worker is `registering` until it echoes the token
   * it receives over its job channel (stage two, /verify), so a worker that can send but not receive
   * is never given work.
   */
  app.post("/register", async (c) => {
    const p = c.get("principal")
    requireRole(p, "worker")
    const reg = jsonBody(c, WorkerRegistration)
    const binaries = reg.binaries.filter((b) => config.allowed_binaries.includes(b))
    const before = await store.getWorker(p.name)
    const worker = await store.upsertWorker(p.name, { ...reg, binaries }, newToken(), now())
    if (
      before?.status !== worker.status ||
      before.paths.join() !== worker.paths.join() ||
      before.binaries.join() !== worker.binaries.join()
    ) {
      log.info("worker registered", {
        worker: p.name,
        status: worker.status,
        version: reg.version,
        binaries: binaries.join(","),
        paths: reg.paths.join(","),
        max_jobs: reg.maxJobs,
      })
    }
    return c.json({ worker, coordinatorVersion: VERSION, ...timing() })
  })

  app.post("/verify", async (c) => {
    const p = c.get("principal")
    requireRole(p, "worker")
    const { token } = jsonBody(c, Verify)
    if (!(await store.verifyWorker(p.name, token, now())))
      throw new ConflictError("registration token does not match; register again")
    log.info("worker online", { worker: p.name })
    return c.json({ ok: true })
  })

  app.post("/deregister", async (c) => {
    const p = c.get("principal")
    requireRole(p, "worker")
    await store.setWorkerStatus(p.name, "offline", now())
    log.info("worker deregistered", { worker: p.name })
    return c.json({ ok: true })
  })

  /** The jobs this worker holds; answers with those that are no longer its own (stop them). */
  app.post("/heartbeat", async (c) => {
    const p = c.get("principal")
    requireRole(p, "worker")
    const { jobs } = jsonBody(c, Heartbeat)
    const w = await store.getWorker(p.name)
    if (!w) throw new ConflictError(`worker ${p.name} is not registered; register first`)
    const stale = await store.heartbeat(p.name, jobs, now())
    return c.json({ stale, reregister: w.status === "offline" })
  })

  /**
   * Long poll: answers at once with every job assigned to this worker and not yet started (so an
   * assignment whose answer was lost is offered again), or with the registration token to echo,
   * otherwise waits until the scheduler assigns one or `wait` seconds pass.
   */
  app.get("/poll", async (c) => {
    const p = c.get("principal")
    requireRole(p, "worker")
    // Sub-second waits are valid (poll_wait_seconds may be 0.05): the worker echoes what it was told.
    const waitMs = Math.min(secondsQuery(c, "wait", config.poll_wait_seconds), config.poll_wait_seconds) * 1000
    const w = await store.getWorker(p.name)
    if (!w || w.status === "offline") throw new ConflictError(`worker ${p.name} is not registered; register first`)
    if (w.status === "registering") {
      const token = await store.workerToken(p.name)
      return c.json({ jobs: [], verify: token })
    }
    const ac = new AbortController()
    c.req.raw.signal.addEventListener("abort", () => ac.abort(), { once: true })
    const slot = connections.poll(p.name, ac.signal)
    c.env?.server?.timeout(c.req.raw, 0)
    try {
      const until = now() + waitMs
      // Being heard from makes a worker eligible again: the scheduler hears of it (coordinator/wakeups.ts).
      await store.touchWorker(p.name, now())
      for (;;) {
        const jobs = await store.assignedTo(p.name)
        if (jobs.length || ac.signal.aborted || now() >= until) {
          await store.touchWorker(p.name, now())
          return c.json({ jobs: jobs.map(toAssignment) })
        }
        await hub.wait(topic.worker(p.name), until - now(), ac.signal)
      }
    } finally {
      slot()
    }
  })

  return app
}

/** Read-only view of the worker pool, for any identity. */
export function workerListRoutes(deps: Deps) {
  const { store } = deps
  const app = new Hono<AuthEnv>()
  const view = (w: Worker, loads: Map<string, number>) => ({ ...w, load: loads.get(w.id) ?? 0 })

  app.get("/", async (c) => {
    const loads = await store.workerLoads()
    return c.json((await store.listWorkers()).map((w) => view(w, loads)))
  })

  app.get("/:id", async (c) => {
    const w = await store.getWorker(c.req.param("id"))
    if (!w) throw new NotFoundError(`no worker ${c.req.param("id").slice(0, 64)}`)
    return c.json(view(w, await store.workerLoads()))
  })

  return app
}
