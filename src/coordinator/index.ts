import { isAbsolute, join } from "node:path"
import type { CoordinatorConfig } from "../shared/config/schema.ts"
import type { Logger } from "../shared/log.ts"
import { createStore, type Store } from "../store/index.ts"
import { MAX_BODY, createApp } from "./api/app.ts"
import { Hub, topic } from "./hub.ts"
import { createScheduler } from "./scheduler.ts"
import { createJanitor, timings } from "./janitor.ts"
import { createMetrics } from "./metrics.ts"
import { observeStore } from "./observe.ts"

export interface Service {
  url: string
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

export interface CoordinatorOptions {
  log: Logger
  /** Directory that a relative database path is resolved against (the config file's). */
  base: string
  now?: () => number
  store?: Store
}

/** Opens the store, starts the HTTP API and the scheduler; resolves once it is listening. */
export async function startCoordinator(config: CoordinatorConfig, opts: CoordinatorOptions): Promise<Service> {
  const log = opts.log
  const now = opts.now ?? Date.now
  const dbPath = config.database.path === ":memory:" || isAbsolute(config.database.path) ? config.database.path : join(opts.base, config.database.path)
  const raw = opts.store ?? (await createStore({ engine: config.database.engine, path: dbPath }))
  const hub = new Hub()
  const metrics = createMetrics()
  const startedAt = now()
  // Every change made through this coordinator is counted and wakes live views.
  const store = observeStore(raw, {
    changed: () => hub.notify(topic.changes),
    started: (j) => metrics.started(j),
    ended: (j) => metrics.ended(j),
    submitted: (j) => metrics.submitted(j),
  })
  const t = timings(config)
  // Workers poll (and heartbeat) continuously; one silent for the worker threshold gets nothing new.
  const staleMs = Math.max(t.workerStale, (config.poll_wait_seconds + 5) * 1000)
  const scheduler = createScheduler({ store, hub, log: log.withTag("scheduler"), now, staleMs })
  const janitor = createJanitor({ store, hub, scheduler, log: log.withTag("janitor"), now, timings: t, startedAt })
  let ready = false
  const app = createApp({ store, hub, scheduler, janitor, config, log: log.withTag("api"), now, staleMs, ready: () => ready, metrics, startedAt })
  const server = Bun.serve({
    hostname: config.host,
    port: config.port,
    // Long polls and streams lift this per request; everything else is short.
    idleTimeout: 30,
    maxRequestBodySize: MAX_BODY + 1024 * 1024,
    // Never Bun's development error page (stack, cwd and source lines) for an error that escapes the app.
    development: false,
    // An HTTP/1.0 request without Host has a relative URL, which every `new URL(req.url)` rejects.
    fetch: (req, server) => (URL.canParse(req.url) ? app.fetch(req, { server }) : apiError(400, "E_INVALID", "the request has no Host header")),
    error: (err) => {
      log.error("request failed outside the API", err)
      return apiError(500, "E_INTERNAL", "internal error (see the coordinator log)")
    },
  })
  const host = server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname
  const url = `http://${host}:${server.port}`
  ready = true
  log.info(`listening on ${url}`, { database: config.database.engine === "sqlite" ? dbPath : config.database.engine })
  scheduler.kick()
  janitor.start()
  let stopped: Promise<void> | undefined
  const stop = () =>
    (stopped ??= (async () => {
      ready = false
      if (config.shutdown_delay_seconds > 0) {
        // Load balancers see 503 on /health and move traffic away while we still serve.
        log.info("shutting down: /health reports 503", { delay_seconds: config.shutdown_delay_seconds })
        await Bun.sleep(config.shutdown_delay_seconds * 1000)
      }
      await janitor.stop()
      await server.stop(true)
      await scheduler.idle()
      await store.close()
      log.info("coordinator stopped")
    })())
  return { url, stop, [Symbol.asyncDispose]: stop }
}

const apiError = (status: number, code: string, message: string) => Response.json({ error: { code, message } }, { status, headers: { "Cache-Control": "no-store" } })
