import {
  accessSync,
  closeSync,
  constants as fsc,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
} from "node:fs"
import { constants as osc } from "node:os"
import { posix } from "node:path"
import type { WorkerConfig } from "../shared/config/server-schema.ts"
import { ConfigError, InvalidError } from "../shared/errors.ts"
import type { Logger } from "../shared/log.ts"

/** The user ffmpeg runs as (after `setpriv --reuid/--regid`). `name` set: its groups come from /etc/group. */
export interface RunAs {
  uid: number
  gid: number
  name?: string
}

/** Top-level system entries as they are on this host: `/lib → usr/lib` links (merged /usr) or real directories. */
export interface HostLayout {
  links: [path: string, target: string][]
  dirs: string[]
}

/** Everything one job's sandbox is made of; built per job by the runner, turned into argv by {@link bwrapArgs}. */
export interface SandboxSpec {
  bwrap: string
  layout: HostLayout
  /** Extra read-only paths: the binaries outside /usr (the files themselves) and `sandbox_ro_paths`. */
  ro: string[]
  /** Read-write binds of the job's mapped roots: host `src` (realpath) at `dest` (as the worker names it). */
  roots: { src: string; dest: string }[]
  /** The worker's `passthrough_paths` (bound only when they exist). */
  passthrough: string[]
  /** The job's private scratch directory, read-write. */
  scratch?: string
  /** The worker's copies of the job's concat lists and filter scripts (worker/contents.ts), read-only. */
  files?: string
  /** Device nodes or folders (`--dev-bind-try`). */
  devices: string[]
  network: boolean
  cwd: string
  /** bwrap writes `{"child-pid": N}` there: N leads the sandbox's process group (signals are sent to it). */
  infoFd?: number
}

/** System files ffmpeg needs besides /usr: libblas via alternatives, the loader cache, fonts, time zone. */
export const SYSTEM_RO = [
  "/etc/alternatives",
  "/etc/ld.so.cache",
  "/etc/ld.so.conf",
  "/etc/ld.so.conf.d",
  "/etc/fonts",
  "/etc/localtime",
  "/var/cache/fontconfig",
  "/etc/OpenCL",
]
/** Name resolution and TLS roots, only with `allow_network`. */
export const NETWORK_RO = [
  "/etc/resolv.conf",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/gai.conf",
  "/etc/host.conf",
  "/etc/ssl",
  "/etc/ca-certificates",
]
/** Nodes `--dev /dev` already provides: a passthrough path among them needs no bind. */
const DEV_BUILTIN = new Set([
  "/dev/null",
  "/dev/zero",
  "/dev/full",
  "/dev/random",
  "/dev/urandom",
  "/dev/tty",
  "/dev/stdin",
  "/dev/stdout",
  "/dev/stderr",
  "/dev/fd",
  "/dev/ptmx",
  "/dev/shm",
  "/dev/pts",
])
const TOP_LEVEL = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]

const inside = (p: string, root: string) => root === "/" || p === root || p.startsWith(root + "/")
const depth = (p: string) => (p === "/" ? 0 : p.split("/").length - 1)

/**
 * The bwrap argv (up to and including `--`) for one job. Mounts are emitted parents first (by depth of
 * the destination, stable), so a root under /tmp lands on the sandbox's own tmpfs and a device under
 * /dev on its own /dev. Required paths (/usr, the roots, the scratch dir) use plain binds so a missing
 * one fails the job loudly; optional system files use the `-try` forms.
 */
export function bwrapArgs(s: SandboxSpec): string[] {
  const ops: { dest: string; argv: string[] }[] = []
  const add = (dest: string, ...argv: string[]) => ops.push({ dest: posix.resolve(dest), argv })
  add("/usr", "--ro-bind", "/usr", "/usr")
  for (const [path, target] of s.layout.links) add(path, "--symlink", target, path)
  for (const d of s.layout.dirs) add(d, "--ro-bind", d, d)
  for (const p of SYSTEM_RO) add(p, "--ro-bind-try", p, p)
  if (s.network) for (const p of NETWORK_RO) add(p, "--ro-bind-try", p, p)
  for (const p of s.ro) if (!inside(p, "/usr")) add(p, "--ro-bind-try", p, p)
  add("/dev", "--dev", "/dev")
  add("/proc", "--proc", "/proc")
  add("/tmp", "--tmpfs", "/tmp")
  for (const d of s.devices) add(d, "--dev-bind-try", d, d)
  for (const p of s.passthrough) {
    if (DEV_BUILTIN.has(p) || p.startsWith("/dev/fd/")) continue
    add(p, inside(p, "/dev") ? "--dev-bind-try" : "--bind-try", p, p)
  }
  for (const r of s.roots) add(r.dest, "--bind", r.src, r.dest)
  if (s.scratch) add(s.scratch, "--bind", s.scratch, s.scratch)
  if (s.files) add(s.files, "--ro-bind", s.files, s.files)
  const seen = new Set<string>()
  const mounts = ops
    .map((o, i) => ({ ...o, i }))
    .sort((a, b) => depth(a.dest) - depth(b.dest) || a.i - b.i)
    .filter((o) => {
      const key = o.argv.join("\0")
      if (seen.has(key)) return false
      seen.add(key)
      return true
    })
    .flatMap((o) => o.argv)
  return [
    s.bwrap,
    "--unshare-all",
    ...(s.network ? ["--share-net"] : []),
    "--die-with-parent",
    "--new-session",
    ...(s.infoFd === undefined ? [] : ["--info-fd", String(s.infoFd)]),
    ...mounts,
    "--chdir",
    s.cwd,
    "--",
  ]
}

/**
 * The `setpriv` prefix: SIGKILL when the worker dies (`--pdeathsig`, set after the uid change, which
 * would clear it), and the drop to `run_as` when the worker is root. A named user keeps its
 * supplementary groups (`render`/`video` for GPUs); a bare uid gets none.
 */
export function setprivArgs(setpriv: string, runAs?: RunAs): string[] {
  const drop = runAs
    ? ["--reuid", String(runAs.uid), "--regid", String(runAs.gid), runAs.name ? "--init-groups" : "--clear-groups"]
    : []
  return [setpriv, "--pdeathsig", "KILL", ...drop, "--"]
}

/** Environment variables a job keeps: locale, time zone and GPU driver selection; never the worker's secrets. */
const KEEP_ENV =
  /^(PATH|LANG|LANGUAGE|TZ|LC_[A-Z_]+|LIBVA_[A-Z_]+|VDPAU_[A-Z_]+|CUDA_[A-Z_]+|NVIDIA_[A-Z_]+|OCL_[A-Z_]+|INTEL_[A-Z_]+|MFX_[A-Z_]+|AV_LOG_FORCE_[A-Z_]+)$/

/** The environment of a sandboxed job: an allow-list of the worker's, with HOME and TMPDIR on the sandbox's /tmp. */
export function jobEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined && KEEP_ENV.test(k)) out[k] = v
  return { ...out, HOME: "/tmp", TMPDIR: "/tmp" }
}

/**
 * `run_as` → uid/gid: a user name (looked up in `passwd`, the text of /etc/passwd), `uid` (its primary
 * group when listed, else gid = uid) or `uid:gid`. Returns undefined for an unknown name.
 */
export function parseRunAs(spec: string, passwd: string): RunAs | undefined {
  const rows = passwd
    .split("\n")
    .map((l) => l.split(":"))
    .filter((f) => f.length >= 4)
  const num = /^(\d+)(?::(\d+))?$/.exec(spec)
  if (num) {
    const uid = Number(num[1])
    const row = rows.find((f) => Number(f[2]) === uid && /^\d+$/.test(f[2]))
    return { uid, gid: num[2] !== undefined ? Number(num[2]) : row ? Number(row[3]) : uid }
  }
  const row = rows.find((f) => f[0] === spec)
  return row ? { uid: Number(row[2]), gid: Number(row[3]), name: spec } : undefined
}

/** {@link parseRunAs} over /etc/passwd, then `id` (NSS: LDAP, sssd) for names it does not list. */
export function resolveRunAs(spec: string): RunAs {
  let passwd = ""
  try {
    passwd = readFileSync("/etc/passwd", "utf8")
  } catch {
    // no /etc/passwd: `id` below
  }
  const found = parseRunAs(spec, passwd)
  if (found) return found
  const id = (flag: string) => {
    const r = Bun.spawnSync(["id", flag, "--", spec], { stdout: "pipe", stderr: "ignore" })
    return r.exitCode === 0 ? Number(r.stdout.toString().trim()) : NaN
  }
  const uid = id("-u")
  const gid = id("-g")
  if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid, name: spec }
  throw new ConfigError(`run_as: no user "${spec}" on this host; give an existing user name or uid[:gid]`)
}

/** How /bin, /lib, … look on this host: links to recreate or directories to bind. */
export function hostLayout(): HostLayout {
  const out: HostLayout = { links: [], dirs: [] }
  for (const p of TOP_LEVEL) {
    try {
      const st = lstatSync(p)
      if (st.isSymbolicLink()) out.links.push([p, readlinkSync(p)])
      else if (st.isDirectory()) out.dirs.push(p)
    } catch {
      // absent on this host
    }
  }
  return out
}

/**
 * The binds of a job's roots: each root at the worker's own path, from the directory it resolved to when
 * the worker started (`real`), and under that real path too when it differs (a symlinked root). A root
 * whose path resolves elsewhere now than at start (a symlink on it was changed: by someone who can write
 * the storage, to point the sandbox at other files) refuses the job; a missing one is left to bwrap,
 * which fails the job with its own message.
 */
export function rootBinds(roots: { name: string; root: string; real: string }[]): { src: string; dest: string }[] {
  const out: { src: string; dest: string }[] = []
  for (const { name, root, real } of roots) {
    let now: string | undefined
    try {
      now = realpathSync(root)
    } catch {
      // missing (unmounted): the bind fails with bwrap's message
    }
    if (now !== undefined && now !== real) {
      throw new InvalidError(
        `the directory of $${name} (${root}) now resolves to ${now}, not to ${real} as when the worker started: a symlink on its path was changed; restart the worker if that is intended`,
      )
    }
    out.push({ src: real, dest: root })
    if (real !== root) out.push({ src: real, dest: real })
  }
  return out
}

/** A death by signal N comes out of bwrap's init as exit 128+N (bash's convention): the signal name, or null. */
export function signalOfExit(code: number | null): string | null {
  if (code === null || code <= 128 || code > 128 + 64) return null
  const name = Object.entries(osc.signals).find(([, n]) => n === code - 128)?.[0]
  return name ?? null
}

/** How this worker confines its jobs; decided once at start-up. */
export interface Confinement {
  mode: "bwrap" | "none"
  /** The argv that starts `command` for one job (bwrap mode: with `--info-fd` {@link INFO_FD}, which the spawn must open). */
  argv(
    job: { roots: { src: string; dest: string }[]; scratch?: string; files?: string; cwd: string },
    command: string[],
  ): string[]
  /** The environment of a job. */
  env(): Record<string, string> | undefined
  /** Owner of the scratch directory (the run_as user), when it is not the worker's own. */
  owner?: RunAs
  /** Registration capabilities: what operators see in `admin workers` and on the dashboard (`runAs`: e.g. `nobody (65534:65534)`). */
  capabilities: { sandbox: "bwrap" | "none"; runAs: string }
}

export const INFO_FD = 3

const describe = (u: { uid: number; gid: number; name?: string }) => `${u.name ?? "uid"} (${u.uid}:${u.gid})`

function whoAmI(): RunAs {
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  let name: string | undefined
  try {
    name = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .map((l) => l.split(":"))
      .find((f) => f[2] === String(uid))?.[0]
  } catch {
    // no /etc/passwd: described by uid only
  }
  return { uid, gid, name }
}

/**
 * Decides how jobs run and checks that it works, or throws a ConfigError naming the fix:
 * - root with no `run_as` and no `allow_root` is refused;
 * - `sandbox: bwrap` needs bwrap and a probe that really runs each binary's `-version` confined;
 * - `sandbox: none` is allowed but warned about at every start.
 */
export async function createConfinement(
  cfg: WorkerConfig,
  binaries: Map<string, string>,
  log: Logger,
  setpriv?: string,
): Promise<Confinement> {
  const me = whoAmI()
  const root = me.uid === 0
  let runAs: RunAs | undefined
  if (cfg.run_as) {
    const want = resolveRunAs(cfg.run_as)
    if (!root && want.uid !== me.uid)
      throw new ConfigError(
        `run_as: ${cfg.run_as} needs the worker to run as root to switch users (it runs as ${describe(me)}); start it as root or as ${cfg.run_as}, or remove run_as`,
      )
    if (root && want.uid !== 0) runAs = want
  }
  if (root && !runAs && !cfg.allow_root) {
    throw new ConfigError(
      "the worker runs as root and would run ffmpeg as root: set run_as to an unprivileged user (e.g. run_as: nobody), or allow_root: true to accept it",
    )
  }
  if (runAs && !setpriv) throw new ConfigError("run_as needs setpriv to drop privileges: install util-linux")
  const user = runAs ? describe(runAs) : describe(me)
  const env = { ...process.env }
  const prefix = (cmd: string[]) => (setpriv ? [...setprivArgs(setpriv, runAs), ...cmd] : cmd)

  if (cfg.sandbox === "none") {
    log.warn(
      "sandbox: none: jobs run UNCONFINED and can read and write every file the job's user can; set sandbox: bwrap",
      { user },
    )
    return {
      mode: "none",
      argv: (_job, command) => prefix(command),
      env: () => undefined,
      owner: runAs,
      capabilities: { sandbox: "none", runAs: user },
    }
  }

  const bwrap = Bun.which("bwrap")
  if (!bwrap)
    throw new ConfigError(
      "sandbox: bwrap, but bwrap is not installed: install the bubblewrap package (apt-get install bubblewrap), or set sandbox: none to run jobs unconfined",
    )
  const layout = hostLayout()
  const ro = [...new Set([...cfg.sandbox_ro_paths, ...[...binaries.values()].flatMap(binaryFiles)])]
  for (const d of cfg.devices) {
    try {
      accessSync(d, fsc.F_OK)
    } catch {
      log.warn("device not present; jobs will not see it", { device: d })
    }
  }
  const spec = (job: {
    roots: { src: string; dest: string }[]
    scratch?: string
    files?: string
    cwd: string
  }): SandboxSpec => ({
    bwrap,
    layout,
    ro,
    roots: job.roots,
    passthrough: cfg.passthrough_paths,
    scratch: job.scratch,
    files: job.files,
    devices: cfg.devices,
    network: cfg.allow_network,
    cwd: job.cwd,
    infoFd: INFO_FD,
  })
  const c: Confinement = {
    mode: "bwrap",
    argv: (job, command) => prefix([...bwrapArgs(spec(job)), ...command]),
    env: () => jobEnv(env),
    owner: runAs,
    capabilities: { sandbox: "bwrap", runAs: user },
  }
  await Promise.all([...binaries].map(([name, exe]) => probe(c, name, exe)))
  log.info("jobs run sandboxed", {
    sandbox: "bwrap",
    user,
    network: cfg.allow_network,
    devices: cfg.devices.join(",") || undefined,
  })
  return c
}

/**
 * A binary outside /usr (as configured and resolved): the file itself, never its directory, which may
 * hold anything (a home folder, the worker's own config and key). Its libraries, when it has some
 * outside /usr, are added with `sandbox_ro_paths`.
 */
function binaryFiles(exe: string): string[] {
  const files = [exe]
  try {
    files.push(realpathSync(exe))
  } catch {
    // unresolvable: only the configured path
  }
  return files.filter((f) => !inside(f, "/usr"))
}

/** What a short confined command printed (`runConfined`). */
export interface Ran {
  /** Exit code, null when it died by a signal (or was killed at the timeout). */
  code: number | null
  stdout: string
  stderr: string
  timedOut: boolean
}

/**
 * Runs a short command (`<binary> -version`, a capability listing, a job's duration probe) confined
 * exactly as a job would be: with no roots and `/` as its directory, or with a job's binds (`job`);
 * SIGKILLed after `timeoutMs` or when `signal` aborts. Throws only when it cannot start.
 */
export async function runConfined(
  c: Confinement,
  command: string[],
  timeoutMs: number,
  opts: { job?: Parameters<Confinement["argv"]>[0]; signal?: AbortSignal } = {},
): Promise<Ran> {
  const job = opts.job ?? { roots: [], cwd: "/" }
  const p = Bun.spawn(c.argv(job, command), {
    cwd: job.cwd,
    env: c.env(),
    stdio: ["ignore", "pipe", "pipe", c.mode === "bwrap" ? "pipe" : "ignore"],
  })
  let timedOut = false
  const kill = () => p.kill("SIGKILL")
  const timer = setTimeout(() => {
    timedOut = true
    kill()
  }, timeoutMs)
  opts.signal?.addEventListener("abort", kill, { once: true })
  if (opts.signal?.aborted) kill()
  const info = typeof p.stdio[INFO_FD] === "number" ? readChildPid(p.stdio[INFO_FD] as number) : undefined
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(p.stdout as ReadableStream).text(),
      new Response(p.stderr as ReadableStream).text(),
      p.exited,
      info,
    ])
    return { code: p.signalCode ? null : code, stdout, stderr, timedOut }
  } finally {
    clearTimeout(timer)
    opts.signal?.removeEventListener("abort", kill)
  }
}

/** Runs `<binary> -version` in the sandbox exactly as a job would; throws a ConfigError naming the fix. */
async function probe(c: Confinement, name: string, exe: string): Promise<void> {
  const hint =
    "check that unprivileged user namespaces are enabled (sysctl kernel.unprivileged_userns_clone=1, and kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu), that the run_as user can execute the binary, and add the directories of a binary's libraries to sandbox_ro_paths; or set sandbox: none"
  let r: Ran
  try {
    r = await runConfined(c, [exe, "-version"], 15_000)
  } catch (err) {
    throw new ConfigError(`sandbox probe failed: cannot start bwrap: ${(err as Error).message}; ${hint}`)
  }
  if (r.code === 0) return
  const why = (r.stderr.trim() || r.stdout.trim() || `exit ${r.code ?? "by a signal"}`).split("\n")[0].slice(0, 300)
  throw new ConfigError(
    `sandbox probe failed: ${name} (${exe}) -version did not run in the sandbox (exit ${r.code}): ${why}; ${containerHint(why)}${hint}`,
  )
}

/**
 * What a container's defaults refuse bubblewrap, read from its first line (docs/docker.md): Docker masks
 * parts of /proc, so the kernel refuses the sandbox its own /proc; its seccomp and AppArmor profiles refuse
 * the namespaces and mounts.
 */
export function containerHint(why: string): string {
  if (/Can't mount proc/.test(why))
    return "in a container, /proc is masked: run it with --security-opt systempaths=unconfined (docs/docker.md); "
  if (/(namespace|uid map|make \/ slave|mount).*(not permitted|Permission denied)/i.test(why))
    return "in a container, run it with --security-opt seccomp=unconfined and apparmor=unconfined (docs/docker.md); "
  return ""
}

/** Reads bwrap's `--info-fd` (then closes it): the pid of the sandbox's init, which leads its process group. */
export async function readChildPid(fd: number): Promise<number | undefined> {
  try {
    const pid = (JSON.parse(await Bun.file(fd).text()) as { "child-pid"?: unknown })["child-pid"]
    return typeof pid === "number" && Number.isInteger(pid) && pid > 1 ? pid : undefined
  } catch {
    return undefined // bwrap failed before writing it: its own message is on stderr
  } finally {
    try {
      closeSync(fd)
    } catch {
      // already closed
    }
  }
}

/** Does `ppid` have a child yet? Scans /proc (not every kernel has /proc/PID/task/TID/children). */
function hasChild(ppid: number): boolean {
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8")
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ")".
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === ppid) return true
    } catch {
      // gone meanwhile
    }
  }
  return false
}

/**
 * Delivers a signal into a bwrap sandbox. bwrap forwards none (containers/bubblewrap#369): a signal
 * to it kills bwrap, and --die-with-parent then SIGKILLs ffmpeg before it can finalize. So signals go
 * to the sandbox's process group (`--new-session` makes its init the leader): ffmpeg gets them as if
 * sent to it, and the init, pid 1 of its namespace, ignores them. Until init has forked the command a
 * signal would only reach init and be lost, so delivery waits for that (bounded). SIGKILL goes to
 * bwrap and to the init, which takes the whole pid namespace down with it.
 */
export function sandboxSignaller(
  outer: { kill(sig?: NodeJS.Signals | number): void; exitCode: number | null; signalCode: unknown },
  leader: Promise<number | undefined>,
  log: Logger,
) {
  const alive = () => outer.exitCode === null && outer.signalCode === null
  return async (sig: NodeJS.Signals | number) => {
    const init = await leader
    if (!alive()) return
    try {
      if (sig === "SIGKILL" || sig === 9 || init === undefined) {
        outer.kill(sig)
        if (init !== undefined) process.kill(init, "SIGKILL")
        return
      }
      for (let i = 0; i < 500 && alive(); i++) {
        if (hasChild(init)) return void process.kill(-init, sig)
        await Bun.sleep(10)
      }
    } catch (err) {
      log.debug("signal into the sandbox failed", { signal: String(sig), reason: (err as Error).message })
    }
  }
}
