import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { WITHDRAWN_FOR_FALLBACK } from "../../src/shared/protocol/fallback.ts"
import { launchBrowser, openPage } from "../helpers/browser.ts"
import { Cluster, type ClusterOptions } from "../helpers/cluster.ts"
import { md5, sample } from "../helpers/media.ts"
import { parseProm } from "../helpers/prom.ts"

/**
 * Local fallback with the compiled binary (docs/fallback.md): the proxy runs the caller's command on the
 * local ffmpeg, rewritten, when the cluster cannot; logs it; reports it once the coordinator answers
 * again; and with fallback off behaves exactly as before.
 */

const FAST: ClusterOptions = {
  coordinatorConfig: {
    heartbeat_interval: 0.5,
    registration_interval: 1,
    janitor: { interval: 0.25, jitter: 0.05, job_assignment_timeout: 2, job_pending_timeout: 1 },
  },
}

/**
 * A transcode writing Matroska to stdout (compared byte for byte): as a media server sends it for NVENC
 * (`hw`), and as it must run on a machine without (libx264, no `-hwaccel cuda`).
 */
const transcode = (input: string, hw: boolean) => [
  "-v",
  "error",
  ...(hw ? ["-hwaccel", "cuda"] : []),
  "-i",
  input,
  "-t",
  "1",
  "-c:v",
  hw ? "h264_nvenc" : "libx264",
  "-preset",
  "ultrafast",
  "-an",
  "-fflags",
  "+bitexact",
  "-flags:v",
  "+bitexact",
  "-f",
  "matroska",
  "pipe:1",
]
const nvenc = (input: string) => transcode(input, true)
const REWRITE = [{ replace: { h264_nvenc: "libx264" } }, { drop: ["-hwaccel", "cuda"] }]

interface Entry {
  reason: string
  binary: string
  args: string[]
  argv: string[]
  exit_code: number | null
  detail: string
}
const entries = (log: string): Entry[] =>
  existsSync(log)
    ? readFileSync(log, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : []

const fallbackSamples = async (c: Cluster): Promise<Record<string, string | number>[]> => {
  const text = await (await fetch(`${c.url}/metrics`)).text()
  return parseProm(text)
    .samples.filter((s) => s.name === "dffmpeg_client_fallbacks_total")
    .map((s) => ({ ...s.labels, value: s.value }))
}

describe("coordinator unreachable", () => {
  let c: Cluster
  let input: string
  let log: string
  let env: Record<string, string>
  beforeAll(async () => {
    c = await Cluster.start({ ...FAST, workers: 1 })
    copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
    input = join(c.clientMedia, "av.mkv")
    log = join(c.dir, "fallback.jsonl")
    env = c.clientWith("fb", {
      fallback: { when: ["coordinator_unreachable"], ffmpeg: "/usr/bin/ffmpeg", log_file: log, rewrite: REWRITE },
    })
  }, 60_000)
  afterAll(async () => {
    await c?.stop()
  })

  test("with the coordinator stopped the command runs here, rewritten, then is reported once it is back", async () => {
    await c.coordinator.stop("SIGTERM")
    const r = await c.run("ffmpeg", nvenc(input), { env })
    const local = await c.local("ffmpeg", transcode(input, false))
    expect(local.code).toBe(0)
    expect(r.err).toBe(local.err)
    expect(r.code).toBe(0)
    expect(r.stdout.length).toBeGreaterThan(1000)
    expect(md5(r.stdout)).toBe(md5(local.stdout))

    // A failing command keeps local ffmpeg's own exit code and stderr.
    const missing = ["-v", "error", "-i", join(c.clientMedia, "missing.mkv"), "-f", "null", "-"]
    const bad = await c.run("ffmpeg", missing, { env })
    const badLocal = await c.local("ffmpeg", missing)
    expect(badLocal.code).not.toBe(0)
    expect(bad.code).toBe(badLocal.code)
    expect(bad.err).toBe(badLocal.err)

    const logged = entries(log)
    expect(logged.map((e) => [e.reason, e.binary, e.exit_code])).toEqual([
      ["coordinator_unreachable", "/usr/bin/ffmpeg", 0],
      ["coordinator_unreachable", "/usr/bin/ffmpeg", badLocal.code],
    ])
    expect(logged[0].args).toEqual(nvenc(input))
    expect(logged[0].argv).toContain("libx264")
    expect(logged[0].argv).not.toContain("h264_nvenc")
    expect(logged[0].argv).not.toContain("-hwaccel")
    expect(logged[0].detail).toContain("cannot reach the coordinator")

    // Back: the next call that reaches it carries the two records; the metric and the dashboard show them.
    await c.restartCoordinator("SIGTERM")
    await c.waitFor(async () => (await c.admin(["workers", "ls", "--json"])).out.includes('"online"'), {
      timeoutMs: 20_000,
      what: "the worker back online",
    })
    const probe = await c.run(
      "ffprobe",
      ["-v", "error", "-show_entries", "format=format_name", "-of", "default=nw=1:nk=1", input],
      { env },
    )
    expect(probe.code).toBe(0)
    expect(probe.out.trim()).toBe("matroska,webm")
    expect(await fallbackSamples(c)).toEqual([{ client: "client1", reason: "coordinator_unreachable", value: 2 }])
    const state = (await (await fetch(`${c.url}/dashboard/api/state`)).json()) as { fallbacks: unknown[] }
    expect(state.fallbacks).toEqual([
      { client: "client1", reason: "coordinator_unreachable", count: 2, lastAt: expect.any(Number) },
    ])
    expect(JSON.parse(readFileSync(`${log}.state`, "utf8"))).toMatchObject({ reported: 2 })
    // Reported once: a later call sends nothing more.
    expect((await c.run("ffprobe", ["-version"], { env })).code).toBe(0)
    expect(await fallbackSamples(c)).toEqual([{ client: "client1", reason: "coordinator_unreachable", value: 2 }])
  }, 90_000)

  test("the dashboard's header shows the reported fallbacks per client", async () => {
    const browser = await launchBrowser()
    try {
      const p = await openPage(browser)
      await p.page.goto(c.url + "/")
      const shown = p.page.locator("#summary #fallbacks")
      await shown.waitFor()
      expect(await shown.textContent()).toBe("client1 2")
      expect(await shown.getAttribute("title")).toBe("client1: 2 coordinator_unreachable")
      expect(await p.page.locator("#summary").textContent()).toContain("Fallbacks2 local")
      expect(p.problems).toEqual([])
      await p.close()
    } finally {
      await browser.close()
    }
  }, 60_000)

  test("a signal reaches the local ffmpeg, and its exit code is the proxy's", async () => {
    await c.coordinator.stop("SIGTERM")
    const before = entries(log).length
    // The fallback config, not client.yaml (which spawnProxy uses).
    const q = Bun.spawn(
      [join(c.binDir, "ffmpeg"), "-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-f", "null", "-"],
      {
        cwd: c.dir,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: c.dir, ...env },
        stdin: "pipe",
        stdout: "pipe",
        stderr: "pipe",
      },
    )
    // ffmpeg's progress on stderr: it runs here.
    const reader = q.stderr.getReader()
    let err = ""
    await c.waitFor(
      async () => {
        const { value } = await reader.read()
        err += new TextDecoder().decode(value ?? new Uint8Array())
        return err.includes("frame=")
      },
      { timeoutMs: 20_000, what: "local ffmpeg's progress" },
    )
    q.kill("SIGINT")
    expect(await q.exited).toBe(255)
    await c.restartCoordinator("SIGTERM")
    const last = entries(log).slice(before)
    expect(last.map((e) => [e.reason, e.exit_code])).toEqual([["coordinator_unreachable", 255]])
  }, 60_000)
})

describe("the cluster cannot place the job", () => {
  let c: Cluster
  let input: string
  const logs: string[] = []
  beforeAll(async () => {
    c = await Cluster.start({ ...FAST, workers: 0 })
    copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
    input = join(c.clientMedia, "av.mkv")
  }, 60_000)
  afterAll(async () => {
    await c?.stop()
  })
  afterEach(() => {
    logs.length = 0
  })
  const config = (name: string, fallback: Record<string, unknown>) => {
    const log = join(c.dir, `${name}.jsonl`)
    logs.push(log)
    return { log, env: c.clientWith(name, { fallback: { ffmpeg: "/usr/bin/ffmpeg", log_file: log, ...fallback } }) }
  }
  const probeArgs = () => ["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", input]

  test("queue_timeout: a job no worker took is withdrawn on the coordinator, never runs there, and runs here", async () => {
    const { log, env } = config("queued", { when: ["queue_timeout"], queue_timeout_seconds: 0.3 })
    const r = await c.run("ffprobe", probeArgs(), { env })
    const local = await c.local("ffprobe", probeArgs())
    expect(r.code).toBe(0)
    expect(r.out).toBe(local.out)
    expect(r.err).toBe("")
    const [job] = await c.jobs()
    expect(job.status).toBe("canceled")
    expect(job.error).toBe(WITHDRAWN_FOR_FALLBACK)
    expect((await c.job(job.id)).events.map((e) => e.status)).not.toContain("running")
    const [e] = entries(log)
    expect([e.reason, e.binary, e.exit_code]).toEqual(["queue_timeout", "/usr/bin/ffprobe", 0])
    expect(e.detail).toContain(job.id)
    // The coordinator answered all along: reported at once.
    expect(await fallbackSamples(c)).toContainEqual({ client: "client1", reason: "queue_timeout", value: 1 })
  }, 60_000)

  test("queue_timeout: stdin the job's downlink already read is given to the local run, in order", async () => {
    const { log, env } = config("stdin", { when: ["queue_timeout"], queue_timeout_seconds: 0.3 })
    const wav = await c.local("ffmpeg", ["-v", "error", "-i", input, "-t", "1", "-vn", "-f", "wav", "pipe:1"])
    expect(wav.code).toBe(0)
    const args = ["-v", "error", "-f", "wav", "-i", "pipe:0", "-f", "md5", "-"]
    const r = await c.run("ffmpeg", args, { env, stdin: wav.stdout })
    const local = await c.local("ffmpeg", args, { stdin: wav.stdout })
    expect(r.code).toBe(0)
    expect(r.out).toBe(local.out)
    expect(entries(log).map((e) => e.reason)).toEqual(["queue_timeout"])
  }, 60_000)

  test("no_capable_worker: a job the janitor fails as no online worker can run runs here", async () => {
    const { log, env } = config("nocap", { when: ["no_capable_worker"] })
    const r = await c.run("ffprobe", probeArgs(), { env })
    expect(r.code).toBe(0)
    expect(r.out).toBe((await c.local("ffprobe", probeArgs())).out)
    const [e] = entries(log)
    expect([e.reason, e.exit_code]).toEqual(["no_capable_worker", 0])
    expect(e.detail).toMatch(/no online worker can run it \(needs ffprobe/)
    expect(await fallbackSamples(c)).toContainEqual({ client: "client1", reason: "no_capable_worker", value: 1 })
  }, 60_000)

  test("fallback off, or not for this situation: the job fails as it always did, nothing runs here", async () => {
    const { log, env } = config("other", { when: ["coordinator_unreachable"] })
    for (const e of [{}, env]) {
      const r = await c.run("ffprobe", probeArgs(), { env: e })
      expect(r.code).toBe(1)
      expect(r.out).toBe("")
      expect(r.err).toMatch(
        /^dffmpeg: job \w{26} failed: no online worker can run it \(needs ffprobe, \$Media\); waited [\d.]+ s\n$/,
      )
    }
    expect(existsSync(log)).toBe(false)
  }, 60_000)

  test("fallback off with the coordinator stopped: one dffmpeg: line and exit 1, as before", async () => {
    const { log, env } = config("off", { when: ["queue_timeout"] })
    await c.coordinator.stop("SIGTERM")
    try {
      for (const e of [{}, env]) {
        const r = await c.run("ffmpeg", nvenc(input), { env: e })
        expect(r.code).toBe(1)
        expect(r.stdout.length).toBe(0)
        expect(r.err).toMatch(/^dffmpeg: cannot reach the coordinator at http:\/\/127\.0\.0\.1:\d+: \S+\n$/)
      }
      expect(existsSync(log)).toBe(false)
    } finally {
      await c.restartCoordinator("SIGTERM")
    }
  }, 60_000)
})

describe("no_capable_worker for a probe, at the probe lane's own timeout", () => {
  let c: Cluster
  afterAll(async () => {
    await c?.stop()
  })
  test("a probe no worker took within probe_pending_timeout (shorter than job_pending_timeout, as by default) runs here", async () => {
    c = await Cluster.start({
      coordinatorConfig: {
        ...FAST.coordinatorConfig,
        janitor: { interval: 0.25, jitter: 0.05, job_pending_timeout: 30, probe_pending_timeout: 0.5 },
      },
      workers: 0,
    })
    const log = join(c.dir, "probe.jsonl")
    const env = c.clientWith("probe", {
      fallback: { when: ["no_capable_worker"], ffprobe: "/usr/bin/ffprobe", log_file: log },
    })
    const r = await c.run("ffprobe", ["-version"], { env })
    expect(r.code).toBe(0)
    expect(r.out).toBe((await c.local("ffprobe", ["-version"])).out)
    const [job] = await c.jobs()
    expect(job.error).toBe(
      "no online worker took the probe within 0.5 s (janitor.probe_pending_timeout): no worker is online",
    )
    const [e] = entries(log)
    expect([e.reason, e.exit_code]).toEqual(["no_capable_worker", 0])
  }, 60_000)
})

describe("queue_timeout with the only worker busy", () => {
  let c: Cluster
  beforeAll(async () => {
    c = await Cluster.start({ ...FAST, workers: 1, maxJobs: 1 })
  }, 60_000)
  afterAll(async () => {
    await c?.stop()
  })

  test("the waiting job is withdrawn before its worker frees up, runs here, and its worker never gets it", async () => {
    // A transcode without fallback (client.yaml) holds the worker's one slot.
    const busy = c.spawnProxy("ffmpeg", [
      "-re",
      "-f",
      "lavfi",
      "-i",
      "testsrc=size=64x64:rate=25",
      "-t",
      "60",
      "-f",
      "null",
      "-",
    ])
    try {
      await c.waitFor(async () => (await c.jobs()).some((j) => j.status === "running"), { what: "the slot taken" })
      const log = join(c.dir, "busy.jsonl")
      const env = c.clientWith("busy", {
        fallback: { when: ["queue_timeout"], queue_timeout_seconds: 0.3, log_file: log },
      })
      // A transcode: it waits for the busy slot (a probe would not, in its own lane: scheduling.md).
      const args = ["-v", "error", "-f", "lavfi", "-i", "testsrc=duration=0.2", "-f", "framecrc", "-"]
      const r = await c.run("ffmpeg", args, { env })
      expect(r.code).toBe(0)
      expect(r.out).toBe((await c.local("ffmpeg", args)).out)
      const withdrawn = (await c.jobs()).find((j) => j.status === "canceled")!
      expect(withdrawn.error).toBe(WITHDRAWN_FOR_FALLBACK)
      const events = (await c.job(withdrawn.id)).events
      expect(events.map((e) => e.status)).toEqual(["queued", "canceled"])
      expect(entries(log).map((e) => [e.reason, e.binary, e.exit_code])).toEqual([
        ["queue_timeout", "/usr/bin/ffmpeg", 0],
      ])
    } finally {
      busy.kill("SIGKILL")
      await busy.exited
    }
    // The slot frees (its caller is gone): the worker runs nothing else, the withdrawn job stays withdrawn.
    await c.waitFor(async () => (await c.jobs()).every((j) => j.status === "canceled"), { what: "both jobs ended" })
  }, 60_000)
})
