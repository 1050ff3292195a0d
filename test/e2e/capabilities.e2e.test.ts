import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { waitFor } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { writeFfmpegWrapper } from "../helpers/fake-ffmpeg.ts"

/**
 * Issue 12 with real processes: two workers with different ffmpeg builds (the real Debian ffmpeg, and the
 * same ffmpeg behind a wrapper that hides libx264 and says it is 6.0.1-Jellyfin). Info commands through
 * the proxy always give the reference worker's byte-exact answer; capabilities are registered and shown.
 */

interface WorkerView {
  id: string
  status: string
  binaries: string[]
  tools: Record<string, { version: string; encoders: string[]; hwaccels: string[]; hwDevices: string[] }>
  labels: Record<string, string>
  weight: number
}

const workers = async (c: Cluster): Promise<WorkerView[]> => {
  const r = await c.admin(["workers", "ls", "--json"])
  if (r.code !== 0) throw new Error(r.err)
  return JSON.parse(r.out)
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b))

describe("two builds, one answer", () => {
  let c: Cluster
  beforeAll(async () => {
    // worker2's wrapper claims a working cuda, which makes its tools the wider (the nvenc encoders and cuda
    // filters come with it): the reference is set to the real build, as an operator would.
    c = await Cluster.start({ workers: 2, startWorkers: false, coordinatorConfig: { reference_worker: "worker1" } })
    await c.startWorker("worker1", { labels: { gpu: "none" }, weight: 2 })
    const bin = join(c.dir, "fakebin")
    mkdirSync(bin, { recursive: true })
    // It also claims cuda and vaapi; only cuda "initialises" (the wrapper exits 0 for it).
    const wrapper = writeFfmpegWrapper(bin, {
      version: "6.0.1-Jellyfin",
      hideEncoders: ["libx264"],
      hwaccels: ["cuda", "vaapi"],
      initialises: ["cuda"],
    })
    await c.startWorker("worker2", { binaries: { ffmpeg: wrapper, ffprobe: "ffprobe" } })
    await waitFor(async () => (await workers(c)).filter((w) => w.status === "online").length === 2 || undefined, {
      timeoutMs: 20_000,
    })
  }, 60_000)
  afterAll(() => c?.stop())

  test("each worker registered what its own ffmpeg says, with its labels and weight", async () => {
    const ws = Object.fromEntries((await workers(c)).map((w) => [w.id, w]))
    const local = await c.local("ffmpeg", ["-version"])
    const realVersion = /^ffmpeg version (\S+)/.exec(local.out)![1]
    expect(ws.worker1!.tools.ffmpeg!.version).toBe(realVersion)
    expect(ws.worker1!.tools.ffmpeg!.encoders).toContain("libx264")
    expect(ws.worker1!.labels).toEqual({ gpu: "none" })
    expect(ws.worker1!.weight).toBe(2)
    expect(ws.worker2!.tools.ffmpeg!.version).toBe("6.0.1-Jellyfin")
    expect(ws.worker2!.tools.ffmpeg!.encoders).not.toContain("libx264")
    expect(ws.worker2!.tools.ffmpeg!.encoders).toContain("libx264rgb")
    expect(ws.worker2!.tools.ffprobe!.version).toBe(realVersion)
    // Verified in the worker's sandbox: the device that did not initialise is not advertised.
    expect(ws.worker2!.tools.ffmpeg!.hwaccels).toEqual(["cuda"])
    expect(ws.worker2!.tools.ffmpeg!.hwDevices).toEqual(["cuda"])
    // Every advertised hwaccel initialised in the worker's sandbox: a device it could not open is absent.
    for (const w of Object.values(ws))
      for (const h of w.tools.ffmpeg!.hwaccels) expect(w.tools.ffmpeg!.hwDevices).toContain(h)
  })

  test("ffmpeg -version answers byte-identically 20 times out of 20: the reference worker's real output", async () => {
    const local = await c.local("ffmpeg", ["-version"])
    // Ten at once while nothing is cached (each is asked of the reference worker), then ten from the cache.
    const first = await Promise.all(Array.from({ length: 10 }, () => c.run("ffmpeg", ["-version"])))
    const later = await Promise.all(Array.from({ length: 10 }, () => c.run("ffmpeg", ["-version"])))
    const all = [...first, ...later]
    for (const r of all) {
      expect(r.code).toBe(0)
      expect(same(r.stdout, local.stdout)).toBe(true)
      expect(same(r.stderr, local.stderr)).toBe(true)
    }
    const jobs = (await c.jobs()).filter((j) => j.args?.join(" ") === "-version")
    expect(jobs.length).toBe(20)
    // Every one ran on, or was answered from, worker1 (the reference_worker).
    for (const j of jobs) expect([null, "worker1"]).toContain(j.workerId)
    const answered: Awaited<ReturnType<Cluster["job"]>>[] = []
    let shared = 0
    for (const j of jobs) {
      const shown = await c.job(j.id)
      const reasons = shown.events.map((e) => e.reason ?? "")
      if (reasons.some((r) => r.startsWith("answered from the info cache"))) answered.push(shown)
      if (reasons.some((r) => r.startsWith("answered with the answer of job"))) shared++
    }
    // For the record (not asserted: it depends on how fast the worker took the first ten).
    console.log(`-version x20: ${answered.length} from the cache, ${shared} with a concurrent one's answer`)
    // The last ten found the answer cached: no worker ran them.
    expect(answered.length).toBeGreaterThanOrEqual(10)
    for (const j of answered) expect(j.workerId).toBeNull()
  })

  test("-encoders lists what the reference worker has, every time", async () => {
    const local = await c.local("ffmpeg", ["-hide_banner", "-encoders"])
    for (let i = 0; i < 3; i++) {
      const r = await c.run("ffmpeg", ["-hide_banner", "-encoders"])
      expect(r.code).toBe(0)
      expect(same(r.stdout, local.stdout)).toBe(true)
    }
  })

  test("a failing info command is answered the same way, exit code included", async () => {
    const local = await c.local("ffmpeg", ["-hide_banner", "-h", "encoder=no_such_encoder"])
    const runs = [
      await c.run("ffmpeg", ["-hide_banner", "-h", "encoder=no_such_encoder"]),
      await c.run("ffmpeg", ["-hide_banner", "-h", "encoder=no_such_encoder"]),
    ]
    for (const r of runs) {
      expect(r.code).toBe(local.code)
      expect(same(r.stdout, local.stdout)).toBe(true)
      expect(same(r.stderr, local.stderr)).toBe(true)
    }
  })

  // Needs the requirements read from the command line (job.needs), nothing else of the scheduler.
  test("a job needing the encoder one build lacks only ever runs on the other", async () => {
    const args = "-hide_banner -f lavfi -i testsrc=size=64x48:rate=5:duration=0.2 -c:v libx264 -f null -".split(" ")
    const runs = await Promise.all(Array.from({ length: 6 }, () => c.run("ffmpeg", args)))
    for (const r of runs) expect(r.code).toBe(0)
    const jobs = (await c.jobs()).filter((j) => j.args?.includes("libx264"))
    expect(jobs.length).toBe(6)
    for (const j of jobs) expect(j.workerId).toBe("worker1")
  })

  test("a job that neither build can run (a listed encoder whose device does not initialise) fails at once, naming it", async () => {
    // Both builds list h264_vaapi; vaapi initialises on neither, so neither advertises it.
    const args = "-hide_banner -f lavfi -i testsrc=duration=0.2 -c:v h264_vaapi -f null -".split(" ")
    const t0 = performance.now()
    const r = await c.run("ffmpeg", args)
    const ms = performance.now() - t0
    expect(r.code).toBe(1)
    const lines = new TextDecoder().decode(r.stderr).trimEnd().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^dffmpeg: .*no online worker has encoder h264_vaapi/)
    // A job that needs the missing encoder and the hwaccel only worker2 has names the encoder alone.
    const both = await c.run("ffmpeg", ["-hwaccel", "cuda", ...args.slice(1)])
    expect(new TextDecoder().decode(both.stderr)).toMatch(/encoder h264_vaapi/)
    console.log(`unrunnable job (h264_vaapi on two real builds): failed after ${ms.toFixed(0)} ms`)
  })

  test("admin workers show: version, counts, hwaccels and labels; full lists with --json", async () => {
    const r = await c.admin(["workers", "show", "worker2"])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/ffmpeg\s+6\.0\.1-Jellyfin/)
    expect(r.out).toMatch(/encoders \d+/)
    const one = await c.admin(["workers", "show", "worker1"])
    expect(one.out).toContain("gpu=none")
  })
})

describe("argument profiles; a binary whose detection fails", () => {
  let c: Cluster
  beforeAll(async () => {
    c = await Cluster.start({
      workers: 2,
      startWorkers: false,
      workerConfig: { profiles: [{ replace: { mpeg4: "mpeg2video" }, options: ["c", "codec", "vcodec"] }] },
    })
    await c.startWorker("worker1")
    // worker2's ffmpeg cannot list its encoders: detection fails, ffmpeg jobs still run there.
    const bin = join(c.dir, "fakebin")
    mkdirSync(bin, { recursive: true })
    const failing = writeFfmpegWrapper(bin, { failing: ["-encoders"] })
    await c.startWorker("worker2", { binaries: { ffmpeg: failing, ffprobe: "ffprobe" } })
  }, 60_000)
  afterAll(() => c?.stop())

  test("is registered without its tools, with a warning; the other binaries keep theirs", async () => {
    const w2 = (await workers(c)).find((w) => w.id === "worker2")!
    expect(w2.binaries).toEqual(["ffmpeg", "ffprobe"])
    expect(w2.tools.ffmpeg).toBeUndefined()
    expect(w2.tools.ffprobe?.encoders.length).toBeGreaterThan(100)
    const line = await c.workers[1]!.waitForLine(/capability detection failed/)
    expect(line.input).toContain("ffmpeg")
    expect(line.input).toContain("-encoders")
  })

  test("a rewrite takes effect on the worker and shows in the job's timeline", async () => {
    const args = "-hide_banner -f lavfi -i testsrc=size=64x48:rate=5:duration=0.4 -c:v mpeg4 -f null -".split(" ")
    const r = await c.run("ffmpeg", args)
    expect(r.code).toBe(0)
    // ffmpeg itself says which encoder it used: the profile's.
    expect(r.err).toContain("-> mpeg2video (native)")
    expect(r.err).not.toContain("-> mpeg4 (native)")
    const job = (await c.jobs()).find((j) => j.args?.includes("mpeg4"))!
    const shown = await c.job(job.id)
    const running = shown.events.find((e) => e.status === "running")
    expect(running?.reason).toBe("profile: mpeg4 -> mpeg2video")
  })
})
