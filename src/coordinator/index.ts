import { readFileSync } from "node:fs"
import { isAbsolute, join } from "node:path"
import { memoryKeyring, type Keyring } from "../shared/auth/keyring.ts"
import { fileKeyring } from "../shared/auth/secret-file.ts"
import { heldBudgetMb, type CoordinatorConfig } from "../shared/config/server-schema.ts"
import { ConfigError } from "../shared/errors.ts"
import type { Logger } from "../shared/log.ts"
import { createStore, storePaths, type Store, type StorePaths } from "../store/index.ts"
import { createHeldOutput } from "../store/held.ts"
import { DATABASE_RETRY_AFTER_SECONDS, createApp } from "./api/app.ts"
import { databaseUnreachable } from "../store/unreachable.ts"
import { createClock } from "./clock.ts"
import { startNoncePruner } from "./nonces.ts"
import { createNotifier } from "./notify/index.ts"
import { BrokerNotifier } from "./notify/broker.ts"
import { createScheduler } from "./scheduler.ts"
import { createJanitor, timings } from "./janitor.ts"
import { createMetrics } from "./metrics.ts"
import { wireWakeups } from "./wakeups.ts"
import { startPresence } from "./presence.ts"
import { resolveTransports } from "../shared/config/transports.ts"
import { startTransports, type CoordinatorTransports } from "./transports.ts"

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
  /** The coordinator secret that `store` was opened with (the broker notifier signs with it); tests. */
  keys?: Keyring
}

/** Problems with stored keys, at most once a minute each: a refused identity retries every few seconds. */
function keyProblemLog(log: Logger, now: () => number) {
  const last = new Map<string, number>()
  return (message: string) => {
    const t = now()
    if ((last.get(message) ?? -Infinity) > t - 60_000) return
    if (last.size > 1000) last.clear()
    last.set(message, t)
    log.error(`stored key unusable: ${message}`)
  }
}

/**
 * The store with its keys sealed under the coordinator secret. Refuses (ConfigError) a secret file
 * others can read; warns about a database others can read.
 */
async function openStore(
  config: CoordinatorConfig,
  base: string,
  paths: StorePaths,
  log: Logger,
  now: () => number,
): Promise<{ store: Store; keys: Keyring }> {
  const onDisk = paths.secret ? fileKeyring(paths.secret) : undefined
  if (onDisk?.created) log.info("created the coordinator secret; back it up with the database", { file: paths.secret })
  const keys = onDisk ?? memoryKeyring()
  const store = await createStore({
    database: config.database,
    base,
    keys,
    // An attached caller's stdout stays in memory within this budget instead of passing through the database.
    held: createHeldOutput(heldBudgetMb(config) * 1024 * 1024),
    onKeyProblem: keyProblemLog(log, now),
    onWarning: (message) => log.warn(message),
    onKeys: (r) => {
      if (r.recovered) log.warn("completed an interrupted secret rotation", { file: paths.secret, secret: r.recovered })
      if (r.sealed) log.info(`encrypted ${r.sealed} stored key(s) that were in clear`, { secret: keys.current().id })
    },
  })
  return { store, keys }
}

/** Opens the store, starts the HTTP API and the scheduler; resolves once it is listening. */
/** Why Bun.serve could not listen, in words, for the errors a configuration causes (else undefined: a bug). */
function listenProblem(code: string): string | undefined {
  if (code === "EADDRINUSE")
    return "the port is already in use (another coordinator or program listens there); stop it, or choose another port (--port or the config key port; 0 picks a free one)"
  if (code === "EINVAL" || code === "ENOTFOUND" || code === "EAI_NONAME")
    return "not an address or a name of this host (host must be one of its IP addresses, e.g. 127.0.0.1, or 0.0.0.0 for every interface)"
  if (code === "EADDRNOTAVAIL")
    return "no interface of this host has that address (set host to one of its IP addresses, or 0.0.0.0)"
  if (code === "EACCES" || code === "EPERM")
    return "permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE; choose a port from 1024)"
  return undefined
}

export async function startCoordinator(config: CoordinatorConfig, opts: CoordinatorOptions): Promise<Service> {
  const log = opts.log
  // Before anything is opened: a missing or unreadable certificate is a configuration error.
  const tls = config.tls && readTls(config.tls, opts.base)
  // Broker passwords and CA files too: a missing one is a configuration error before anything opens.
  const brokers = resolveTransports(config.transports, opts.base)
  if (config.notifier !== "database" && !brokers.enabled.includes(config.notifier))
    throw new ConfigError(
      `notifier: ${config.notifier} is not in transports.enabled_transports (a broker notifier uses the broker the coordinator serves on)`,
    )
  const paths = storePaths(config, opts.base)
  const opened = opts.store
    ? { store: opts.store, keys: opts.keys ?? memoryKeyring() }
    : await openStore(config, opts.base, paths, log, Date.now)
  const store = opened.store
  // The database's clock, unless the caller owns the clock (tests): liveness times written by every
  // coordinator on the database compare alike (clock.ts).
  const clock = opts.now ? undefined : createClock({ read: () => store.clock(), log: log.withTag("clock") })
  await clock?.sync().catch((err) => log.warn("could not read the database's clock; using this host's", err))
  const now = opts.now ?? clock!.now
  const metrics = createMetrics()
  // Wakes this coordinator's waiters, and carries the topics to the other coordinators of the database.
  const brokerNotifier =
    config.notifier === "database"
      ? undefined
      : {
          kind: config.notifier,
          keys: opened.keys,
          onReject: (reason: string) => metrics.transportRejected(config.notifier, reason),
        }
  const hub = await createNotifier(store.kind, config.database, opts.base, log.withTag("notifier"), brokerNotifier)
  const startedAt = now()
  const t = timings(config)
  // Workers poll (and heartbeat) continuously; one silent for the worker threshold gets nothing new.
  const staleMs = Math.max(t.workerStale, (config.poll_wait_seconds + 5) * 1000)
  const pollGoneMs = config.scheduling.poll_gone_seconds * 1000
  const scheduler = createScheduler({ store, log: log.withTag("scheduler"), now, staleMs, pollGoneMs })
  // Every change committed through this coordinator wakes its waiters and the scheduler, and is counted.
  const unwire = wireWakeups(store, { notifier: hub, scheduler, metrics })
  const janitor = createJanitor({
    store,
    log: log.withTag("janitor"),
    now,
    timings: t,
    startedAt,
    staleMs,
    pollGoneMs,
    kick: () => scheduler.kick(),
  })
  let ready = false
  let transports: CoordinatorTransports | undefined
  const app = createApp({
    store,
    hub,
    janitor,
    config,
    log: log.withTag("api"),
    now,
    staleMs,
    ready: () => ready,
    metrics,
    startedAt,
    // HTTP until the brokers are connected (they connect once HTTP listens).
    serves: (t) => (transports ? transports.serves(t) : t === "http_polling"),
    brokers: () => transports?.list() ?? [],
  })
  let server: ReturnType<typeof Bun.serve>
  try {
    server = Bun.serve({
      hostname: config.host,
      port: config.port,
      // Long polls and streams lift this per request; everything else is short.
      idleTimeout: 30,
      // Far above every route's cap (api/body.ts): the routes refuse an oversized body with a 413 JSON
      // before reading it (Bun itself would drop the connection), and count chunked bodies as they stream.
      maxRequestBodySize: 2 ** 40,
      ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
      // Never Bun's development error page (stack, cwd and source lines) for an error that escapes the app.
      development: false,
      // An HTTP/1.0 request without Host has a relative URL, which every `new URL(req.url)` rejects.
      fetch: (req, server) =>
        URL.canParse(req.url)
          ? app.fetch(req, { server })
          : apiError(400, "E_INVALID", "the request has no Host header"),
      error: (err) => {
        if (databaseUnreachable(err))
          return apiError(503, "E_UNAVAILABLE", "the coordinator's database is unreachable; try again shortly", {
            "Retry-After": String(DATABASE_RETRY_AFTER_SECONDS),
          })
        log.error("request failed outside the API", err)
        return apiError(500, "E_INTERNAL", "internal error (see the coordinator log)")
      },
    })
  } catch (err) {
    const code = (err as { code?: string }).code ?? ""
    await hub.close?.()
    if (tls && /^ERR_OSSL_|^ERR_SSL_|X509|PEM/.test(code + (err as Error).message)) {
      await store.close()
      throw new ConfigError(
        `tls: cannot use cert_file ${tls.certFile} with key_file ${tls.keyFile}: ${(err as Error).message} (${code || "invalid PEM"})`,
      )
    }
    const why = listenProblem(code)
    if (why) {
      await store.close()
      const at = config.host.includes(":") ? `[${config.host}]:${config.port}` : `${config.host}:${config.port}`
      throw new ConfigError(`cannot listen on ${at}: ${why}`)
    }
    throw err
  }
  const host = server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname
  const url = `${tls ? "https" : "http"}://${host}:${server.port}`
  // Listed by `dffmpeg admin db status` from now on, with the URL it listens on.
  let presence: Awaited<ReturnType<typeof startPresence>>
  try {
    presence = await startPresence(store, { url, log, now, startedAt })
  } catch (err) {
    await server.stop(true)
    unwire()
    await store.close()
    throw err
  }
  if (brokers.enabled.some((t) => t !== "http_polling"))
    try {
      transports = await startTransports({
        transports: brokers,
        store,
        // The app as HTTP serves it, told which broker the request came by (the worker protocol checks it).
        fetch: async (req, kind) => app.fetch(req, { transport: kind }),
        onReject: (kind, reason) => metrics.transportRejected(kind, reason),
        log: log.withTag("transports"),
        notifier: hub instanceof BrokerNotifier ? hub : undefined,
      })
      if (hub instanceof BrokerNotifier) await hub.start()
    } catch (err) {
      await presence.stop()
      await server.stop(true)
      unwire()
      await hub.close?.()
      await store.close()
      throw err
    }
  ready = true
  // Which engine and where the store lives (a server database's URL with its password masked).
  log.info(`listening on ${url}`, { engine: store.kind, database: paths.database, coordinator: presence.id })
  janitor.start()
  clock?.start()
  const stopPruner = startNoncePruner({ store, log: log.withTag("nonces"), now })
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
      clock?.stop()
      await stopPruner()
      // Requesters over a broker see their answers end and go to another coordinator.
      await transports?.close()
      await server.stop(true)
      await scheduler.idle()
      unwire()
      await presence.stop()
      // After the last change of this coordinator was notified: the notifier sends it before it closes.
      await hub.close?.()
      await store.close()
      log.info("coordinator stopped")
    })())
  return { url, stop, [Symbol.asyncDispose]: stop }
}

/** The PEM texts of `tls.cert_file` and `tls.key_file` (relative to the config file), with a clear error for each. */
function readTls(cfg: { cert_file: string; key_file: string }, base: string) {
  const read = (name: string, file: string, marker: RegExp) => {
    const p = isAbsolute(file) ? file : join(base, file)
    let pem: string
    try {
      pem = readFileSync(p, "utf8")
    } catch (err) {
      throw new ConfigError(
        `tls.${name} ${p} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      )
    }
    if (!marker.test(pem))
      throw new ConfigError(`tls.${name} ${p} is not a PEM ${name === "cert_file" ? "certificate" : "private key"}`)
    return { p, pem }
  }
  const cert = read("cert_file", cfg.cert_file, /-----BEGIN CERTIFICATE-----/)
  const key = read("key_file", cfg.key_file, /-----BEGIN [A-Z ]*PRIVATE KEY-----/)
  return { cert: cert.pem, key: key.pem, certFile: cert.p, keyFile: key.p }
}

const apiError = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  Response.json({ error: { code, message } }, { status, headers: { "Cache-Control": "no-store", ...headers } })
