import { coordinatorTargets, loadConfig, resolveKey } from "../../../shared/config/load.ts"
import { AdminConfig } from "../../../shared/config/server-schema.ts"
import { explainYaml } from "../../../shared/config/yaml-explain.ts"
import { resolveTransports } from "../../../shared/config/transports.ts"
import { openClientTransports } from "../../../transports/index.ts"
import { AuthError, UnavailableError, UsageError } from "../../../shared/errors.ts"
import { createApiClient, readJson, type ApiClient } from "../../../shared/http/client.ts"
import { listJobPages } from "../../../shared/http/pages.ts"
import { Kind, decodeFrames, type Frame } from "../../../shared/protocol/frames.ts"
import { jobFrames } from "../../../client/stream.ts"
import type { Job, JobEvent, User } from "../../../shared/protocol/schemas.ts"
import type { StreamRow } from "../../../store/types.ts"
import type { JanitorReport } from "../../../coordinator/janitor.ts"
import type { AdminBackend, DashboardLink, JobQuery, WorkerView } from "./_backend.ts"

/** The remote backend, as the admin identity of `file` (an admin config). */
export async function openHttpBackend(file: string): Promise<AdminBackend> {
  const { config, base, warnings } = await loadConfig("admin", AdminConfig, file, {}, explainYaml)
  for (const w of warnings) process.stderr.write(`dffmpeg: warning: ${w}\n`)
  const key = resolveKey(config, base)
  // A broker in `transports:`: requests go over the first transport that works, in the order listed.
  const wanted = resolveTransports(config.transports, base)
  const peers = wanted.enabled.some((t) => t !== "http_polling")
    ? await openClientTransports({ transports: wanted, identity: config.client_id, key })
    : undefined
  const api = createApiClient({
    coordinators: coordinatorTargets(config.coordinator, base),
    client: config.client_id,
    key,
    fetch: peers?.fetch,
  })
  return httpBackend(api, file)
}

const enc = encodeURIComponent

/** `AdminBackend` over the signed API. Errors keep their type (and so their exit code) and gain a hint. */
export function httpBackend(api: ApiClient, file?: string): AdminBackend {
  const hint = (err: unknown): unknown => {
    if (err instanceof AuthError && err.status === 403)
      return new AuthError(
        `${err.message} (dffmpeg admin needs an admin identity${file ? `; ${file} names ${api.client}` : ""})`,
        403,
      )
    if (err instanceof UnavailableError)
      return new UnavailableError(`${err.message} (on the coordinator host, --local works on its database directly)`)
    return err
  }
  const call = async <T>(method: string, path: string, opts?: Parameters<ApiClient["json"]>[2]): Promise<T> => {
    try {
      return await api.json<T>(method, path, opts)
    } catch (err) {
      throw hint(err)
    }
  }

  /**
   * Job and worker reads use routes that any identity may call, and a client identity would silently
   * see only its own jobs there. Fetching our own user through an admin-only route first turns a
   * non-admin identity into a clear 403 instead.
   */
  let checked: Promise<unknown> | undefined
  const asAdmin = () => (checked ??= call("GET", `/api/v1/admin/users/${enc(api.client)}`))

  const readRows = (frames: Frame[]): StreamRow[] =>
    frames
      .filter((f) => f.kind === Kind.stdout || f.kind === Kind.stderr)
      .map((f) => ({ pos: f.seq, stream: f.kind === Kind.stdout ? "stdout" : "stderr", data: f.data }))

  return {
    mode: "remote",
    target: api.url,

    listUsers: () => call<User[]>("GET", "/api/v1/admin/users"),
    getUser: (name) => call<User>("GET", `/api/v1/admin/users/${enc(name)}`),
    addUser: (name, role) => call<{ user: User; key: string }>("POST", "/api/v1/admin/users", { json: { name, role } }),
    removeUser: (name) => call<User>("DELETE", `/api/v1/admin/users/${enc(name)}`),
    rotateKey: async (name) => (await call<{ key: string }>("POST", `/api/v1/admin/users/${enc(name)}/rotate-key`)).key,

    async listJobs(q: JobQuery) {
      await asAdmin()
      try {
        return await listJobPages(
          api,
          { status: q.status, worker: q.worker, requester: q.requester, since: q.since, before: q.before },
          q.limit,
        )
      } catch (err) {
        throw hint(err)
      }
    },
    async getJob(id) {
      await asAdmin()
      return call<Job>("GET", `/api/v1/jobs/${id}`)
    },
    async events(id) {
      await asAdmin()
      return call<JobEvent[]>("GET", `/api/v1/jobs/${id}/events`)
    },
    async stderrTail(id, lines) {
      const res = await call<{ lines: string[]; truncated?: boolean }>("GET", `/api/v1/admin/jobs/${id}/log`, {
        query: { tail: lines },
      })
      return { lines: res.lines, truncated: res.truncated === true }
    },

    async output(id, after) {
      try {
        const res = await api.request("GET", `/api/v1/jobs/${id}/output`, { query: { after, limit: 1000 } })
        // A refusal carries a JSON error body: readJson throws it with its type.
        if (!res.ok) await readJson(res)
        return readRows(decodeFrames(new Uint8Array(await res.arrayBuffer())))
      } catch (err) {
        throw hint(err)
      }
    },

    async follow(id, after, onRow, signal) {
      try {
        for await (const f of jobFrames(api, { job: id, after, signal })) {
          const [row] = readRows([f])
          if (row) await onRow(row)
        }
      } catch (err) {
        throw hint(err)
      }
    },

    async cancelJob(id) {
      await asAdmin()
      return call<Job>("POST", `/api/v1/jobs/${id}/cancel`)
    },

    retryJob: (id) => call<Job>("POST", `/api/v1/admin/jobs/${id}/retry`),
    async dashboardLink(ttlMs, user) {
      const me = api.client
      if (user !== undefined && user !== me)
        throw new UsageError(
          `over the API a link signs in the identity that asks for it (${me}); leave out --user, or use --local on the coordinator host`,
        )
      return call<DashboardLink>("POST", "/api/v1/admin/dashboard-link", {
        body: JSON.stringify({ ttlSeconds: Math.round(ttlMs / 1000) }),
      })
    },

    async listWorkers() {
      await asAdmin()
      return call<WorkerView[]>("GET", "/api/v1/workers")
    },
    async getWorker(id) {
      await asAdmin()
      return call<WorkerView>("GET", `/api/v1/workers/${enc(id)}`)
    },
    setDrain: (id, on) => call<WorkerView>("POST", `/api/v1/admin/workers/${enc(id)}/${on ? "drain" : "undrain"}`),
    janitor: () => call<JanitorReport>("POST", "/api/v1/admin/janitor"),

    close: async () => {},
  }
}
