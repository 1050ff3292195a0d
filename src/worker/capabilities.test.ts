import { REGISTRATION_BYTES } from "../coordinator/api/body.ts"
import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, utimesSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createLogger } from "../shared/log.ts"
import { writeFfmpegWrapper } from "../../test/helpers/fake-ffmpeg.ts"
import { toolCaps } from "../../test/helpers/fixtures.ts"
import {
  createCapabilityDetector,
  detectTool,
  parseCodecs,
  parseDeviceTypes,
  parseFilters,
  parseFormats,
  parseHwaccels,
  parseVersion,
  removeCapabilities,
  type RunTool,
} from "./capabilities.ts"
import { runConfined, type Confinement } from "./sandbox.ts"
import { deviceOf } from "../shared/protocol/capabilities.ts"

const log = createLogger({ level: "error" })
const dir = mkdtempSync(join(tmpdir(), "dffmpeg-caps-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Runs commands as a `sandbox: none` worker does: the binary itself, no confinement. */
const plain: Confinement = {
  mode: "none",
  argv: (_job, command) => command,
  env: () => undefined,
  capabilities: { sandbox: "none", runAs: "test" },
}
const runner =
  (timeoutMs = 10_000, seen?: string[][]): RunTool =>
  (exe, args) => {
    seen?.push(args)
    return runConfined(plain, [exe, ...args], timeoutMs)
  }

const real = (args: string[]) =>
  Bun.spawnSync(["ffmpeg", ...args], { stdout: "pipe", stderr: "pipe" }).stdout.toString()

describe("parsers on the installed ffmpeg's own output (captured now)", () => {
  test("-version", () => {
    const v = parseVersion(real(["-version"]))
    expect(v).toMatch(/^\d+\.\d+/)
    expect(real(["-version"]).split("\n")[0]).toContain(`version ${v} `)
  })
  test("-encoders and -decoders: every row after the legend, names only", () => {
    const text = real(["-hide_banner", "-encoders"])
    const enc = parseCodecs(text)
    expect(enc).toContain("libx264")
    expect(enc).toContain("aac")
    expect(enc).not.toContain("=")
    // One name per row after the ` ------` line, none from the legend (` V..... = Video`).
    const rows = text
      .split("\n")
      .slice(text.split("\n").indexOf(" ------") + 1)
      .filter((l) => l.trim())
    expect(enc.length).toBe(rows.length)
    const dec = parseCodecs(real(["-hide_banner", "-decoders"]))
    expect(dec).toContain("h264")
    expect(dec).toContain("hevc")
    expect(dec).not.toContain("libx264")
  })
  test("-filters: names of filter rows, not the legend", () => {
    const f = parseFilters(real(["-hide_banner", "-filters"]))
    for (const name of ["scale", "subtitles", "overlay", "anull", "nullsrc", "hwupload"]) expect(f).toContain(name)
    expect(f).not.toContain("=")
    expect(f.length).toBeGreaterThan(300)
  })
  test("-muxers and -demuxers: each list only its own kind", () => {
    const mux = parseFormats(real(["-hide_banner", "-muxers"]), "muxers")
    const demux = parseFormats(real(["-hide_banner", "-demuxers"]), "demuxers")
    expect(mux).toContain("mp4")
    expect(mux).toContain("hls")
    expect(mux).toContain("matroska")
    expect(demux).toContain("matroska,webm")
    expect(demux).toContain("mov,mp4,m4a,3gp,3g2,mj2")
    expect(demux).not.toContain("mp4")
    // -formats lists both; each parse of it takes its own kind.
    const formats = real(["-hide_banner", "-formats"])
    expect(parseFormats(formats, "muxers")).toContain("mp4")
    expect(parseFormats(formats, "demuxers")).not.toContain("mp4")
  })
  test("-hwaccels and -init_hw_device list", () => {
    const hw = parseHwaccels(real(["-hide_banner", "-hwaccels"]))
    expect(hw).toContain("vaapi")
    expect(parseDeviceTypes(real(["-hide_banner", "-init_hw_device", "list"]))).toEqual(expect.arrayContaining(hw))
  })
})

describe("parsers on fixed samples of other builds", () => {
  test("jellyfin-ffmpeg 6 and 7 version lines", () => {
    expect(parseVersion("ffmpeg version 6.0.1-Jellyfin Copyright (c) 2000-2023 the FFmpeg developers\n")).toBe(
      "6.0.1-Jellyfin",
    )
    expect(parseVersion("ffprobe version 7.0.2-Jellyfin Copyright (c) 2007-2024 the FFmpeg developers")).toBe(
      "7.0.2-Jellyfin",
    )
    expect(parseVersion("Usage: ffmpeg [options]")).toBeUndefined()
  })
  test("later formats listings: three flag columns (d: device), the separator as wide", () => {
    const text = [
      "Formats:",
      " D.. = Demuxing supported",
      " .E. = Muxing supported",
      " ..d = Is a device",
      " ---",
      " DE  matroska        Matroska",
      "  E  mp4             MP4 (MPEG-4 Part 14)",
      " D d v4l2            Video4Linux2 device grab",
      "  Ed alsa            ALSA audio output",
      "",
    ].join("\n")
    expect(parseFormats(text, "muxers")).toEqual(["matroska", "mp4", "alsa"])
    expect(parseFormats(text, "demuxers")).toEqual(["matroska", "v4l2"])
  })
  test("jellyfin-ffmpeg 6 encoders and filters (same layouts as 5.1)", () => {
    const enc = [
      "Encoders:",
      " V..... = Video",
      " ------",
      " V....D h264_nvenc           NVIDIA NVENC H.264 encoder (codec h264)",
      " V..... h264_qsv             H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (Intel Quick Sync Video acceleration) (codec h264)",
      " A....D aac                  AAC (Advanced Audio Coding)",
    ].join("\n")
    expect(parseCodecs(enc)).toEqual(["h264_nvenc", "h264_qsv", "aac"])
    const filters = [
      "Filters:",
      "  T.. = Timeline support",
      "  | = Source or sink filter",
      " ... scale_cuda        V->V       GPU accelerated video resizer",
      " ..C tonemap_opencl    V->V       Perform HDR to SDR conversion with tonemapping.",
      " ... buffer            |->V       Buffer video frames, and make them accessible to the filterchain.",
    ].join("\n")
    expect(parseFilters(filters)).toEqual(["scale_cuda", "tonemap_opencl", "buffer"])
    // 8.x: two flags (no command column).
    const two = [
      "Filters:",
      "  T.. = Timeline support",
      "  .S. = Slice threading",
      "  A = Audio input/output",
      " TS aap               AA->A      Apply Affine Projection algorithm to first audio stream.",
      " .. abench            A->A       Benchmark part of a filtergraph.",
    ].join("\n")
    expect(parseFilters(two)).toEqual(["aap", "abench"])
  })
  test("a name ffmpeg could never print is dropped, not advertised", () => {
    expect(parseCodecs(" ------\n V..... ok_name  fine\n V..... bad\u001bname  escape\n")).toEqual(["ok_name"])
  })
})

describe("detection with verification (a fake ffmpeg that claims cuda and vaapi)", () => {
  test("only the device that initialised is advertised, as device and hwaccel", async () => {
    const exe = writeFfmpegWrapper(mkdtempSync(join(dir, "a-")), {
      hwaccels: ["cuda", "vaapi"],
      initialises: ["cuda"],
    })
    const { tool, failedDevices } = await detectTool("ffmpeg", exe, runner(), log)
    expect(tool.hwaccels).toEqual(["cuda"])
    expect(tool.hwDevices).toEqual(["cuda"])
    expect(failedDevices).toEqual(["vaapi"])
    expect(tool.encoders).toContain("libx264")
    // The installed ffmpeg lists nvenc and vaapi encoders: only those whose device initialised stay.
    expect(tool.encoders).toContain("h264_nvenc")
    expect(tool.encoders).not.toContain("h264_vaapi")
    expect(tool.filters).not.toContain("scale_vaapi")
  })
  test("encoders, decoders and filters that need a device type are named by it", () => {
    expect(
      [
        "h264_nvenc",
        "hevc_cuvid",
        "scale_cuda",
        "scale_npp",
        "h264_vaapi",
        "hevc_qsv",
        "scale_vulkan",
        "libx264",
        "scale",
      ].map(deviceOf),
    ).toEqual(["cuda", "cuda", "cuda", "cuda", "vaapi", "qsv", "vulkan", undefined, undefined])
  })
  test("none initialises: none advertised", async () => {
    const exe = writeFfmpegWrapper(mkdtempSync(join(dir, "b-")), { hwaccels: ["cuda"], initialises: [] })
    const { tool } = await detectTool("ffmpeg", exe, runner(), log)
    expect(tool.hwaccels).toEqual([])
    expect(tool.hwDevices).toEqual([])
    expect(tool.encoders.filter((n) => n.endsWith("_nvenc"))).toEqual([])
  })
  test("an initialisation that hangs counts as failed after the timeout", async () => {
    const exe = writeFfmpegWrapper(mkdtempSync(join(dir, "c-")), {
      hwaccels: ["cuda", "qsv"],
      initialises: ["cuda"],
      hangs: ["qsv"],
    })
    const { tool, failedDevices } = await detectTool("ffmpeg", exe, runner(1500), log)
    expect(tool.hwDevices).toEqual(["cuda"])
    expect(failedDevices).toEqual(["qsv"])
  })
  test("ffprobe: listings, no hwaccel verification", async () => {
    const seen: string[][] = []
    const { tool } = await detectTool("ffprobe", "ffprobe", runner(10_000, seen), log)
    expect(tool.decoders).toContain("h264")
    expect(tool.hwaccels).toEqual([])
    expect(seen.some((a) => a.includes("-init_hw_device"))).toBe(false)
  })
})

describe("a registration with the installed binaries' tools", () => {
  test("is well within the coordinator's registration cap (a quarter of it at most)", async () => {
    const tools = {
      ffmpeg: (await detectTool("ffmpeg", "ffmpeg", runner(), log)).tool,
      ffprobe: (await detectTool("ffprobe", "ffprobe", runner(), log)).tool,
    }
    const registration = { binaries: ["ffmpeg", "ffprobe"], paths: [], maxJobs: 4, version: "t", tools }
    const bytes = Buffer.byteLength(JSON.stringify(registration))
    expect(tools.ffmpeg.encoders.length).toBeGreaterThan(50)
    expect(bytes).toBeLessThan(REGISTRATION_BYTES / 4)
  })
})

describe("the detector: removal, cache, failures", () => {
  const none = { encoders: [], decoders: [], hwaccels: [], hw_devices: [], filters: [], muxers: [], demuxers: [] }
  test("remove_capabilities takes names out; a hwaccel and its device type go together", () => {
    const tool = toolCaps({
      encoders: ["libx264", "h264_nvenc"],
      hwaccels: ["cuda", "vaapi"],
      hwDevices: ["cuda", "vaapi"],
    })
    expect(removeCapabilities(tool, { ...none, encoders: ["h264_nvenc"], hwaccels: ["cuda"] })).toEqual({
      ...tool,
      encoders: ["libx264"],
      hwaccels: ["vaapi"],
      hwDevices: ["vaapi"],
    })
    expect(removeCapabilities(tool, { ...none, hw_devices: ["vaapi"] })).toMatchObject({
      hwaccels: ["cuda"],
      hwDevices: ["cuda"],
    })
  })
  test("a removed device type takes the encoders, decoders and filters that need it along, as detection does", () => {
    const tool = toolCaps({
      encoders: ["libx264", "h264_nvenc", "h264_vaapi"],
      decoders: ["h264", "h264_cuvid"],
      filters: ["scale", "scale_cuda", "scale_npp", "scale_vaapi"],
      hwaccels: ["cuda", "vaapi"],
      hwDevices: ["cuda", "vaapi"],
    })
    for (const rm of [{ hwaccels: ["cuda"] }, { hw_devices: ["cuda"] }])
      expect(removeCapabilities(tool, { ...none, ...rm })).toEqual({
        ...tool,
        encoders: ["libx264", "h264_vaapi"],
        decoders: ["h264"],
        filters: ["scale", "scale_vaapi"],
        hwaccels: ["vaapi"],
        hwDevices: ["vaapi"],
      })
  })
  test("detects once per binary file; a changed file is detected again", async () => {
    const exe = writeFfmpegWrapper(mkdtempSync(join(dir, "d-")), { version: "9.9-test" })
    const seen: string[][] = []
    const det = createCapabilityDetector({
      binaries: new Map([["ffmpeg", exe]]),
      run: runner(10_000, seen),
      remove: none,
      log,
    })
    const first = await det.tools()
    expect(first.ffmpeg?.version).toBe("9.9-test")
    const runs = seen.length
    expect(runs).toBeGreaterThanOrEqual(6)
    expect(await det.tools()).toEqual(first)
    expect(seen.length).toBe(runs)
    const later = new Date(Date.now() + 5000)
    utimesSync(exe, later, later)
    await det.tools()
    expect(seen.length).toBe(2 * runs)
  })
  test("a binary whose detection fails is left out, with a warning; the others are kept", async () => {
    const exe = writeFfmpegWrapper(mkdtempSync(join(dir, "e-")), { failing: ["-encoders"] })
    const lines: string[] = []
    const warnLog = createLogger({ level: "warn" })
    warnLog.setReporters([{ log: (o) => void lines.push(JSON.stringify(o.args)) }])
    const det = createCapabilityDetector({
      binaries: new Map([
        ["ffmpeg", exe],
        ["ffprobe", Bun.which("ffprobe")!],
      ]),
      run: runner(),
      remove: none,
      log: warnLog,
    })
    const tools = await det.tools()
    expect(Object.keys(tools)).toEqual(["ffprobe"])
    expect(lines.join("\n")).toContain("capability detection failed")
  })
})
