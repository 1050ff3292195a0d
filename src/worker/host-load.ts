import { readFileSync } from "node:fs"
import { join } from "node:path"
import { GPU_NAME_MAX, MAX_GPUS, type HostLoad } from "../shared/protocol/host-load.ts"
import type { Logger } from "../shared/log.ts"

/** Longest an nvidia-smi query may take before this heartbeat goes without GPUs. */
const NVIDIA_SMI_TIMEOUT_MS = 2000
const NVIDIA_QUERY = [
  "--query-gpu=name,utilization.gpu,memory.used,memory.total",
  "--format=csv,noheader,nounits",
] as const
const MiB = 1024 * 1024

export interface HostLoadSampler {
  /** The host's load now (CPU busy since the last call); undefined where /proc cannot be read. */
  sample(): Promise<HostLoad | undefined>
}

interface CpuTimes {
  busy: number
  total: number
}

/** The aggregate `cpu` line of /proc/stat as busy and total jiffies (idle and iowait are not busy), and the CPU count. */
export function parseProcStat(text: string): { times: CpuTimes; cpus: number } | undefined {
  const lines = text.split("\n")
  const cpu = lines.find((l) => l.startsWith("cpu "))
  if (!cpu) return undefined
  // user nice system idle iowait irq softirq steal (guest time is already counted in user).
  const f = cpu.trim().split(/\s+/).slice(1, 9).map(Number)
  if (f.length < 4 || f.some((n) => !Number.isFinite(n))) return undefined
  const total = f.reduce((a, b) => a + b, 0)
  const idle = f[3] + (f[4] ?? 0)
  const cpus = lines.filter((l) => /^cpu\d+\s/.test(l)).length
  return { times: { busy: total - idle, total }, cpus: Math.max(1, cpus) }
}

/** MemTotal and MemTotal − MemAvailable of /proc/meminfo, in bytes. */
export function parseMeminfo(text: string): { used: number; total: number } | undefined {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)
    return m ? Number(m[1]) * 1024 : undefined
  }
  const total = kb("MemTotal")
  // Kernels before 3.14 have no MemAvailable: free + buffers + cache is its old estimate.
  const avail = kb("MemAvailable") ?? (kb("MemFree") ?? 0) + (kb("Buffers") ?? 0) + (kb("Cached") ?? 0)
  if (total === undefined) return undefined
  return { total, used: Math.min(total, Math.max(0, total - avail)) }
}

/** A GPU name as the coordinator takes it: printable, at most GPU_NAME_MAX characters. */
const gpuName = (s: string) =>
  s
    .replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, "")
    .trim()
    .slice(0, GPU_NAME_MAX) || "gpu"
const pct = (n: number) => (Number.isFinite(n) ? Math.min(100, Math.max(0, n)) : null)
const bytes = (n: number) => (Number.isFinite(n) && n >= 0 ? Math.min(Number.MAX_SAFE_INTEGER, Math.round(n)) : null)

/** nvidia-smi's `name, utilization.gpu, memory.used, memory.total` lines (MiB; `[N/A]` where unsupported). */
export function parseNvidiaSmi(text: string): HostLoad["gpus"] {
  const out: HostLoad["gpus"] = []
  for (const line of text.split("\n")) {
    const cols = line.split(",").map((c) => c.trim())
    if (cols.length < 4 || !cols[0]) continue
    const n = (s: string) => (/^\d+(\.\d+)?$/.test(s) ? Number(s) : NaN)
    out.push({
      name: gpuName(cols.slice(0, cols.length - 3).join(",")),
      utilPercent: pct(n(cols.at(-3)!)),
      memUsedBytes: bytes(n(cols.at(-2)!) * MiB),
      memTotalBytes: bytes(n(cols.at(-1)!) * MiB),
    })
  }
  return out.slice(0, MAX_GPUS)
}

/**
 * Measures the host for the worker's heartbeats (docs/observability.md, "Host load"): CPU busy % from
 * /proc/stat deltas between samples (the first against the one taken at creation), the 1-minute load
 * average, memory from /proc/meminfo, and GPUs: nvidia-smi when it is on PATH (each query bounded by
 * NVIDIA_SMI_TIMEOUT_MS), AMD's `gpu_busy_percent` (and VRAM) under /sys/class/drm. Nothing found is
 * nothing reported, silently; at most MAX_GPUS GPUs. `root` (tests) is where /proc and /sys are read.
 */
export function createHostLoadSampler(opts: {
  log: Logger
  root?: string
  nvidiaSmi?: string | null
}): HostLoadSampler {
  const root = opts.root ?? "/"
  const read = (p: string) => {
    try {
      return readFileSync(join(root, p), "utf8")
    } catch {
      return undefined
    }
  }
  const nvidiaSmi = opts.nvidiaSmi === undefined ? Bun.which("nvidia-smi") : opts.nvidiaSmi
  let smiFailed = false
  let last = parseProcStat(read("proc/stat") ?? "")?.times

  const nvidia = async (): Promise<HostLoad["gpus"]> => {
    if (!nvidiaSmi) return []
    try {
      const p = Bun.spawn([nvidiaSmi, ...NVIDIA_QUERY], { stdout: "pipe", stderr: "ignore", stdin: "ignore" })
      const timer = setTimeout(() => p.kill("SIGKILL"), NVIDIA_SMI_TIMEOUT_MS)
      const text = await new Response(p.stdout).text()
      clearTimeout(timer)
      if ((await p.exited) !== 0) throw new Error(`nvidia-smi exited with ${p.exitCode ?? p.signalCode}`)
      smiFailed = false
      return parseNvidiaSmi(text.slice(0, 64 * 1024))
    } catch (err) {
      if (!smiFailed) opts.log.debug("nvidia-smi gave no GPU load", { reason: (err as Error).message })
      smiFailed = true
      return []
    }
  }
  const amd = (): HostLoad["gpus"] => {
    const out: HostLoad["gpus"] = []
    const glob = new Bun.Glob("sys/class/drm/card*/device/gpu_busy_percent")
    let paths: string[]
    try {
      paths = [...glob.scanSync({ cwd: root, followSymlinks: true, onlyFiles: true })].sort()
    } catch {
      return out
    }
    for (const p of paths.slice(0, MAX_GPUS)) {
      const dir = p.slice(0, -"gpu_busy_percent".length)
      const busy = Number(read(p)?.trim())
      const card = /card\d+/.exec(p)?.[0] ?? "card"
      const n = (f: string) => Number(read(dir + f)?.trim() ?? NaN)
      out.push({
        name: gpuName(read(dir + "product_name")?.trim() || `amdgpu ${card}`),
        utilPercent: pct(busy),
        memUsedBytes: bytes(n("mem_info_vram_used")),
        memTotalBytes: bytes(n("mem_info_vram_total")),
      })
    }
    return out
  }

  return {
    async sample() {
      const stat = parseProcStat(read("proc/stat") ?? "")
      const mem = parseMeminfo(read("proc/meminfo") ?? "")
      if (!stat || !mem) return undefined
      const prev = last
      last = stat.times
      const dTotal = prev ? stat.times.total - prev.total : 0
      const cpuPercent = dTotal > 0 ? ((stat.times.busy - prev!.busy) / dTotal) * 100 : 0
      const load1 = Number(read("proc/loadavg")?.split(" ")[0])
      const gpus = [...(await nvidia()), ...amd()].slice(0, MAX_GPUS)
      return {
        at: new Date().toISOString(),
        cpuPercent: pct(cpuPercent) ?? 0,
        load1: Number.isFinite(load1) ? Math.min(1e6, Math.max(0, load1)) : 0,
        cpus: Math.min(65536, stat.cpus),
        memUsedBytes: mem.used,
        memTotalBytes: mem.total,
        gpus,
      }
    },
  }
}
