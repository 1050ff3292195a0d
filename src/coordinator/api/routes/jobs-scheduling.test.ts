import { afterEach, describe, expect, test } from "bun:test"
import { alice, bob, RouteHarness, T0 } from "../../../../test/helpers/routes.ts"
import type { ToolCapabilities } from "../../../shared/protocol/capabilities.ts"
import { decodeFrames, frameJson, Kind } from "../../../shared/protocol/frames.ts"
import type { Job } from "../../../shared/protocol/schemas.ts"

/**
 * POST /jobs and issue 12: the lane, priority, needs and queue key computed once at submission and
 * stored with the job; a job no online worker could ever run fails at once naming what is missing; one
 * that waits for a busy capable worker is told so in its first frame.
 */
let h: RouteHarness
afterEach(async () => {
  await h.close()
})

const J = "/api/v1/jobs"
const SCHEDULING = {
  scheduling: {
    priorities: { jellyfin: "interactive", tdarr: "batch" },
    rules: [
      { match: { identity: "jellyfin", args_contain: ["-f", "image2"] }, priority: "batch" },
      { match: { args_contain: ["-c:v", "h264_nvenc"] }, labels: { gpu: "nvidia" } },
    ],
    aging_seconds: 60,
  },
}

const tool = (over: Partial<ToolCapabilities> = {}): ToolCapabilities => ({
  version: "5.1.9",
  encoders: ["libx264", "aac"],
  decoders: ["h264"],
  hwaccels: [],
  hwDevices: [],
  filters: ["scale"],
  muxers: ["hls", "mp4", "image2"],
  demuxers: ["matroska,webm"],
  ...over,
})

const submit = (who = alice, args: string[], binary = "ffmpeg", query = "") =>
  h.request(who, "POST", `${J}${query}`, { binary, args, paths: [], cwd: null, stdin: false })
const jellyfin = { name: "jellyfin", role: "client" } as const

describe("what a submission stores", () => {
  test("lane, priority (identity, then the first matching rule), labels from rules, needs and queue key", async () => {
    h = await RouteHarness.open(SCHEDULING)
    await h.worker("w1", { binaries: ["ffmpeg", "ffprobe"], tools: { ffmpeg: tool() }, labels: { gpu: "nvidia" } })
    const hls = ["-i", "a.mkv", "-c:v", "libx264", "-f", "hls", "out.m3u8"]
    const live = (await (await submit(jellyfin, hls)).json()) as Job
    expect(live).toMatchObject({ lane: "transcode", priority: "interactive", queueKey: T0 - 120_000, status: "queued" })
    expect(live.needs).toMatchObject({ encoders: ["libx264"], muxers: ["hls"], labels: {} })
    expect(await h.store.getJob(live.id)).toMatchObject({ priority: "interactive", needs: live.needs })

    const trick = (await (
      await submit(jellyfin, ["-i", "a.mkv", "-vf", "fps=1,scale=320:-2", "-f", "image2", "%d.jpg"])
    ).json()) as Job
    expect(trick).toMatchObject({ priority: "batch", queueKey: T0 })

    const nvenc = (await (await submit(bob, ["-i", "a.mkv", "-c:v", "h264_nvenc", "o.mp4"])).json()) as Job
    expect(nvenc).toMatchObject({ priority: "normal", queueKey: T0 - 60_000 })
    expect(nvenc.needs).toMatchObject({ encoders: ["h264_nvenc"], labels: { gpu: "nvidia" } })

    const probe = (await (await submit(alice, ["-show_streams", "a.mkv"], "ffprobe")).json()) as Job
    expect(probe).toMatchObject({ lane: "probe", queueKey: T0 })
    const version = (await (await submit(alice, ["-version"])).json()) as Job
    expect(version.lane).toBe("probe")
    // Probes are watched for probe_pending_timeout; transcodes are not.
    expect(h.watchedProbes).toEqual([probe.id, version.id])
  })

  test.each(["constructor", "toString", "hasOwnProperty"])(
    "an identity named %s (an Object.prototype key) gets the default priority, not a 500",
    async (name) => {
      h = await RouteHarness.open(SCHEDULING)
      const res = await submit({ name, role: "client" }, ["-i", "a.mkv", "o.mkv"])
      expect(res.status).toBe(201)
      const job = (await res.json()) as Job
      expect(job).toMatchObject({ priority: "normal", queueKey: T0 - 60_000 })
      expect(await h.store.getJob(job.id)).toMatchObject({ priority: "normal", queueKey: T0 - 60_000 })
    },
  )

  test("a command naming more codecs than a worker could list is the caller's mistake: 400", async () => {
    h = await RouteHarness.open()
    const args = ["-i", "a.mkv", ...Array.from({ length: 300 }, (_, i) => [`-c:${i}`, `enc${i}`]).flat(), "o.mkv"]
    const res = await submit(alice, args)
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
      /the command names codecs, filters or formats no worker could have/,
    )
  })
})

describe("a job no online worker could ever run", () => {
  test("fails at once, naming what no worker has; the attached caller gets that as its outcome", async () => {
    h = await RouteHarness.open()
    await h.worker("cpu1", { tools: { ffmpeg: tool() } })
    await h.worker("cpu2", { tools: { ffmpeg: tool({ encoders: ["libx264", "aac", "h264_vaapi"] }) } })
    const res = await submit(alice, ["-i", "a.mkv", "-c:v", "h264_nvenc", "-vf", "scale_cuda=1280:720", "o.mkv"])
    expect(res.status).toBe(201)
    const job = (await res.json()) as Job
    expect(job.status).toBe("failed")
    expect(job.error).toBe("no online worker has encoder h264_nvenc, filter scale_cuda")

    const attached = await submit(alice, ["-i", "a.mkv", "-c:v", "h264_nvenc", "o.mkv"], "ffmpeg", "?attach=1")
    const frames = decodeFrames(new Uint8Array(await attached.arrayBuffer()))
    const exit = frames.find((f) => f.kind === Kind.exit)!
    expect(frameJson(exit)).toMatchObject({ status: "failed", error: "no online worker has encoder h264_nvenc" })
  })

  test("when the needs are spread over workers, each one's lack is named", async () => {
    h = await RouteHarness.open()
    await h.worker("a", { tools: { ffmpeg: tool({ encoders: ["h264_nvenc"] }) } })
    await h.worker("b", { tools: { ffmpeg: tool({ filters: ["scale_cuda"] }) } })
    const job = (await (
      await submit(alice, ["-i", "a.mkv", "-c:v", "h264_nvenc", "-vf", "scale_cuda", "o.mkv"])
    ).json()) as Job
    expect(job.error).toBe("no online worker has all it needs (a lacks filter scale_cuda; b lacks encoder h264_nvenc)")
  })

  test("with no worker online at all it waits (a restart) rather than failing", async () => {
    h = await RouteHarness.open()
    const job = (await (await submit(alice, ["-i", "a.mkv", "-c:v", "h264_nvenc", "o.mkv"])).json()) as Job
    expect(job.status).toBe("queued")
  })

  test("a worker without registered tools is not judged on them (an older worker)", async () => {
    h = await RouteHarness.open()
    await h.worker("old")
    const job = (await (await submit(alice, ["-i", "a.mkv", "-c:v", "h264_nvenc", "o.mkv"])).json()) as Job
    expect(job.status).toBe("queued")
  })
})

describe("a job that waits for a busy capable worker", () => {
  const waitOf = async (res: Response) => {
    const reader = res.body!.getReader()
    const { value } = await reader.read()
    await reader.cancel()
    const first = decodeFrames(value!)[0]
    return (frameJson(first) as { wait?: string }).wait
  }

  test("is told so in the first frame; a probe is not, while its own slots are free", async () => {
    h = await RouteHarness.open()
    await h.worker("w1", { binaries: ["ffmpeg", "ffprobe"], maxJobs: 1, maxProbeJobs: 1 })
    await h.job("01M8DFWEZE8JWRGH9VMVBQN62M")
    await h.store.assign("01M8DFWEZE8JWRGH9VMVBQN62M", "w1", T0)
    const busy = await submit(alice, ["-i", "a.mkv", "o.mkv"], "ffmpeg", "?attach=1")
    expect(await waitOf(busy)).toBe("waiting for a free slot: the worker that can run it is busy")
    const probe = await submit(alice, ["-show_streams", "a.mkv"], "ffprobe", "?attach=1")
    expect(await waitOf(probe)).toBeUndefined()
  })
})

describe("scheduling config", () => {
  test.each<[string, unknown, RegExp]>([
    ["an unknown priority", { priorities: { jellyfin: "urgent" } }, /must be interactive, normal or batch/],
    [
      "a rule without match keys",
      { rules: [{ match: {}, priority: "batch" }] },
      /needs identity, binary or args_contain/,
    ],
    ["a rule that sets nothing", { rules: [{ match: { binary: "ffmpeg" } }] }, /must set priority or labels/],
    [
      "a misspelt rule key",
      { rules: [{ match: { args: ["-f"] }, priority: "batch" }] },
      /Expected never but received "args"/,
    ],
    ["a negative aging", { aging_seconds: -1 }, /Expected >=0 but received -1/],
  ])("refuses %s with a clear error", async (_, scheduling, message) => {
    await expect(RouteHarness.open({ scheduling })).rejects.toThrow(message)
  })
})

describe("an info command with needs from client rules", () => {
  test("is pinned to a reference worker that has the labels a rule gives it, not to a wider one without", async () => {
    h = await RouteHarness.open({
      scheduling: { rules: [{ match: { identity: "jellyfin" }, labels: { gpu: "nvidia" } }] },
    })
    await h.worker("wide", { tools: { ffmpeg: tool({ encoders: ["libx264", "aac", "libx265", "libvpx"] }) } })
    await h.worker("gpu", { tools: { ffmpeg: tool() }, labels: { gpu: "nvidia" } })
    const job = (await (await submit(jellyfin, ["-encoders"])).json()) as Job
    expect(job).toMatchObject({ status: "queued", lane: "probe", pin: "gpu", needs: { labels: { gpu: "nvidia" } } })
    // Another identity's is answered by the widest, as before.
    expect(await (await submit(alice, ["-encoders"])).json()).toMatchObject({ status: "queued", pin: "wide" })
  })
})
