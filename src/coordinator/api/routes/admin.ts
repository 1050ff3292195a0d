import { Hono, type Context } from "hono"
import * as v from "valibot"
import { generateKey } from "../../../shared/auth/hmac.ts"
import { ConflictError, InvalidError, NotFoundError } from "../../../shared/errors.ts"
import { isName } from "../../../shared/ids.ts"
import { Role } from "../../../shared/protocol/schemas.ts"
import { tailChunks, tailOf } from "../../../shared/tail.ts"
import type { Deps } from "../app.ts"
import { intQuery, jobIdParam, jsonBody, nameParam } from "../_util.ts"
import { requireRole, type AuthEnv } from "../middleware/hmac.ts"
import { retryJob } from "../../jobs.ts"
import { LINK_TTL_MS, MAX_LINK_TTL_MS, createSignInLink, dashboardBase, signInUrl } from "../../dashboard/session.ts"

const NAME_RULE = "must be 1-64 letters, digits, '_' or '-', starting with a letter or digit"
const NewUser = v.strictObject(
  {
    name: v.pipe(v.string("name is required"), v.check(isName, `name ${NAME_RULE}`)),
    role: v.picklist(Role.options, `role must be one of ${Role.options.join(", ")}`),
  },
  `the body must be {"name": NAME, "role": ${Role.options.map((r) => `"${r}"`).join("|")}} and nothing else`,
)

const DashboardLink = v.strictObject(
  {
    ttlSeconds: v.optional(
      v.pipe(v.number(), v.integer(), v.minValue(10), v.maxValue(MAX_LINK_TTL_MS / 1000)),
      LINK_TTL_MS / 1000,
    ),
  },
  `the body must be {"ttlSeconds": 10-${MAX_LINK_TTL_MS / 1000}} or {}`,
)

/** Most lines `GET /jobs/:id/log` returns. */
const MAX_TAIL = 1000

/** Administration over the signed API: every route here is for admin identities only. */
export function adminRoutes(deps: Deps) {
  const { store, log, now } = deps
  const app = new Hono<AuthEnv>()
  app.use("*", async (c, next) => {
    requireRole(c.get("principal"), "admin")
    await next()
  })

  /** A name from the path; names that could never exist answer 404 like unknown ones. */
  const userName = (c: Context<AuthEnv>) => nameParam(c.req.param("name"), "user")

  app.get("/users", async (c) => c.json(await store.listUsers()))

  /** Creates an identity; the answer is the only time its key is shown. */
  app.post("/users", async (c) => {
    const { name, role } = jsonBody(c, NewUser)
    const key = generateKey()
    const user = await store.addUser(name, role, key, now())
    log.info("user added", { user: name, role, by: c.get("principal").name })
    return c.json({ user, key }, 201)
  })

  app.get("/users/:name", async (c) => {
    const name = userName(c)
    const user = await store.getUser(name)
    if (!user) throw new NotFoundError(`no user ${name}`)
    return c.json(user)
  })

  app.delete("/users/:name", async (c) => {
    const name = userName(c)
    const me = c.get("principal").name
    // Removing the identity that signs this request would leave its operator locked out mid-session.
    if (name === me) throw new ConflictError(`you cannot remove your own identity (${me}); use another admin identity`)
    const user = await store.getUser(name)
    if (!user || !(await store.removeUser(name))) throw new NotFoundError(`no user ${name}`)
    log.info("user removed", { user: name, by: me })
    return c.json(user)
  })

  /** A new key for an identity; the old one is refused from the next request on. */
  app.post("/users/:name/rotate-key", async (c) => {
    const name = userName(c)
    const key = generateKey()
    if (!(await store.setUserKey(name, key))) throw new NotFoundError(`no user ${name}`)
    log.info("user key rotated", { user: name, by: c.get("principal").name })
    return c.json({ key })
  })

  /**
   * An administrator's drain is sticky (it survives the worker's re-registrations and restarts): the
   * worker keeps its running jobs and gets no new ones until it is undrained.
   */
  const drain = (on: boolean) => async (c: Context<AuthEnv>) => {
    const id = nameParam(c.req.param("id"), "worker")
    const worker = await store.requestDrain(id, on, now())
    if (!worker) throw new NotFoundError(`no worker ${id.slice(0, 64)}`)
    log.info(on ? "worker drain requested" : "worker undrained", {
      worker: id,
      status: worker.status,
      by: c.get("principal").name,
    })
    const loads = await store.workerLoads()
    return c.json({ ...worker, load: loads.get(id) ?? 0 })
  }
  app.post("/workers/:id/drain", drain(true))
  app.post("/workers/:id/undrain", drain(false))

  /**
   * The last `tail` lines of a job's stderr as a terminal shows them (`admin jobs show`), read from at
   * most `limits.max_log_tail_bytes` of stored output: when that cut the tail short (a few huge lines),
   * `truncated` is true, the first line is only its end, and the `X-DFFmpeg-Tail-Truncated` header says so.
   */
  app.get("/jobs/:id/log", async (c) => {
    const id = jobIdParam(c)
    const tail = intQuery(c, "tail", 10)
    if (tail < 1 || tail > MAX_TAIL) throw new InvalidError(`query parameter tail must be from 1 to ${MAX_TAIL}`)
    if (!(await store.getJob(id))) throw new NotFoundError(`no job ${id}`)
    const maxBytes = deps.config.limits.max_log_tail_bytes
    const read = await store.lastOutputBytes(id, "stderr", tailChunks(tail), maxBytes)
    const { lines, truncated } = tailOf(
      read.rows.map((r) => r.data),
      tail,
      read.truncated,
    )
    if (truncated) c.header("X-DFFmpeg-Tail-Truncated", `${maxBytes} bytes (limits.max_log_tail_bytes)`)
    return c.json({ lines, truncated, maxBytes })
  })

  /** A failed detached job submitted again as a new job (coordinator/jobs.ts retryJob); 409 for any other. */
  app.post("/jobs/:id/retry", async (c) => {
    const id = jobIdParam(c)
    const agingMs = deps.config.scheduling.aging_seconds * 1000
    const job = await retryJob(store, id, { name: c.get("principal").name }, now(), agingMs, { log })
    return c.json({ ...job, files: [] }, 201)
  })

  /**
   * A one-time dashboard sign-in link for the signing admin: the token is in the answer only (stored as
   * its SHA-256), under `dashboard_url` or the address this request reached.
   */
  app.post("/dashboard-link", async (c) => {
    const { ttlSeconds } = jsonBody(c, DashboardLink)
    const at = now()
    const name = c.get("principal").name
    const token = await createSignInLink(store, name, ttlSeconds * 1000, at)
    log.info("dashboard sign-in link issued", { user: name, ttlSeconds })
    const reached = new URL(c.req.url)
    // A request tunnelled through a broker has no address of its own (a reserved `.invalid` host): the
    // address a running coordinator on this database registered stands in for it.
    const listed = reached.hostname.endsWith(".invalid") ? (await store.listCoordinators(at - 300_000))[0]?.url : null
    const base = dashboardBase(deps.config, listed ?? reached.origin)
    return c.json({ url: signInUrl(base, token), user: name, expiresAt: at + ttlSeconds * 1000 }, 201)
  })

  /** One janitor pass now; answers with what it did. */
  app.post("/janitor", async (c) => c.json(await deps.janitor.run()))

  return app
}
