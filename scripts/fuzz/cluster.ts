import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BIN, requireBinary, waitFor } from "../../test/helpers/bin.ts"
import { Proc } from "../../test/helpers/proc.ts"

/** Identities the fuzzer signs as; `fw1` is the real worker process, `fzw` a worker only the fuzzer drives. */
export const IDENTITIES = {
  fzadmin: "admin",
  fzclient: "client",
  fzclient2: "client",
  fzw: "worker",
  fw1: "worker",
} as const
export type IdentityName = keyof typeof IDENTITIES

/** One process invocation recorded by the ffmpeg/ffprobe wrappers. */
export interface Spawn {
  pid: number
  ppid: number
  cwd: string
  tool: string
  argv: string[]
  file: string
}

const yaml = (o: unknown) => JSON.stringify(o, null, 2) // JSON is YAML

/** If the fuzzer dies (crash, Ctrl-C, a killed test), its coordinator and worker die with it; exec keeps the pid. */
const orphanGuard = (): string[] => {
  const setpriv = Bun.which("setpriv")
  return setpriv ? [setpriv, "--pdeathsig", "KILL", "--"] : []
}

/**
 * The system under fuzz: the compiled coordinator (port 0, its own database) and one real worker whose
 * ffmpeg and ffprobe are recording wrappers: each spawn writes its pid, cwd and argv to a file, then
 * execs the real binary. Everything lives in one temp directory, removed by `stop()`.
 */
export class FuzzCluster {
  readonly dir = mkdtempSync(join(tmpdir(), "dffmpeg-fuzz-"))
  readonly spawnDir = join(this.dir, "spawns")
  /** The worker's `$Media` root, nested so that `$Media/..` plus two `../` is still inside `dir`. */
  readonly media = join(this.dir, "m", "1", "2", "3", "media")
  /** Worker TMPDIR, nested deep so `../` arguments of hostile jobs stay inside `dir`. */
  readonly workerTmp = join(this.dir, "t", "1", "2", "3", "4", "5", "6", "7", "tmp")
  readonly keys = {} as Record<IdentityName, string>
  coordinator!: Proc
  worker!: Proc
  url = ""
  port = 0
  private constructor() {}

  static async start(
    opts: { coordinatorConfig?: Record<string, unknown>; workerConfig?: Record<string, unknown> } = {},
  ): Promise<FuzzCluster> {
    requireBinary()
    const c = new FuzzCluster()
    try {
      await c.boot(opts)
    } catch (err) {
      await c.stop()
      throw err
    }
    return c
  }

  private env(extra: Record<string, string> = {}) {
    return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: this.dir, ...extra }
  }

  private async boot(opts: { coordinatorConfig?: Record<string, unknown>; workerConfig?: Record<string, unknown> }) {
    for (const d of [this.spawnDir, this.media, join(this.media, "out"), this.workerTmp])
      mkdirSync(d, { recursive: true })
    await this.makeMedia()
    const bin = join(this.dir, "bin")
    mkdirSync(bin)
    for (const tool of ["ffmpeg", "ffprobe"]) {
      const real = Bun.which(tool)
      if (!real) throw new Error(`${tool} is not on PATH (apt-get install ffmpeg)`)
      writeWrapper(join(bin, tool), tool, real, this.spawnDir)
    }
    const coordCfg = join(this.dir, "coordinator.yaml")
    writeFileSync(
      coordCfg,
      yaml({
        host: "127.0.0.1",
        port: 0,
        database: { path: "./coordinator.db" },
        // Polls of the fuzzer's worker answer quickly; a job nobody starts goes back to the queue.
        poll_wait_seconds: 1,
        janitor: { interval: 1, job_assignment_timeout: 3, job_pending_timeout: 20 },
        ...opts.coordinatorConfig,
      }),
    )
    for (const [name, role] of Object.entries(IDENTITIES)) {
      const r = Bun.spawnSync([BIN, "admin", "--config", coordCfg, "users", "add", name, "--role", role], {
        cwd: this.dir,
        env: this.env(),
        stderr: "pipe",
      })
      if (r.exitCode !== 0) throw new Error(`users add ${name} failed: ${r.stderr.toString()}`)
      this.keys[name as IdentityName] = r.stdout.toString().trim()
      writeFileSync(join(this.dir, `${name}.key`), this.keys[name as IdentityName] + "\n", { mode: 0o600 })
    }
    const cp = Bun.spawn([...orphanGuard(), BIN, "coordinator", "--config", coordCfg], {
      cwd: this.dir,
      env: this.env(),
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    })
    this.coordinator = new Proc("coordinator", cp)
    const m = await this.coordinator.waitForLine(/listening on (http:\/\/127\.0\.0\.1:(\d+))/, 20_000)
    this.url = m[1]
    this.port = Number(m[2])
    const wcfg = join(this.dir, "worker.yaml")
    writeFileSync(
      wcfg,
      yaml({
        client_id: "fw1",
        hmac_key_file: "fw1.key",
        coordinator: { port: this.port },
        paths: { Media: this.media },
        binaries: { ffmpeg: join(bin, "ffmpeg"), ffprobe: join(bin, "ffprobe") },
        max_jobs: 4,
        min_drain_time_seconds: 0.2,
        // The wrappers must write their record outside any job's roots, so jobs run unconfined here;
        // hostile arguments are chosen so that whatever they write stays inside the fuzz directory.
        sandbox: "none",
        allow_root: true,
        ...opts.workerConfig,
      }),
    )
    const wp = Bun.spawn([...orphanGuard(), BIN, "worker", "--config", wcfg], {
      cwd: this.dir,
      env: this.env({ TMPDIR: this.workerTmp }),
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    })
    this.worker = new Proc("worker", wp)
    await this.worker.waitForLine(/worker (registered|online)/, 20_000)
    // Online (verified): only then does the scheduler give it work.
    await waitFor(() => this.coordinator.stderrText.some((l) => /worker online.*worker=fw1/.test(l)), {
      timeoutMs: 20_000,
      what: "worker fw1 online",
    })
  }

  /** A short WAV and a Matroska file with an attachment (for -dump_attachment cases). */
  private async makeMedia() {
    const ff = (args: string[]) => {
      const r = Bun.spawnSync(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", ...args], {
        cwd: this.media,
        stderr: "pipe",
      })
      if (r.exitCode !== 0) throw new Error(`ffmpeg ${args.join(" ")}: ${r.stderr.toString()}`)
    }
    ff(["-f", "lavfi", "-i", "sine=d=0.2", "in.wav"])
    writeFileSync(join(this.media, "note.txt"), "fuzz attachment\n")
    ff(["-i", "in.wav", "-attach", "note.txt", "-metadata:s:t", "mimetype=text/plain", "-c", "copy", "att.mkv"])
    writeFileSync(join(this.media, "list.txt"), "file 'in.wav'\n")
  }

  /** Every spawn the wrappers recorded so far. */
  spawns(): Spawn[] {
    return readSpawns(this.spawnDir)
  }

  /** pid → job id, from the worker's `job started job=… pid=…` lines. */
  startedJobs(): Map<number, string> {
    const m = new Map<number, string>()
    for (const l of this.worker.stderrText) {
      // The job's own process, and the ffprobe its argument policy runs first to read attachment names.
      const r = /(?:job started|attachment names probe started) .*job=(\S+).*pid=(\d+)/.exec(l)
      if (r) m.set(Number(r[2]), r[1])
    }
    return m
  }

  /** VmRSS of the coordinator in bytes (0 once it is gone). */
  coordinatorRss(): number {
    try {
      const s = readFileSync(`/proc/${this.coordinator.pid}/status`, "utf8")
      const m = /VmRSS:\s+(\d+) kB/.exec(s)
      return m ? Number(m[1]) * 1024 : 0
    } catch {
      return 0
    }
  }

  /** User + system CPU seconds of the coordinator so far. */
  coordinatorCpuSeconds(): number {
    try {
      const f = readFileSync(`/proc/${this.coordinator.pid}/stat`, "utf8")
      const rest = f.slice(f.lastIndexOf(")") + 2).split(" ")
      // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
      return Math.round(((Number(rest[11]) + Number(rest[12])) / 100) * 10) / 10
    } catch {
      return 0
    }
  }

  alive(p: Proc): boolean {
    return p.proc.exitCode === null && p.proc.signalCode === null
  }

  async stop(keepDir = false) {
    await this.worker?.stop("SIGTERM")
    await this.coordinator?.stop("SIGTERM")
    if (!keepDir) rmSync(this.dir, { recursive: true, force: true })
  }
}

/**
 * A shell script standing in for `tool`: it records its pid, parent, cwd and every argument
 * (NUL-separated, one file per spawn in `spawnDir`), then execs `real` with the same arguments. exec
 * keeps the pid, which is the one the worker logs as `job started ... pid=`.
 */
export function writeWrapper(file: string, tool: string, real: string, spawnDir: string): void {
  const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`
  writeFileSync(
    file,
    [
      "#!/bin/sh",
      `f=${q(spawnDir)}/"$$"`,
      'while [ -e "$f" ]; do f="$f+"; done',
      `{ printf 'pid=%s\\0ppid=%s\\0cwd=%s\\0tool=%s\\0' "$$" "$PPID" "$PWD" ${q(tool)}; printf '%s\\0' "$@"; } >"$f"`,
      `exec ${q(real)} "$@"`,
      "",
    ].join("\n"),
  )
  chmodSync(file, 0o755)
}

/** The spawns recorded by `writeWrapper` scripts in `spawnDir`. */
export function readSpawns(spawnDir: string): Spawn[] {
  const out: Spawn[] = []
  for (const f of readdirSync(spawnDir)) {
    const parts = readFileSync(join(spawnDir, f), "utf8").split("\0")
    parts.pop()
    const field = (i: number, k: string) => (parts[i]?.startsWith(k + "=") ? parts[i].slice(k.length + 1) : "")
    out.push({
      pid: Number(field(0, "pid")),
      ppid: Number(field(1, "ppid")),
      cwd: field(2, "cwd"),
      tool: field(3, "tool"),
      argv: parts.slice(4),
      file: f,
    })
  }
  return out
}

export interface SpawnCheck {
  fromAccepted: number
  hostile: number
  /** One line per spawn that no accepted job explains. */
  unexplained: string[]
}

/**
 * Joins each spawn (by pid) with the job the worker said it started, and that job with the submits the
 * coordinator accepted: a spawn without a job, or of a job never accepted, ran from a rejected input.
 */
export function checkSpawns(
  spawns: Spawn[],
  started: Map<number, string>,
  accepted: Map<string, { hostile: boolean }>,
): SpawnCheck {
  const res: SpawnCheck = { fromAccepted: 0, hostile: 0, unexplained: [] }
  for (const s of spawns) {
    const job = started.get(s.pid)
    const sub = job ? accepted.get(job) : undefined
    const argv = JSON.stringify(s.argv.slice(0, 12)).slice(0, 400)
    if (!job) res.unexplained.push(`${s.tool} pid ${s.pid} was spawned but the worker logged no job for it: ${argv}`)
    else if (!sub)
      res.unexplained.push(
        `${s.tool} pid ${s.pid} ran job ${job}, which the coordinator never accepted (no 201/200 seen): ${argv}`,
      )
    else {
      res.fromAccepted++
      if (sub.hostile) res.hostile++
    }
  }
  return res
}
