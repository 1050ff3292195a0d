import { isAbsolute, join } from "node:path"
import type { CoordinatorConfig } from "../shared/config/schema.ts"
import type { Logger } from "../shared/log.ts"
import { createStore, type Store } from "../store/index.ts"
import { MAX_BODY, createApp } from "./api/app.ts"
import { Hub } from "./hub.ts"
import { createScheduler } from "./scheduler.ts"

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
  const store = opts.store ?? (await createStore({ engine: config.database.engine, path: dbPath }))
  const hub = new Hub()
  // A worker keeps one poll open at all times; missing two in a row means it is gone.
  const staleMs = (config.poll_wait_seconds * 2 + 10) * 1000
  const scheduler = createScheduler({ store, hub, log: log.withTag("scheduler"), now, staleMs })
  let ready = false
  const app = createApp({ store, hub, scheduler, config, log: log.withTag("api"), now, staleMs, ready: () => ready })
  const server = Bun.serve({
    hostname: config.host,
    port: config.port,
    // Long polls and streams lift this per request; everything else is short.
    idleTimeout: 30,
    maxRequestBodySize: MAX_BODY + 1024 * 1024,
    fetch: (req, server) => app.fetch(req, { server }),
  })
  const host = server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname
  const url = `http://${host}:${server.port}`
  ready = true
  log.info(`listening on ${url}`, { database: config.database.engine === "sqlite" ? dbPath : config.database.engine })
  scheduler.kick()
  let stopped: Promise<void> | undefined
  const stop = () =>
    (stopped ??= (async () => {
      ready = false
      await server.stop(true)
      await scheduler.idle()
      await store.close()
      log.info("coordinator stopped")
    })())
  return { url, stop, [Symbol.asyncDispose]: stop }
}
