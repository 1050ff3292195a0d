import { stat } from "node:fs/promises"
import { dirname } from "node:path"
import type { WorkerConfig } from "../shared/config/server-schema.ts"
import type { Logger } from "../shared/log.ts"

interface Mount {
  path: string
  recovery?: string[]
}

/** Resolves within `ms` or rejects: a hung network mount must never hold up the worker. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>
  const timeout = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms)),
  )
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** A directory is a mount point when it is on another device than its parent (or is `/`). */
async function isMountPoint(path: string, ms: number): Promise<boolean> {
  if (path === "/") return true
  const [a, b] = await Promise.all([
    within(stat(path), ms, `stat ${path}`),
    within(stat(dirname(path)), ms, `stat ${dirname(path)}`),
  ])
  return a.dev !== b.dev
}

/**
 * Health of the worker's path variables. Checks run on the thread pool with a timeout (never on the
 * event loop, so a hung NFS mount cannot stop heartbeats or output), and a check still pending from
 * the last round counts as unhealthy. A variable is healthy when its directory answers `stat` in time
 * and every managed mount at or above it is mounted. With `recovery`, an unmounted managed mount's
 * `recovery_command` is run (argv, no shell) once per round while it stays down.
 */
export function createMountMonitor(cfg: WorkerConfig, log: Logger) {
  const ms = cfg.mount_check_timeout_seconds * 1000
  const mounts: Mount[] = cfg.mount_management.mounts.map((m) =>
    typeof m === "string" ? { path: m } : { path: m.path, recovery: m.recovery_command },
  )
  const inFlight = new Set<string>()
  let last = new Map<string, string | undefined>() // variable → reason it is unhealthy (undefined: healthy)

  const covering = (dir: string) =>
    mounts.filter((m) => dir === m.path || dir.startsWith(m.path.endsWith("/") ? m.path : m.path + "/"))

  const checkMount = async (m: Mount): Promise<string | undefined> => {
    try {
      if (await isMountPoint(m.path, ms)) return undefined
    } catch (err) {
      return (err as Error).message
    }
    if (cfg.mount_management.recovery && m.recovery?.length && !inFlight.has(`recover:${m.path}`)) {
      inFlight.add(`recover:${m.path}`)
      log.warn("mount is down; running its recovery command", { mount: m.path, command: m.recovery.join(" ") })
      try {
        const p = Bun.spawn(m.recovery, { stdin: "ignore", stdout: "ignore", stderr: "pipe" })
        const code = await within(p.exited, ms * 4, "recovery command")
        if (code !== 0)
          log.warn("mount recovery failed", {
            mount: m.path,
            code,
            stderr: (await new Response(p.stderr).text()).trim().slice(0, 500),
          })
        else if (await isMountPoint(m.path, ms).catch(() => false)) return undefined
      } catch (err) {
        log.warn("mount recovery failed", { mount: m.path, reason: (err as Error).message })
      } finally {
        inFlight.delete(`recover:${m.path}`)
      }
    }
    return `${m.path} is not mounted`
  }

  const checkVar = async (name: string, dir: string): Promise<string | undefined> => {
    if (inFlight.has(name)) return "the previous check has not finished (hung mount?)"
    inFlight.add(name)
    const work = (async () => {
      for (const m of covering(dir)) {
        const why = await checkMount(m)
        if (why) return why
      }
      const st = await stat(dir)
      return st.isDirectory() ? undefined : `${dir} is not a directory`
    })()
    // The slot is freed when the check really returns, so checks of a hung mount never pile up.
    work.finally(() => inFlight.delete(name)).catch(() => {})
    try {
      return await within(work, ms + (covering(dir).some((m) => m.recovery) ? ms * 4 : 0), `the check of ${dir}`)
    } catch (err) {
      return (err as Error).message
    }
  }

  return {
    /** Healthy variable names, sorted; logs each change of health. */
    async check(): Promise<string[]> {
      const names = Object.keys(cfg.paths)
      const results = await Promise.all(names.map((n) => checkVar(n, cfg.paths[n])))
      const now = new Map(names.map((n, i) => [n, results[i]]))
      for (const [n, why] of now) {
        if (last.has(n) && last.get(n) === why) continue
        if (why) log.warn("path variable unavailable; not advertised", { variable: n, path: cfg.paths[n], reason: why })
        else if (last.has(n)) log.info("path variable available again", { variable: n, path: cfg.paths[n] })
      }
      last = now
      return names.filter((n) => !now.get(n)).sort()
    },
  }
}
