import { Hono, type Context } from "hono"
import { createInfoCache, type InfoCache } from "../info.ts"
import { matchedRoutes } from "hono/route"
import { AuthError, DffmpegError } from "../../shared/errors.ts"
import type { CoordinatorConfig } from "../../shared/config/server-schema.ts"
import type { Logger } from "../../shared/log.ts"
import { VERSION } from "../../shared/version.ts"
import type { Store } from "../../store/index.ts"
import type { Notifier } from "../hub.ts"
import { createFallbackLedger, type FallbackLedger } from "../fallbacks.ts"
import type { Janitor } from "../janitor.ts"
import type { Metrics } from "../metrics.ts"
import { createAccessLog } from "./middleware/access-log.ts"
import { bodyCaps, createBodyBudget } from "./body.ts"
import { createConnections, type Connections } from "../connections.ts"
import { hmacAuth, type AuthEnv } from "./middleware/hmac.ts"
import { ipAllowList } from "./middleware/ip.ts"
import { signResponses } from "./middleware/sign-response.ts"
import { adminRoutes } from "./routes/admin.ts"
import { clientRoutes } from "./routes/clients.ts"
import { jobRoutes } from "./routes/jobs.ts"
import { WORKER_TRANSPORT, workerListRoutes, workerRoutes } from "./routes/workers.ts"
import { dashboardRoutes } from "../dashboard/index.ts"
import { databaseUnreachable } from "../../store/unreachable.ts"
import type { TransportName } from "../../shared/protocol/transports.ts"
import type { BrokerState } from "../transports.ts"

/** Seconds a request that met an unreachable database is told to wait (Retry-After) before trying again. */
export const DATABASE_RETRY_AFTER_SECONDS = 2

export interface Deps {
  store: Store
  /** Where requests wait for changes; fed only by the store's change hook (coordinator/wakeups.ts). */
  hub: Notifier
  janitor: Janitor
  config: CoordinatorConfig
  log: Logger
  now: () => number
  /** A worker that has not polled for this long is offline and gets no new jobs. */
  staleMs: number
  /** Reports readiness for /health (false while starting or shutting down). */
  ready: () => boolean
  metrics: Metrics
  /** When this coordinator started (ms), for /health and metrics. */
  startedAt: number
  /** Open long-lived connections and their limits; `createApp` makes one when none is given. */
  connections?: Connections
  /** The local fallbacks clients reported; `createApp` makes one when none is given. */
  fallbacks?: FallbackLedger
  /** Info-command answers (coordinator/info.ts), one per process; `createApp` makes it when none is given. */
  info?: InfoCache
  /** Whether a transport can carry a peer's traffic now (coordinator/transports.ts); HTTP only when absent. */
  serves?: (t: TransportName) => boolean
  /** The brokers this coordinator serves on, for /health and the metrics. */
  brokers?: () => BrokerState[]
}

/** The process's connection counters: the ones in `deps`, or new ones (a route set built on its own). */
export const connectionsOf = (deps: Deps): Connections => (deps.connections ??= createConnections(deps.config.limits))
/** The process's fallback counts: the ones in `deps`, or new ones. */
export const fallbacksOf = (deps: Deps): FallbackLedger => (deps.fallbacks ??= createFallbackLedger())

/** The process's info-command cache: the one in `deps`, or a new one. */
export const infoOf = (deps: Deps): InfoCache =>
  (deps.info ??= createInfoCache({
    store: deps.store,
    log: deps.log.withTag("info"),
    maxEntries: deps.config.info_cache_entries,
    preferred: deps.config.reference_worker,
    // The scheduler's liveness, poll connections included: a reference worker killed a moment ago (its
    // poll gone past poll_gone_seconds, not stale yet) would be pinned, its pin lapse at once, and every
    // info command of that window run elsewhere uncached.
    live: () => ({
      now: deps.now(),
      staleMs: deps.staleMs,
      pollGoneMs: deps.config.scheduling.poll_gone_seconds * 1000,
    }),
    now: deps.now,
  }))

/** The route pattern that answered (`/api/v1/jobs/:id`), for metrics; never the raw path. */
function routeOf(c: Context<AuthEnv>): string {
  try {
    const routes = matchedRoutes(c).filter((r) => r.method !== "ALL" && !r.path.endsWith("*"))
    return routes.at(-1)?.path ?? "unmatched"
  } catch {
    return "unmatched"
  }
}

export function createApp(deps: Deps): Hono<AuthEnv> {
  deps = { ...deps, connections: connectionsOf(deps), fallbacks: fallbacksOf(deps), info: infoOf(deps) }
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

  const accessLog = deps.config.access_log ? createAccessLog(deps.log, deps.config.trusted_proxies) : undefined
  app.use("*", async (c, next) => {
    const started = performance.now()
    try {
      await next()
    } finally {
      // After onError ran: the status is the one the client gets.
      deps.metrics.request(c.req.method, routeOf(c), c.res.status, (performance.now() - started) / 1000)
      accessLog?.(c, started)
    }
    c.header("Cache-Control", "no-store")
  })

  // Hono answers HEAD by running the GET handler and dropping its body. For a long poll or a stream that
  // holds a connection slot until the client goes away, and a dropped body never tells it so: the slot
  // would stay taken for good (64 HEADs locked every page out of the dashboard's live view). The API and
  // the dashboard's data routes have nothing to offer HEAD; the pages, /health and /metrics keep it.
  app.use("*", async (c, next) => {
    if (c.req.method === "HEAD" && (c.req.path.startsWith("/api/") || c.req.path.startsWith("/dashboard/api/"))) {
      c.header("Allow", "GET, POST")
      return c.json({ error: { code: "E_METHOD", message: "HEAD is not supported on the API; use GET" } }, 405)
    }
    await next()
  })

  /**
   * Liveness and readiness with the state of each part: 200 when the coordinator can serve, 503 while
   * it starts or shuts down, or when its database does not answer.
   */
  app.get("/health", async (c) => {
    const t0 = performance.now()
    let database: { status: "ok" | "unreachable" | "error"; latencyMs?: number; error?: string }
    try {
      await deps.store.ping()
      database = { status: "ok", latencyMs: +(performance.now() - t0).toFixed(2) }
    } catch (err) {
      deps.log.error("health check: database unavailable", err as Error)
      // Unreachable (connection refused, dropped, timed out): the pool reconnects once it is back.
      database = { status: databaseUnreachable(err) ? "unreachable" : "error", error: (err as Error).message }
    }
    const components = {
      database: { engine: deps.store.kind, ...database },
      // The binding workers reach this coordinator through (routes/workers.ts) and the waits it holds open.
      transport: { kind: WORKER_TRANSPORT, status: "ok" as const, waiting: deps.hub.size },
      // Which notifier wakes this coordinator's waiters ("memory": changes made by this process only) and,
      // for one across coordinators, whether it is connected: while it reconnects the coordinator still
      // serves, its waiters hearing of other coordinators' changes by their own timers.
      notifier: {
        kind: deps.hub.kind,
        status: deps.hub.connected === false ? ("reconnecting" as const) : ("ok" as const),
        ...(deps.hub.connected !== undefined ? { connected: deps.hub.connected } : {}),
      },
      // The brokers the API is also served on (transports.enabled_transports): while one reconnects the
      // coordinator still serves HTTP, and peers that list http_polling fall back to it.
      ...(deps.brokers?.().length
        ? {
            transports: Object.fromEntries(
              deps.brokers().map((b) => [
                b.kind,
                {
                  status: b.connected ? ("ok" as const) : ("reconnecting" as const),
                  broker: b.where,
                  connected: b.connected,
                  requests: b.open,
                  sinceSeconds: Math.round((Date.now() - b.since) / 1000),
                  ...(b.connected ? {} : { detail: b.detail }),
                },
              ]),
            ),
          }
        : {}),
    }
    const ready = deps.ready()
    const status = !ready ? "shutting_down" : database.status === "ok" ? "ok" : "unavailable"
    const body = {
      status,
      version: VERSION,
      uptimeSeconds: Math.round((deps.now() - deps.startedAt) / 1000),
      components,
    }
    return c.json(body, status === "ok" ? 200 : 503)
  })

  app.get(
    "/metrics",
    ipAllowList(deps.config.allowed_metrics_ips, deps.config.trusted_proxies, "/metrics", "allowed_metrics_ips"),
    async (c) => {
      const [stats, workers, loads, running] = await Promise.all([
        deps.store.stats(),
        deps.store.listWorkers(),
        deps.store.workerLoads(),
        // Summaries: a scrape reads the same few kilobytes per job whatever the jobs' arguments.
        deps.store.listJobSummaries({ status: "running", limit: 1000 }, { argsChars: 2 }),
      ])
      const text = deps.metrics.render({
        stats,
        workers,
        loads,
        running,
        now: deps.now(),
        version: VERSION,
        startedAt: deps.startedAt,
        fallbacks: fallbacksOf(deps).counts(),
        transports: deps.brokers?.().map((b) => ({ kind: b.kind, connected: b.connected })),
      })
      return c.body(text, 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" })
    },
  )

  const caps = bodyCaps(deps.config.limits)
  const limits = deps.config.limits
  const budget = createBodyBudget(Math.max(limits.max_unverified_body_bytes, limits.max_body_bytes))
  // Outside hmacAuth: signs the final reply (errors included) with the key hmacAuth verified.
  app.use("/api/*", signResponses())
  app.use(
    "/api/*",
    hmacAuth({
      store: deps.store,
      log: deps.log,
      now: deps.now,
      cap: caps.of,
      budget,
      stripBase,
      onRefuse: (r) => deps.metrics.authFailure(r),
    }),
  )
  app.route("/api/v1/jobs", jobRoutes(deps))
  app.route("/api/v1/worker", workerRoutes(deps))
  app.route("/api/v1/workers", workerListRoutes(deps))
  app.route("/api/v1/admin", adminRoutes(deps))
  app.route("/api/v1/clients", clientRoutes(deps))

  app.route("/", dashboardRoutes(deps))
  app.notFound((c) =>
    c.json({ error: { code: "E_NOT_FOUND", message: `no route ${c.req.method} ${new URL(c.req.url).pathname}` } }, 404),
  )
  app.onError((err, c) => {
    if (err instanceof AuthError && err.status === 403) deps.metrics.authFailure("forbidden")
    if (err instanceof DffmpegError) {
      return c.json(
        {
          error: {
            code: err.code,
            message: err.message,
            ...(err.details !== undefined ? { details: err.details } : {}),
          },
        },
        err.status as 400,
      )
    }
    if (databaseUnreachable(err)) {
      // Not the request's fault nor a bug: the database is gone for now (restarted, cut off). Retryable.
      deps.log.warn("request failed: the database is unreachable", {
        method: c.req.method,
        path: new URL(c.req.url).pathname,
        error: (err as Error).message,
      })
      return c.json(
        { error: { code: "E_UNAVAILABLE", message: "the coordinator's database is unreachable; try again shortly" } },
        503,
        { "Retry-After": String(DATABASE_RETRY_AFTER_SECONDS) },
      )
    }
    deps.log.error("request failed", { method: c.req.method, path: new URL(c.req.url).pathname }, err)
    return c.json({ error: { code: "E_INTERNAL", message: "internal error (see the coordinator log)" } }, 500)
  })
  return app
}
