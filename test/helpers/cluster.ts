import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BIN, requireBinary, waitFor } from "./bin.ts"
import { Proc } from "./proc.ts"

export interface RunResult {
  code: number
  stdout: Uint8Array
  stderr: Uint8Array
  /** stdout/stderr as text (lossy; compare bytes for exactness). */
  out: string
  err: string
}

export interface RunOptions {
  cwd?: string
  /** Bytes for stdin; `"devnull"` for /dev/null; undefined: a pipe that is closed at once. */
  stdin?: Uint8Array | "devnull"
  env?: Record<string, string>
  timeoutMs?: number
}

export interface ClusterOptions {
  workers?: number
  maxJobs?: number
  /** Extra keys for every worker's YAML. */
  workerConfig?: Record<string, unknown>
  coordinatorConfig?: Record<string, unknown>
  /** Extra keys for the client's YAML (the proxy's and `client submit`'s). */
  clientConfig?: Record<string, unknown>
  /** Environment for every process (e.g. PATH with a fake ffmpeg first). */
  env?: Record<string, string>
  /** Register workers but do not start them (tests that start them later). */
  startWorkers?: boolean
  /**
   * The `coordinator:` block of every client, worker and remote admin config, given the coordinator's
   * port (default `{ port }`): e.g. `scheme: https` and `ca_file`, or the port of a proxy in between.
   */
  link?: (port: number) => Record<string, unknown>
  /**
   * Coordinator processes on the one database (`coordinatorConfig.database`, a server database), each
   * with its own config file beside the first, so all read the same secret file (SERVER_SECRET_FILE).
   * Default 1.
   */
  coordinators?: number
  /**
   * With several coordinators: the `coordinator:` value of `who`'s config ("client", "admin" or a
   * worker id), given every coordinator's port in start order. Default: all of them in that order.
   */
  links?: (ports: number[], who: string) => unknown
}

/** Runs `cmd` to its end with exactly `o.env` as its environment, collecting stdout and stderr (killed after `timeoutMs`). */
export async function runCommand(cmd: string[], o: RunOptions = {}): Promise<RunResult> {
  const stdin = o.stdin === "devnull" ? "ignore" : o.stdin ? new Blob([o.stdin]) : "pipe"
  const p = Bun.spawn(cmd, { cwd: o.cwd, env: o.env, stdin, stdout: "pipe", stderr: "pipe" })
  if (stdin === "pipe") (p.stdin as import("bun").FileSink).end()
  const timer = setTimeout(() => p.kill("SIGKILL"), o.timeoutMs ?? 60_000)
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).bytes(),
    new Response(p.stderr).bytes(),
    p.exited,
  ])
  clearTimeout(timer)
  const dec = new TextDecoder()
  return { code, stdout, stderr, out: dec.decode(stdout), err: dec.decode(stderr) }
}

const yaml = (o: unknown) => JSON.stringify(o, null, 2) // JSON is YAML

/** The user sandboxed jobs run as in tests (the workers run as root here). */
export const SANDBOX_USER = "nobody"

/**
 * A real cluster on 127.0.0.1: the compiled binary as coordinator (port 0), workers and the proxy,
 * each a separate process. Storage is one directory that the client sees as `client/media` and the
 * workers see as `worker-N/mnt` (different paths, as on real nodes).
 */
export class Cluster {
  readonly dir: string
  readonly storage: string
  readonly clientMedia: string
  readonly binDir: string
  readonly clientConfig: string
  readonly coordinatorConfig: string
  coordinator!: Proc
  url!: string
  port!: number
  readonly workers: Proc[] = []
  readonly workerIds: string[] = []
  /** Every coordinator process in start order (`coordinator` is the first), with its port. */
  readonly coordinators: { proc: Proc; port: number }[] = []
  private keys = new Map<string, string>()

  private constructor(readonly opts: ClusterOptions) {
    requireBinary()
    this.dir = mkdtempSync(join(tmpdir(), "dffmpeg-test-"))
    this.storage = join(this.dir, "storage")
    mkdirSync(this.storage)
    // Jobs run sandboxed as `nobody` (SANDBOX_USER): it must reach the storage and write into it; the
    // cluster directory itself (keys, configs) stays unlistable.
    chmodSync(this.dir, 0o711)
    chmodSync(this.storage, 0o777)
    mkdirSync(join(this.dir, "client"))
    this.clientMedia = join(this.dir, "client", "media")
    symlinkSync(this.storage, this.clientMedia)
    this.binDir = join(this.dir, "bin")
    mkdirSync(this.binDir)
    for (const t of ["ffmpeg", "ffprobe"]) symlinkSync(BIN, join(this.binDir, t))
    this.coordinatorConfig = join(this.dir, "coordinator.yaml")
    this.clientConfig = join(this.dir, "client.yaml")
  }

  static async start(opts: ClusterOptions = {}): Promise<Cluster> {
    const c = new Cluster(opts)
    try {
      await c.boot()
    } catch (err) {
      await c.stop()
      throw err
    }
    return c
  }

  /** The `coordinator:` value of client (`who`), worker and admin configs. */
  link(who = "client"): unknown {
    if (this.coordinators.length > 1) {
      const ports = this.coordinators.map((c) => c.port)
      return this.opts.links ? this.opts.links(ports, who) : ports.map((port) => ({ port }))
    }
    return this.opts.link ? this.opts.link(this.port) : { port: this.port }
  }

  private env(extra: Record<string, string> = {}): Record<string, string> {
    return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: this.dir, ...this.opts.env, ...extra }
  }

  private async boot() {
    writeFileSync(
      this.coordinatorConfig,
      yaml({ host: "127.0.0.1", port: 0, database: { path: "./coordinator.db" }, ...this.opts.coordinatorConfig }),
    )
    await this.addUser("client1", "client")
    await this.startCoordinator()
    this.coordinators.push({ proc: this.coordinator, port: this.port })
    for (let i = 2; i <= (this.opts.coordinators ?? 1); i++) await this.startSecondCoordinator()
    writeFileSync(
      this.clientConfig,
      yaml({
        client_id: "client1",
        hmac_key_file: "client1.key",
        coordinator: this.link(),
        paths: { Media: this.clientMedia },
        ...this.opts.clientConfig,
      }),
    )
    for (let i = 1; i <= (this.opts.workers ?? 1); i++) {
      const id = `worker${i}`
      await this.addUser(id, "worker")
      this.workerIds.push(id)
      if (this.opts.startWorkers !== false) await this.startWorker(id)
    }
  }

  /** Kills the coordinator (kill -9 by default) and starts it again on the same port and database. */
  async restartCoordinator(signal: NodeJS.Signals = "SIGKILL", pauseMs = 0): Promise<Proc> {
    await this.coordinator.stop(signal)
    await Bun.sleep(pauseMs)
    writeFileSync(
      this.coordinatorConfig,
      yaml({
        host: "127.0.0.1",
        port: this.port,
        database: { path: "./coordinator.db" },
        ...this.opts.coordinatorConfig,
      }),
    )
    return this.startCoordinator()
  }

  /**
   * Starts the proxy as a long-running process (for signal and kill tests); stdin is a pipe, or
   * /dev/null with `stdin: "ignore"` (a job without stdin: its downlink opens only when it has something).
   */
  spawnProxy<S extends "pipe" | "ignore" = "pipe">(tool: "ffmpeg" | "ffprobe", args: string[], o: { stdin?: S } = {}) {
    return Bun.spawn([join(this.binDir, tool), ...args], {
      cwd: this.dir,
      env: this.env({ DFFMPEG_CLIENT_CONFIG: this.clientConfig }),
      stdin: (o.stdin ?? "pipe") as S,
      stdout: "pipe",
      stderr: "pipe",
    })
  }

  /** `admin jobs show ID --json`: the job with its timeline. */
  async job(id: string): Promise<{
    id: string
    status: string
    exitCode: number | null
    error: string | null
    workerId: string | null
    attempts: number
    events: { status: string; workerId: string | null; epoch: number; reason: string | null }[]
  }> {
    const r = await this.admin(["jobs", "show", id, "--json"])
    if (r.code !== 0) throw new Error(`jobs show failed: ${r.err}`)
    return JSON.parse(r.out)
  }

  async startCoordinator(): Promise<Proc> {
    const p = Bun.spawn([BIN, "coordinator", "--config", this.coordinatorConfig], {
      cwd: this.dir,
      env: this.env(),
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    })
    this.coordinator = new Proc("coordinator", p)
    const m = await this.coordinator.waitForLine(/listening on (https?:\/\/127\.0\.0\.1:(\d+))/)
    this.url = m[1]
    this.port = Number(m[2])
    return this.coordinator
  }

  /**
   * Another coordinator process on this cluster's database (a server database in `coordinatorConfig`:
   * SQLite is one host's), on a port of its own, added to `coordinators`; stopped with the cluster.
   * Its config is the first's but for the port, so it shares the database and the secret file.
   */
  async startSecondCoordinator(): Promise<{ proc: Proc; url: string; port: number }> {
    const n = this.coordinators.length + 1
    const config = join(this.dir, `coordinator${n}.yaml`)
    writeFileSync(config, yaml({ host: "127.0.0.1", port: 0, ...this.opts.coordinatorConfig }))
    const proc = new Proc(
      `coordinator${n}`,
      Bun.spawn([BIN, "coordinator", "--config", config], {
        cwd: this.dir,
        env: this.env(),
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      }),
    )
    const m = await proc.waitForLine(/listening on (https?:\/\/127\.0\.0\.1:(\d+))/)
    this.coordinators.push({ proc, port: Number(m[2]) })
    return { proc, url: m[1], port: Number(m[2]) }
  }

  async addUser(name: string, role: "client" | "worker" | "admin"): Promise<string> {
    const r = await this.admin(["users", "add", name, "--role", role])
    if (r.code !== 0) throw new Error(`users add ${name} failed: ${r.err}`)
    const key = r.out.trim()
    this.keys.set(name, key)
    writeFileSync(join(this.dir, `${name}.key`), key + "\n", { mode: 0o600 })
    return key
  }

  key(name: string): string {
    return this.keys.get(name)!
  }

  workerMedia(id: string): string {
    return join(this.dir, id, "mnt")
  }

  /** Writes `<id>/worker.yaml` (the cluster's defaults, then `workerConfig`, then `extra`); returns its path. */
  writeWorkerConfig(id: string, extra: Record<string, unknown> = {}): string {
    const wdir = join(this.dir, id)
    mkdirSync(wdir, { recursive: true })
    rmSync(this.workerMedia(id), { force: true })
    symlinkSync(this.storage, this.workerMedia(id))
    const cfg = join(wdir, "worker.yaml")
    writeFileSync(
      cfg,
      yaml({
        client_id: id,
        hmac_key_file: `../${id}.key`,
        coordinator: this.link(id),
        paths: { Media: this.workerMedia(id) },
        max_jobs: this.opts.maxJobs ?? 4,
        // Tests stop workers often; production keeps the 5 s default.
        min_drain_time_seconds: 0.2,
        // Every test runs its jobs confined, as production does by default.
        sandbox: "bwrap",
        run_as: SANDBOX_USER,
        ...this.opts.workerConfig,
        ...extra,
      }),
    )
    return cfg
  }

  /** Starts a worker process without waiting for it (tests of refused start-ups). */
  spawnWorker(id: string, extra: Record<string, unknown> = {}, env: Record<string, string> = {}): Proc {
    const cfg = this.writeWorkerConfig(id, extra)
    return new Proc(
      id,
      Bun.spawn([BIN, "worker", "--config", cfg], {
        cwd: join(this.dir, id),
        env: this.env(env),
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      }),
    )
  }

  async startWorker(id: string, extra: Record<string, unknown> = {}): Promise<Proc> {
    const proc = this.spawnWorker(id, extra)
    const idx = this.workerIds.indexOf(id)
    this.workers[idx === -1 ? this.workers.length : idx] = proc
    // A worker taking over its identity from a process that did not deregister (killed, or stopped too
    // slowly on a loaded machine) waits until the coordinator counts that one as gone: up to the offline
    // threshold, about 22 s with the defaults (docs/operations.md, "One identity, one worker").
    await proc.waitForLine(/worker registered/, 30_000)
    return proc
  }

  /** Runs `dffmpeg admin --config <coordinator.yaml> ...args`. */
  admin(args: string[]): Promise<RunResult> {
    return this.exec([BIN, "admin", "--config", this.coordinatorConfig, ...args], {})
  }

  /** The admin identity config written by `enableAdmin` (remote mode of `dffmpeg admin`). */
  adminConfig?: string

  /**
   * Creates an admin identity and writes its config (`<dir>/<name>.yaml`: client_id, hmac_key_file,
   * coordinator port) for `remote()`. Returns the config's path.
   */
  async enableAdmin(name = "admin1"): Promise<string> {
    await this.addUser(name, "admin")
    const file = join(this.dir, `${name}.yaml`)
    writeFileSync(file, yaml({ client_id: name, hmac_key_file: `${name}.key`, coordinator: this.link("admin") }))
    this.adminConfig = file
    return file
  }

  /** Runs `dffmpeg admin --config <admin config> ...args`: the remote mode, signed as the admin identity. */
  remote(args: string[], o: RunOptions = {}): Promise<RunResult> {
    if (!this.adminConfig) throw new Error("call enableAdmin() first")
    return this.exec([BIN, "admin", "--config", this.adminConfig, ...args], o)
  }

  /** Runs `dffmpeg client VERB --config <client.yaml> ...args` as client1. */
  client(verb: string, args: string[] = [], o: RunOptions = {}): Promise<RunResult> {
    return this.exec([BIN, "client", verb, "--config", this.clientConfig, ...args], o)
  }

  /** Runs the proxy: the `ffmpeg`/`ffprobe` symlink to the compiled binary. */
  run(tool: "ffmpeg" | "ffprobe", args: string[], o: RunOptions = {}): Promise<RunResult> {
    return this.exec([join(this.binDir, tool), ...args], o, { DFFMPEG_CLIENT_CONFIG: this.clientConfig })
  }

  /**
   * A client config like client1's with other keys over it (`passthrough_paths`...), and the env that
   * makes the proxy use it: `c.run(tool, args, { env: c.clientWith("name", {...}) })`.
   */
  clientWith(name: string, keys: Record<string, unknown>): Record<string, string> {
    const file = join(this.dir, `${name}.yaml`)
    writeFileSync(file, yaml({ ...JSON.parse(readFileSync(this.clientConfig, "utf8")), ...keys }))
    return { DFFMPEG_CLIENT_CONFIG: file }
  }

  /** Runs the real local binary with the same arguments, for comparison. */
  local(tool: "ffmpeg" | "ffprobe", args: string[], o: RunOptions = {}): Promise<RunResult> {
    return this.exec([tool, ...args], o)
  }

  exec(cmd: string[], o: RunOptions, env: Record<string, string> = {}): Promise<RunResult> {
    return runCommand(cmd, { ...o, cwd: o.cwd ?? this.dir, env: this.env({ ...env, ...o.env }) })
  }

  /** `admin jobs ls --json`, parsed. */
  async jobs(): Promise<
    {
      id: string
      status: string
      args: string[]
      exitCode: number | null
      workerId: string | null
      error: string | null
      startedAt: number | null
      finishedAt: number | null
      attempts: number
    }[]
  > {
    const r = await this.admin(["jobs", "ls", "--json", "--limit", "1000"])
    if (r.code !== 0) throw new Error(`jobs ls failed: ${r.err}`)
    return JSON.parse(r.out)
  }

  waitFor = waitFor

  /** Every process's log, for a failing test's message. */
  logs(): string {
    return [
      ...(this.coordinators.length > 1 ? this.coordinators.map((c) => c.proc) : [this.coordinator]),
      ...this.workers,
    ]
      .filter(Boolean)
      .map((p) => `--- ${p.name}\n${p.log()}`)
      .join("\n")
  }

  async stop() {
    await Promise.all(this.workers.filter(Boolean).map((w) => w.stop("SIGTERM")))
    await Promise.all(
      (this.coordinators.length > 1 ? this.coordinators.map((c) => c.proc) : [this.coordinator])
        .filter(Boolean)
        .map((p) => p.stop("SIGTERM")),
    )
    rmSync(this.dir, { recursive: true, force: true })
  }

  async [Symbol.asyncDispose]() {
    await this.stop()
  }
}
