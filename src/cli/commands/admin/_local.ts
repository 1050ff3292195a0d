import { generateKey } from "../../../shared/auth/hmac.ts"
import { NotFoundError, UnavailableError, UsageError } from "../../../shared/errors.ts"
import { followOutput } from "../../../shared/follow.ts"
import { pause } from "../../../shared/pause.ts"
import { isTerminal, type Job } from "../../../shared/protocol/schemas.ts"
import { DEFAULT_TAIL_BYTES, tailChunks, tailOf } from "../../../shared/tail.ts"
import { hostname } from "node:os"
import { cancelJob, retryJob } from "../../../coordinator/jobs.ts"
import { createSignInLink, dashboardBase, signInUrl } from "../../../coordinator/dashboard/session.ts"
import type { CoordinatorConfig } from "../../../shared/config/server-schema.ts"
import type { Store } from "../../../store/index.ts"
import type { AdminBackend, WorkerView } from "./_backend.ts"
import { openStore } from "./_store.ts"

/** How often a local `jobs logs -f` looks for new output: there is no coordinator to wake it. */
const POLL_MS = 250
const PAGE = 256

export async function openLocalBackend(file: string, readOnly = false): Promise<AdminBackend> {
  const { store, path, config } = await openStore(file, { readOnly })
  return localBackend(store, path, Date.now, config.limits.max_log_tail_bytes, config)
}

/**
 * Where the coordinator listens, as a browser on another host would write it: the address a running
 * coordinator on this database registered (`listened`, the most recently seen one; it knows its real
 * port when the config says 0), else host and port from its config. A wildcard address becomes this
 * host's name.
 */
export function listenOrigin(config: Pick<CoordinatorConfig, "host" | "port" | "tls">, listened?: string): string {
  const wild = /^(0\.0\.0\.0|::|\[::\]|)$/
  if (listened) {
    const u = new URL(listened)
    if (wild.test(u.hostname)) u.hostname = hostname()
    return u.origin
  }
  const host = wild.test(config.host) ? hostname() : config.host
  return `${config.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${config.port}`
}

/** Coordinators seen this recently count as running (they refresh their row every few seconds). */
const RUNNING_MS = 5 * 60_000

/**
 * `AdminBackend` on the coordinator's own database (bootstrap on its host; no key needed). Changes are
 * the same guarded store transitions the coordinator makes, but it is not told about them: it sees a
 * cancel or an undrain at its workers' next poll rather than at once.
 */
export function localBackend(
  store: Store,
  target: string,
  now: () => number = Date.now,
  tailBytes = DEFAULT_TAIL_BYTES,
  config?: Pick<CoordinatorConfig, "host" | "port" | "tls" | "path_base" | "dashboard_url" | "scheduling">,
): AdminBackend {
  const job = async (id: string): Promise<Job> => {
    const j = await store.getJob(id)
    if (!j) throw new NotFoundError(`no job ${id}`)
    return j
  }
  const withLoad = async (w: Omit<WorkerView, "load">): Promise<WorkerView> => ({
    ...w,
    load: (await store.workerLoads()).get(w.id) ?? 0,
  })

  return {
    mode: "local",
    target,

    listUsers: () => store.listUsers(),
    async getUser(name) {
      const user = await store.getUser(name)
      if (!user) throw new NotFoundError(`no user ${name}`)
      return user
    },
    async addUser(name, role) {
      const key = generateKey()
      return { user: await store.addUser(name, role, key, now()), key }
    },
    async removeUser(name) {
      const user = await store.getUser(name)
      if (!user || !(await store.removeUser(name))) throw new NotFoundError(`no user ${name}`)
      return user
    },
    async rotateKey(name) {
      const key = generateKey()
      if (!(await store.setUserKey(name, key))) throw new NotFoundError(`no user ${name}`)
      return key
    },

    // Summaries, as over the API: `jobs show` has a job whole.
    listJobs: (q) => store.listJobSummaries(q),
    getJob: job,
    events: (id) => store.events(id),
    async stderrTail(id, lines) {
      await job(id)
      const read = await store.lastOutputBytes(id, "stderr", tailChunks(lines), tailBytes)
      return tailOf(
        read.rows.map((r) => r.data),
        lines,
        read.truncated,
      )
    },
    output: (id, after) => store.readOutput(id, after, PAGE),

    async follow(id, after, onRow, signal) {
      await followOutput({
        after,
        read: (cursor, limit) => store.readOutput(id, cursor, limit ?? PAGE),
        onRow,
        live: { state: () => job(id), ended: (j) => isTerminal(j.status), wait: (s) => pause(POLL_MS, s) },
        signal,
      })
    },

    // The coordinator's own cancel, by an administrator without an identity (no key is needed here).
    cancelJob: (id) => cancelJob(store, id, { name: null }, now()),

    retryJob: (id) => retryJob(store, id, { name: null }, now(), (config?.scheduling.aging_seconds ?? 0) * 1000),
    async dashboardLink(ttlMs, user) {
      if (!config) throw new UsageError("dashboard-link needs the coordinator's config (its address)")
      const admins = (await store.listUsers()).filter((u) => u.role === "admin")
      const name = user ?? (admins.length === 1 ? admins[0].name : undefined)
      if (!name)
        throw new UsageError(
          admins.length
            ? `several admin identities exist (${admins.map((u) => u.name).join(", ")}): choose one with --user NAME`
            : "no admin identity exists yet: add one first (dffmpeg admin users add NAME --role admin)",
        )
      if (!admins.some((u) => u.name === name)) throw new NotFoundError(`no admin identity ${name}`)
      const at = now()
      const running = config.dashboard_url ? undefined : (await store.listCoordinators(at - RUNNING_MS))[0]?.url
      if (!config.dashboard_url && !running && config.port === 0)
        throw new UnavailableError(
          "no running coordinator on this database says where it listens, and its config has port 0: start it, or set dashboard_url",
        )
      const token = await createSignInLink(store, name, ttlMs, at)
      const base = dashboardBase(config, listenOrigin(config, running ?? undefined))
      return { url: signInUrl(base, token), user: name, expiresAt: at + ttlMs }
    },

    async listWorkers() {
      const loads = await store.workerLoads()
      return (await store.listWorkers()).map((w) => ({ ...w, load: loads.get(w.id) ?? 0 }))
    },
    async getWorker(id) {
      const w = await store.getWorker(id)
      if (!w) throw new NotFoundError(`no worker ${id}`)
      return withLoad(w)
    },
    async setDrain(id, on) {
      const w = await store.requestDrain(id, on, now())
      if (!w) throw new NotFoundError(`no worker ${id}`)
      return withLoad(w)
    },
    async janitor() {
      // A pass from here could not wake the coordinator's waiting streams or its scheduler, and with the
      // coordinator down it would reap workers and jobs that are only waiting for it to come back.
      throw new UsageError(
        "janitor run needs the remote mode (an admin identity config): the coordinator runs the janitor itself every janitor.interval, and a pass from outside it could fail jobs that are only waiting for it to restart",
      )
    },

    close: () => store.close(),
  }
}
