import { afterEach, describe, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as v from "valibot"
import { createLogger } from "../shared/log.ts"
import { HostLoad, MAX_GPUS } from "../shared/protocol/host-load.ts"
import { HeartbeatRequest } from "../shared/protocol/worker.ts"
import { createHostLoadSampler, parseMeminfo, parseNvidiaSmi, parseProcStat } from "./host-load.ts"

const log = createLogger({ level: "error" })
const dirs: string[] = []
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })))

const stat = (user: number, idle: number) =>
  `cpu  ${user} 0 0 ${idle} 0 0 0 0 0 0\ncpu0 ${user} 0 0 ${idle} 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\nintr 1\n`
const MEMINFO = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:   12000000 kB\n"

/** A /proc and /sys of our own, under a temp dir. */
function fakeRoot(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "host-load-"))
  dirs.push(root)
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(root, p, ".."), { recursive: true })
    writeFileSync(join(root, p), text)
  }
  return root
}

describe("host load", () => {
  test("this machine's /proc gives a load the coordinator accepts", async () => {
    const s = createHostLoadSampler({ log })
    const load = await s.sample()
    expect(load).toBeDefined()
    expect(v.safeParse(HostLoad, load).success).toBe(true)
    expect(load!.memTotalBytes).toBeGreaterThan(0)
    expect(load!.cpus).toBeGreaterThanOrEqual(1)
    expect(v.safeParse(HeartbeatRequest, { jobs: [], hostLoad: load }).success).toBe(true)
  })

  test("CPU busy is the delta between samples; memory used is total minus available", async () => {
    const root = fakeRoot({
      "proc/stat": stat(100, 900),
      "proc/meminfo": MEMINFO,
      "proc/loadavg": "1.50 1.00 0.50 1/100 42\n",
    })
    const s = createHostLoadSampler({ log, root, nvidiaSmi: null })
    writeFileSync(join(root, "proc/stat"), stat(175, 925))
    const load = await s.sample()
    expect(load).toMatchObject({
      cpuPercent: 75,
      load1: 1.5,
      cpus: 2,
      memTotalBytes: 16000000 * 1024,
      memUsedBytes: 4000000 * 1024,
      gpus: [],
    })
    expect(new Date(load!.at).getTime()).toBeGreaterThan(0)
    // No time passed: 0 %, not NaN.
    expect((await s.sample())!.cpuPercent).toBe(0)
  })

  test("AMD GPUs from gpu_busy_percent and VRAM; nothing when /proc is missing", async () => {
    const root = fakeRoot({
      "proc/stat": stat(1, 1),
      "proc/meminfo": MEMINFO,
      "sys/class/drm/card0/device/gpu_busy_percent": "37\n",
      "sys/class/drm/card0/device/mem_info_vram_used": "1048576\n",
      "sys/class/drm/card0/device/mem_info_vram_total": "8589934592\n",
      "sys/class/drm/card1/device/gpu_busy_percent": "250\n",
      "sys/class/drm/card1/device/product_name": "Radeon\u001b[31m RX 7600 " + "x".repeat(100),
    })
    const load = await createHostLoadSampler({ log, root, nvidiaSmi: null }).sample()
    expect(load!.gpus).toEqual([
      { name: "amdgpu card0", utilPercent: 37, memUsedBytes: 1048576, memTotalBytes: 8589934592 },
      {
        name: expect.stringMatching(/^Radeon\[31m RX 7600 x+$/),
        utilPercent: 100,
        memUsedBytes: null,
        memTotalBytes: null,
      },
    ])
    expect(load!.gpus[1].name.length).toBe(64)
    expect(v.safeParse(HostLoad, load).success).toBe(true)
    expect(await createHostLoadSampler({ log, root: fakeRoot({}), nvidiaSmi: null }).sample()).toBeUndefined()
  })

  test("nvidia-smi lines, [N/A] fields as null, at most 16 GPUs", () => {
    const text = "NVIDIA GeForce RTX 3060, 41, 1024, 12288\nTesla T4, [N/A], [N/A], 15360\n\n"
    expect(parseNvidiaSmi(text)).toEqual([
      {
        name: "NVIDIA GeForce RTX 3060",
        utilPercent: 41,
        memUsedBytes: 1024 * 2 ** 20,
        memTotalBytes: 12288 * 2 ** 20,
      },
      { name: "Tesla T4", utilPercent: null, memUsedBytes: null, memTotalBytes: 15360 * 2 ** 20 },
    ])
    expect(parseNvidiaSmi("gpu, 1, 1, 2\n".repeat(40))).toHaveLength(MAX_GPUS)
  })

  test("parsers refuse what is not /proc", () => {
    expect(parseProcStat("nothing")).toBeUndefined()
    expect(parseProcStat("cpu  a b c d")).toBeUndefined()
    expect(parseMeminfo("MemFree: 1 kB")).toBeUndefined()
  })

  test("the coordinator refuses a hostile load: out of range, too many GPUs, long names", () => {
    const ok: HostLoad = {
      at: "2026-12-03T10:00:00.000Z",
      cpuPercent: 50,
      load1: 1,
      cpus: 4,
      memUsedBytes: 1,
      memTotalBytes: 2,
      gpus: [{ name: "g", utilPercent: null, memUsedBytes: null, memTotalBytes: null }],
    }
    const gpu = ok.gpus[0]
    expect(v.safeParse(HostLoad, ok).success).toBe(true)
    for (const bad of [
      { cpuPercent: 101 },
      { cpuPercent: -1 },
      { load1: Number.POSITIVE_INFINITY },
      { cpus: 0 },
      { memUsedBytes: 3 },
      { memTotalBytes: 2 ** 60 },
      { at: "yesterday" },
      { gpus: Array(MAX_GPUS + 1).fill(gpu) },
      { gpus: [{ ...gpu, name: "x".repeat(65) }] },
      { gpus: [{ ...gpu, name: "a\nb" }] },
      { gpus: [{ ...gpu, utilPercent: 100.5 }] },
      { gpus: [{ ...gpu, extra: 1 }] },
      { extra: 1 },
    ])
      expect(v.safeParse(HostLoad, { ...ok, ...bad }).success).toBe(false)
  })
})
