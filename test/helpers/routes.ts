import { createFallbackLedger } from "../../src/coordinator/fallbacks.ts"
import { clientRoutes } from "../../src/coordinator/api/routes/clients.ts"
import { Hono } from "hono"
import { createMetrics } from "../../src/coordinator/metrics.ts"
import { createInfoCache, type InfoCache } from "../../src/coordinator/info.ts"
import * as v from "valibot"
import type { Deps } from "../../src/coordinator/api/app.ts"
import type { AuthEnv, Principal } from "../../src/coordinator/api/middleware/hmac.ts"
import { adminRoutes } from "../../src/coordinator/api/routes/admin.ts"
import { jobRoutes } from "../../src/coordinator/api/routes/jobs.ts"
import { workerListRoutes } from "../../src/coordinator/api/routes/workers.ts"
import { Hub, type Notifier } from "../../src/coordinator/hub.ts"
import { wireWakeups } from "../../src/coordinator/wakeups.ts"
import type { JanitorReport } from "../../src/coordinator/janitor.ts"
import { CoordinatorConfig } from "../../src/shared/config/server-schema.ts"
import { DffmpegError } from "../../src/shared/errors.ts"
import { createLogger } from "../../src/shared/log.ts"
import type { Job, WorkerRegistration } from "../../src/shared/protocol/schemas.ts"
import type { NewJob, Store } from "../../src/store/types.ts"
import { createStore } from "../../src/store/index.ts"
import { createSqliteStore } from "../../src/store/sqlite/index.ts"
import type { HeldOutput } from "../../src/store/held.ts"
import { memoryStore, newJob, registration, T0 } from "./fixtures.ts"

export { T0 }

const EMPTY_REPORT: JanitorReport = {
  suppressed: false,
  workersOffline: [],
  lost: [],
  canceled: [],
  unassigned: [],
  failedPending: [],
  abandoned: [],
  pruned: { jobs: 0, workers: 0 },
}

/**
 * The API's resource routes in process, on a `:memory:` store, without the signing middleware: the
 * caller says who it is (`as`). Errors map to `{error:{code,message}}` as in `createApp`.
 */
export class RouteHarness {
  readonly hub = new Hub()
  /** The fallback counts, kept across requests as a coordinator keeps them. */
  readonly fallbacks = createFallbackLedger()
  kicks = 0
  janitorRuns = 0
  /** Probes the routes asked the janitor to watch (probe_pending_timeout). */
  watchedProbes: string[] = []
  clock = T0
  private constructor(
    readonly store: Store,
    readonly config: CoordinatorConfig,
  ) {}

  /**
   * `config`: coordinator settings as in its YAML file (e.g. `{ limits: { max_stdin_bytes: 10 } }`);
   * `held`: the coordinator's in-memory stdout (store/held.ts), as a coordinator process has;
   * `onStatement`: told the SQL of every statement the store runs; `hintless`: the store's changes wake
   * waiters without saying what changed, as a notifier between coordinators might.
   */
  static async open(
    config: Record<string, unknown> = {},
    held?: HeldOutput,
    opts: { onStatement?: (sql: string) => void; hintless?: boolean } = {},
  ): Promise<RouteHarness> {
    let store: Store
    if (opts.onStatement) {
      store = createSqliteStore({ path: ":memory:", held, onStatement: opts.onStatement })
      await store.migrate()
    } else if (held) store = await createStore({ database: { engine: "sqlite", path: ":memory:" }, held })
    else store = await memoryStore()
    const h = new RouteHarness(store, v.parse(CoordinatorConfig, config))
    const hub = h.hub
    const notifier: Notifier = opts.hintless
      ? {
          kind: hub.kind,
          get size() {
            return hub.size
          },
          wait: (t, ms, signal) => hub.wait(t, ms, signal),
          subscribe: (t) => hub.subscribe(t),
          notify: (t) => hub.notify(t),
        }
      : hub
    // Routes wake nobody themselves: the store's changes do, as in the coordinator.
    wireWakeups(store, { notifier, scheduler: { kick: () => void h.kicks++ } })
    return h
  }

  /** The coordinator's counters, one set for every request. */
  readonly metrics = createMetrics()
  /** One info cache for every request, as one coordinator process has (routes are built per request here). */
  private info?: InfoCache

  private app(who: Principal, body: Uint8Array): Hono<AuthEnv> {
    const log = createLogger({ level: "error" })
    this.info ??= createInfoCache({ store: this.store, log, maxEntries: this.config.info_cache_entries })
    const deps = {
      info: this.info,
      store: this.store,
      hub: this.hub,
      janitor: {
        run: async () => (this.janitorRuns++, EMPTY_REPORT),
        watchProbe: (id: string) => void this.watchedProbes.push(id),
        start() {},
        stop: async () => {},
      },
      config: this.config,
      log,
      now: () => this.clock,
      staleMs: 60_000,
      ready: () => true,
      startedAt: T0,
      fallbacks: this.fallbacks,
      metrics: this.metrics,
    } as unknown as Deps
    const app = new Hono<AuthEnv>()
    app.use("*", async (c, next) => {
      c.set("principal", who)
      c.set("body", body)
      await next()
    })
    app.route("/api/v1/jobs", jobRoutes(deps))
    app.route("/api/v1/workers", workerListRoutes(deps))
    app.route("/api/v1/admin", adminRoutes(deps))
    app.route("/api/v1/clients", clientRoutes(deps))
    app.onError((err, c) => {
      if (err instanceof DffmpegError)
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
      throw err
    })
    return app
  }

  /** A request as `who`; `json` (or raw bytes) becomes the verified raw body. */
  request(who: Principal, method: string, path: string, json?: unknown): Promise<Response> {
    const body =
      json === undefined
        ? new Uint8Array()
        : json instanceof Uint8Array
          ? json
          : new TextEncoder().encode(typeof json === "string" ? json : JSON.stringify(json))
    return Promise.resolve(this.app(who, body).request(path, { method }))
  }

  async job(id: string, over: Partial<NewJob> = {}, at = this.clock): Promise<Job> {
    return this.store.createJob(newJob(id, over), at)
  }

  async worker(id: string, over: Partial<WorkerRegistration> = {}): Promise<void> {
    await this.store.upsertWorker(id, registration(over), `tok-${id}`, this.clock)
    await this.store.verifyWorker(id, `tok-${id}`, this.clock)
  }

  /** Runs job `id` on `worker` and uploads `chunks` (in order) as its output. */
  async run(
    id: string,
    worker: string,
    chunks: { stream: "stdout" | "stderr"; data: string | Uint8Array }[],
    exit?: { code: number },
  ): Promise<void> {
    const assigned = await this.store.assign(id, worker, this.clock)
    if (!assigned) throw new Error(`could not assign ${id}`)
    await this.store.start(id, worker, assigned.epoch, this.clock)
    const enc = new TextEncoder()
    const out = chunks.map((c, i) => ({
      seq: i + 1,
      stream: c.stream,
      data: typeof c.data === "string" ? enc.encode(c.data) : c.data,
    }))
    const res = await this.store.appendOutput(
      id,
      worker,
      assigned.epoch,
      out,
      exit && { code: exit.code, signal: null },
      this.clock,
    )
    if (!res.ok) throw new Error(`upload refused: ${res.reason}`)
  }

  close(): Promise<void> {
    return this.store.close()
  }
}

export const admin: Principal = { name: "root", role: "admin" }
export const alice: Principal = { name: "alice", role: "client" }
export const bob: Principal = { name: "bob", role: "client" }
