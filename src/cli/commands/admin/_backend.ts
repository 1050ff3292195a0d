import { existsSync, readFileSync } from "node:fs"
import type { Tail } from "../../../shared/tail.ts"
import type { JanitorReport } from "../../../coordinator/janitor.ts"
import { findConfig, searchPaths } from "../../../shared/config/load.ts"
import { ConfigError, UsageError } from "../../../shared/errors.ts"
import type { Job, JobEvent, JobStatus, Role, User } from "../../../shared/protocol/schemas.ts"
import type { StreamRow } from "../../../store/types.ts"
import type { WorkerView } from "../../views.ts"

export type { WorkerView }

export interface DashboardLink {
  url: string
  user: string
  expiresAt: number
}

export interface JobQuery {
  status?: JobStatus
  worker?: string
  requester?: string
  /** Created at or after (ms). */
  since?: number
  /** Older than this job id (paging). */
  before?: string
  limit: number
}

/**
 * What `dffmpeg admin` can do, whichever way it reaches the coordinator: over the signed HTTP API as an
 * admin identity (`remote`), or directly on the coordinator's own database on its host (`local`, the
 * bootstrap mode that needs no key). Unknown names and ids throw NotFoundError in both.
 */
export interface AdminBackend {
  readonly mode: "remote" | "local"
  /** The coordinator URL (remote) or the database file (local), for messages. */
  readonly target: string

  listUsers(): Promise<User[]>
  getUser(name: string): Promise<User>
  /** Creates a user with a new key; the only time the key is shown. */
  addUser(name: string, role: Role): Promise<{ user: User; key: string }>
  removeUser(name: string): Promise<User>
  /** A new key for the user; the old one is refused from now on. */
  rotateKey(name: string): Promise<string>

  listJobs(q: JobQuery): Promise<Job[]>
  getJob(id: string): Promise<Job>
  events(id: string): Promise<JobEvent[]>
  /** The last `lines` lines of the job's stderr as a terminal shows them, from at most the tail byte cap. */
  stderrTail(id: string, lines: number): Promise<Tail>
  /** One page of the output stored after position `after` (empty: nothing more yet); never waits. */
  output(id: string, after: number): Promise<StreamRow[]>
  /** Output after `after` as it is written, until the job has ended and all of it was delivered, or `signal` aborts. */
  follow(id: string, after: number, onRow: (row: StreamRow) => Promise<void>, signal: AbortSignal): Promise<void>
  /** Cancels the job (at once, or by asking its worker); ConflictError when it had already ended. */
  cancelJob(id: string): Promise<Job>
  /** Submits a failed detached job again as a new job; ConflictError for any other job. */
  retryJob(id: string): Promise<Job>
  /**
   * A one-time dashboard sign-in link valid `ttlMs`: for the signing admin (remote), or for `user`
   * (local: an admin identity in the database; the only one when not given).
   */
  dashboardLink(ttlMs: number, user?: string): Promise<DashboardLink>

  listWorkers(): Promise<WorkerView[]>
  getWorker(id: string): Promise<WorkerView>
  /** An administrator's sticky drain (`on`) or undrain. */
  setDrain(id: string, on: boolean): Promise<WorkerView>
  /** One janitor pass on the coordinator. */
  janitor(): Promise<JanitorReport>

  close(): Promise<void>
}

export interface ModeOptions {
  /** `--config FILE`: an admin identity config (has `client_id`) or the coordinator's config. */
  config?: string
  /** `--local`: use the coordinator's database on this host. */
  local?: boolean
  /** The verb only reads: local mode creates no database (see `openStore`). */
  readOnly?: boolean
}

export type Mode = { kind: "remote"; file: string } | { kind: "local"; file?: string }

/** True when `file` is an identity config (it names a `client_id`) rather than a coordinator config. */
export function isIdentityConfig(file: string): boolean {
  if (!existsSync(file)) throw new ConfigError(`config file ${file} does not exist`)
  try {
    const doc = Bun.YAML.parse(readFileSync(file, "utf8"))
    return !!doc && typeof doc === "object" && "client_id" in doc
  } catch {
    // Unreadable or broken YAML: loading it as the coordinator config reports the problem precisely.
    return false
  }
}

/**
 * Remote or local, decided once per command (docs/cli.md):
 * 1. `--local` → local, with `--config` (a coordinator config) or the coordinator config search;
 * 2. `--config F` → remote when F has `client_id` (an admin identity), otherwise local with F;
 * 3. neither → remote when an admin config is found (`DFFMPEG_ADMIN_CONFIG`, ./dffmpeg-admin.yaml,
 *    ~/.config/dffmpeg/admin.yaml, /etc/dffmpeg/admin.yaml), otherwise local with the coordinator
 *    config search.
 * So `dffmpeg admin --config coordinator.yaml ...` on the coordinator host keeps working without a key.
 */
export function chooseMode(
  o: ModeOptions,
  find: (role: "admin") => string | undefined = (role) => findConfig(role),
): Mode {
  if (o.local) {
    if (o.config && isIdentityConfig(o.config))
      throw new UsageError(
        `--local works on the coordinator's own database, but ${o.config} is an identity config (it has client_id): pass the coordinator's config, or leave out --local`,
      )
    return { kind: "local", file: o.config }
  }
  if (o.config)
    return isIdentityConfig(o.config) ? { kind: "remote", file: o.config } : { kind: "local", file: o.config }
  const admin = find("admin")
  return admin ? { kind: "remote", file: admin } : { kind: "local" }
}

/**
 * The coordinator config of a verb that works only on the coordinator's host, on its database and
 * secret file (`security rotate-secret`, `db status`, `db migrate`): `--local`, or `--config` naming
 * the coordinator's config, or the coordinator config search. An admin identity config is refused
 * saying where the verb `works` (exit 2).
 */
export function localConfig(o: ModeOptions, works: string): string {
  const mode = chooseMode(o)
  if (mode.kind === "remote")
    throw new UsageError(
      `${works}: pass the coordinator's config (--config FILE) or --local, not the admin identity config ${mode.file}`,
    )
  const file = mode.file ?? findConfig("coordinator")
  if (!file)
    throw new ConfigError(
      `no coordinator config found (looked in ${searchPaths("coordinator").join(", ")}); pass --config FILE`,
    )
  return file
}

/** Opens the backend for `o`; its modules load lazily so the other mode's dependencies stay cold. */
export async function openBackend(o: ModeOptions): Promise<AdminBackend> {
  const mode = chooseMode(o)
  if (mode.kind === "remote") {
    const { openHttpBackend } = await import("./_http.ts")
    return openHttpBackend(mode.file)
  }
  const file = mode.file ?? findConfig("coordinator")
  if (!file) {
    const looked = [...searchPaths("admin"), ...searchPaths("coordinator")].join(", ")
    throw new ConfigError(
      `no admin config and no coordinator config found (looked in ${looked}); pass --config FILE, or set DFFMPEG_ADMIN_CONFIG`,
    )
  }
  const { openLocalBackend } = await import("./_local.ts")
  return openLocalBackend(file, o.readOnly)
}

/** Runs `fn` with a backend and always closes it. */
export async function withBackend<T>(o: ModeOptions, fn: (b: AdminBackend) => Promise<T>): Promise<T> {
  const b = await openBackend(o)
  try {
    return await fn(b)
  } finally {
    await b.close()
  }
}
