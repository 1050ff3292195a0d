import { Hono } from "hono"
import { ConflictError, NotFoundError } from "../../../shared/errors.ts"
import { WorkerRegistration, type Assignment, type Job } from "../../../shared/protocol/schemas.ts"
import { VERSION } from "../../../shared/version.ts"
import { topic } from "../../hub.ts"
import type { Deps } from "../app.ts"
import { intQuery, jsonBody } from "../_util.ts"
import { requireRole, type AuthEnv } from "../middleware/hmac.ts"

const toAssignment = (j: Job): Assignment => ({ id: j.id, epoch: j.epoch, binary: j.binary, args: j.args, paths: j.paths, cwd: j.cwd, stdin: j.stdin })

/** Routes a worker uses to join and to receive work (the HTTP transport's worker channel). */
export function workerRoutes(deps: Deps) {
  const { store, hub, scheduler, log, now, config } = deps
  const app = new Hono<AuthEnv>()

  app.post("/register", async (c) => {
    const p = c.get("principal")
    requireRole(p, "worker")
    const reg = jsonBody(c, WorkerRegistration)
    const binaries = reg.binaries.filter((b) => config.allowed_binaries.includes(b))
    const worker = await store.upsertWorker(p.name, { ...reg, binaries }, now())
    log.info("worker registered", { worker: p.name, version: reg.version, binaries: binaries.join(","), paths: reg.paths.join(","), max_jobs: reg.maxJobs })
    scheduler.kick()
    return c.json({ worker, coordinatorVersion: VERSION, pollWaitSeconds: config.poll_wait_seconds })
  })

  /**
   * Long poll: answers at once with every job assigned to this worker and not yet started (so an
   * assignment whose answer was lost is offered again), otherwise waits until the scheduler assigns one
   * or `wait` seconds pass.
   */
  app.get("/poll", async (c) => {
    const p = c.get("principal")
    requireRole(p, "worker")
    const waitMs = Math.min(intQuery(c, "wait", config.poll_wait_seconds), config.poll_wait_seconds) * 1000
    if (!(await store.getWorker(p.name))) throw new ConflictError(`worker ${p.name} is not registered; register first`)
    c.env?.server?.timeout(c.req.raw, 0)
    const ac = new AbortController()
    c.req.raw.signal.addEventListener("abort", () => ac.abort(), { once: true })
    const until = now() + waitMs
    await store.touchWorker(p.name, now())
    scheduler.kick()
    for (;;) {
      const jobs = await store.assignedTo(p.name)
      if (jobs.length || ac.signal.aborted || now() >= until) {
        await store.touchWorker(p.name, now())
        return c.json({ jobs: jobs.map(toAssignment) })
      }
      await hub.wait(topic.worker(p.name), until - now(), ac.signal)
    }
  })

  return app
}

/** Read-only view of the worker pool, for any identity. */
export function workerListRoutes(deps: Deps) {
  const { store, now } = deps
  const app = new Hono<AuthEnv>()

  app.get("/", async (c) => {
    const workers = await store.listWorkers()
    const loads = await store.workerLoads()
    const stale = deps.staleMs
    const t = now()
    return c.json(workers.map((w) => ({ ...w, status: t - w.lastSeen < stale ? "online" : "offline", load: loads.get(w.id) ?? 0 })))
  })

  app.get("/:id", async (c) => {
    const w = await store.getWorker(c.req.param("id"))
    if (!w) throw new NotFoundError(`no worker ${c.req.param("id").slice(0, 64)}`)
    const loads = await store.workerLoads()
    return c.json({ ...w, status: now() - w.lastSeen < deps.staleMs ? "online" : "offline", load: loads.get(w.id) ?? 0 })
  })

  return app
}
