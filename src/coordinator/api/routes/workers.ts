import { Hono, type Context } from "hono"
import { InvalidError, NotFoundError } from "../../../shared/errors.ts"
import { isUlid } from "../../../shared/ids.ts"
import { WorkerRegistration, issueLines, type Worker } from "../../../shared/protocol/schemas.ts"
import { WorkerInstance } from "../../../shared/protocol/host-load.ts"
import * as v from "valibot"
import { HeartbeatRequest, VerifyRequest, parseFollowing, parseHolding } from "../../../shared/protocol/worker.ts"
import { createWorkerProtocol } from "../../worker-protocol.ts"
import { connectionsOf, type Deps } from "../app.ts"
import { jsonBody, nameParam, secondsQuery, workerName as worker } from "../_util.ts"
import type { AuthEnv } from "../middleware/hmac.ts"

/** The transport these routes bind the worker protocol to, as /health reports it. */
export const WORKER_TRANSPORT = "http"

/**
 * Routes a worker uses to join, prove its channel, receive work and report liveness: the HTTP binding of
 * the worker protocol (coordinator/worker-protocol.ts), which decides everything.
 */
export function workerRoutes(deps: Deps) {
  const { config } = deps
  const protocol = createWorkerProtocol(deps)
  const app = new Hono<AuthEnv>()
  const connections = connectionsOf(deps)

  /**
   * Stage one of registration. A new (or offline) worker is `registering` until it echoes the token
   * it receives over its job channel (stage two, /verify), so a worker that can send but not receive
   * is never given work.
   */
  app.post("/register", async (c) => {
    const name = worker(c)
    const reg = jsonBody(c, WorkerRegistration)
    const proc = processQuery(c)
    return c.json(await protocol.register(name, proc ? { ...reg, instance: proc } : reg, c.env?.transport))
  })

  app.post("/verify", async (c) => {
    const name = worker(c)
    await protocol.verify(name, jsonBody(c, VerifyRequest).token)
    return c.json({ ok: true })
  })

  app.post("/deregister", async (c) => {
    await protocol.deregister(worker(c), instanceQuery(c))
    return c.json({ ok: true })
  })

  /** The jobs this worker holds; answers with those that are no longer its own (stop them). */
  app.post("/heartbeat", async (c) => {
    const name = worker(c)
    const body = jsonBody(c, HeartbeatRequest)
    return c.json(await protocol.heartbeat(name, body.jobs, instanceQuery(c), body.hostLoad))
  })

  /**
   * Long poll (see WorkerProtocol.poll); `?following=id,id` names the jobs whose downlink the worker
   * already follows (absent: it follows them all itself), `?holding=id,id` the assignments it received
   * and has not started yet (not answered again). The connection counts against the worker's poll slots while it waits. */
  app.get("/poll", async (c) => {
    const name = worker(c)
    const wait = secondsQuery(c, "wait", config.poll_wait_seconds)
    const following = parseFollowing(c.req.query("following"))
    const holding = parseHolding(c.req.query("holding"))
    const ac = new AbortController()
    c.req.raw.signal.addEventListener("abort", () => ac.abort(), { once: true })
    const reply = await protocol.poll(
      name,
      wait,
      ac.signal,
      () => {
        const slot = connections.poll(name, ac.signal)
        c.env?.server?.timeout(c.req.raw, 0)
        return slot
      },
      following,
      holding,
      c.env?.transport,
      instanceQuery(c),
    )
    return c.json(reply)
  })

  return app
}

/**
 * `?instance=ULID`: the worker process calling (docs/operations.md, "One identity, one worker"); absent
 * from older workers. 400 when it is not a ULID.
 */
function instanceQuery(c: Context<AuthEnv>): string | undefined {
  const raw = c.req.query("instance")
  if (raw === undefined) return undefined
  if (!isUlid(raw)) throw new InvalidError("query parameter instance must be an instance id (ULID)")
  return raw
}

/** `?instance=&host=&pid=` of a registration: the process registering; 400 when malformed, undefined when absent. */
function processQuery(c: Context<AuthEnv>): WorkerInstance | undefined {
  const id = instanceQuery(c)
  if (id === undefined) return undefined
  const pid = c.req.query("pid") ?? ""
  const res = v.safeParse(WorkerInstance, {
    id,
    host: c.req.query("host") ?? "",
    pid: /^\d{1,10}$/.test(pid) ? Number(pid) : Number.NaN,
  })
  if (!res.success) throw new InvalidError("invalid instance query parameters", issueLines(res.issues))
  return res.output
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
    const id = nameParam(c.req.param("id"), "worker")
    const w = await store.getWorker(id)
    if (!w) throw new NotFoundError(`no worker ${id.slice(0, 64)}`)
    return c.json(view(w, await store.workerLoads()))
  })

  return app
}
