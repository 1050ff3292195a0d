import { Hono } from "hono"
import { DffmpegError } from "../../shared/errors.ts"
import type { CoordinatorConfig } from "../../shared/config/schema.ts"
import type { Logger } from "../../shared/log.ts"
import { VERSION } from "../../shared/version.ts"
import type { Store } from "../../store/index.ts"
import type { Hub } from "../hub.ts"
import type { Scheduler } from "../scheduler.ts"
import type { Janitor } from "../janitor.ts"
import { hmacAuth, requireRole, type AuthEnv } from "./middleware/hmac.ts"
import { jobRoutes } from "./routes/jobs.ts"
import { workerListRoutes, workerRoutes } from "./routes/workers.ts"

export interface Deps {
  store: Store
  hub: Hub
  scheduler: Scheduler
  janitor: Janitor
  config: CoordinatorConfig
  log: Logger
  now: () => number
  /** A worker that has not polled for this long is offline and gets no new jobs. */
  staleMs: number
  /** Reports readiness for /health (false while starting or shutting down). */
  ready: () => boolean
}

/** Largest signed request body: output uploads are batched up to 4 MiB of payload. */
export const MAX_BODY = 8 * 1024 * 1024

export function createApp(deps: Deps): Hono<AuthEnv> {
  const base = deps.config.path_base ? "/" + deps.config.path_base.replace(/^\/+|\/+$/g, "") : ""
  const stripBase = (p: string) => (base && (p === base || p.startsWith(base + "/")) ? p.slice(base.length) || "/" : p)
  const app = new Hono<AuthEnv>({
    // Routing sees the path without the reverse-proxy prefix; the signature covers the same path.
    getPath: (req) => {
      const url = req.url
      const start = url.indexOf("/", url.indexOf("://") + 3)
      const q = url.indexOf("?", start)
      const path = url.slice(start, q === -1 ? undefined : q)
      if (base && !(path === base || path.startsWith(base + "/"))) return "/__outside_path_base__"
      return stripBase(path)
    },
  })

  app.use("*", async (c, next) => {
    await next()
    c.header("Cache-Control", "no-store")
  })

  app.get("/health", async (c) => {
    if (!deps.ready()) return c.json({ status: "unavailable", version: VERSION, reason: "starting or shutting down" }, 503)
    try {
      await deps.store.getJob("00000000000000000000000000")
    } catch (err) {
      deps.log.error("health check: database unavailable", err as Error)
      return c.json({ status: "unavailable", version: VERSION, database: "error" }, 503)
    }
    return c.json({ status: "ok", version: VERSION, database: "ok" })
  })

  app.use("/api/*", hmacAuth({ store: deps.store, log: deps.log, now: deps.now, maxBody: MAX_BODY, stripBase }))
  app.route("/api/v1/jobs", jobRoutes(deps))
  app.route("/api/v1/worker", workerRoutes(deps))
  app.route("/api/v1/workers", workerListRoutes(deps))
  app.post("/api/v1/admin/janitor", async (c) => {
    requireRole(c.get("principal"), "admin")
    return c.json(await deps.janitor.run())
  })

  app.notFound((c) => c.json({ error: { code: "E_NOT_FOUND", message: `no route ${c.req.method} ${new URL(c.req.url).pathname}` } }, 404))
  app.onError((err, c) => {
    if (err instanceof DffmpegError) {
      return c.json({ error: { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } }, err.status as 400)
    }
    deps.log.error("request failed", { method: c.req.method, path: new URL(c.req.url).pathname }, err)
    return c.json({ error: { code: "E_INTERNAL", message: "internal error (see the coordinator log)" } }, 500)
  })
  return app
}
