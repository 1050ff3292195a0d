import { describe, expect, test } from "bun:test"
import * as v from "valibot"
import { Profile } from "../shared/config/server-schema.ts"
import { applyProfiles, describeRewrites } from "./profiles.ts"

const profiles = (raw: unknown[]) => raw.map((p) => v.parse(Profile, p))

describe("applyProfiles", () => {
  const nvencToQsv = { replace: { h264_nvenc: "h264_qsv", cuda: "qsv" } }
  const renderD = { replace_prefix: { "/dev/dri/renderD128": "/dev/dri/renderD129" } }
  const cases: [string, unknown[], string[], string[], string[]][] = [
    [
      "an encoder name, as the value of -c:v",
      [nvencToQsv],
      ["-i", "/m/a.mkv", "-c:v", "h264_nvenc", "/m/o.mp4"],
      ["-i", "/m/a.mkv", "-c:v", "h264_qsv", "/m/o.mp4"],
      ["h264_nvenc -> h264_qsv"],
    ],
    [
      "a hwaccel and an encoder in one profile",
      [nvencToQsv],
      ["-hwaccel", "cuda", "-i", "/m/a.mkv", "-codec:v:0", "h264_nvenc", "/m/o.mp4"],
      ["-hwaccel", "qsv", "-i", "/m/a.mkv", "-codec:v:0", "h264_qsv", "/m/o.mp4"],
      ["cuda -> qsv", "h264_nvenc -> h264_qsv"],
    ],
    [
      "a device path prefix",
      [renderD],
      ["-vaapi_device", "/dev/dri/renderD128", "-i", "/m/a.mkv", "/m/o.mp4"],
      ["-vaapi_device", "/dev/dri/renderD129", "-i", "/m/a.mkv", "/m/o.mp4"],
      ["/dev/dri/renderD128 -> /dev/dri/renderD129"],
    ],
    [
      "never an input or an output, even when it equals a key",
      [{ replace: { "/m/a.mkv": "/etc/shadow", "out.mp4": "/etc/passwd" } }],
      ["-i", "/m/a.mkv", "out.mp4"],
      ["-i", "/m/a.mkv", "out.mp4"],
      [],
    ],
    [
      "never an option name",
      [{ replace: { "-c:v": "-filter_complex" } }],
      ["-i", "/m/a.mkv", "-c:v", "libx264", "/m/o.mp4"],
      ["-i", "/m/a.mkv", "-c:v", "libx264", "/m/o.mp4"],
      [],
    ],
    [
      "whole values only: a filter graph naming the encoder is left alone",
      [nvencToQsv],
      ["-i", "/m/a.mkv", "-metadata", "comment=h264_nvenc", "-c:v", "h264_nvenc", "/m/o.mp4"],
      ["-i", "/m/a.mkv", "-metadata", "comment=h264_nvenc", "-c:v", "h264_qsv", "/m/o.mp4"],
      ["h264_nvenc -> h264_qsv"],
    ],
    [
      "options narrows it to those options' values",
      [{ replace: { cuda: "vaapi" }, options: ["hwaccel"] }],
      ["-hwaccel", "cuda", "-init_hw_device", "cuda", "-i", "/m/a.mkv", "/m/o.mp4"],
      ["-hwaccel", "vaapi", "-init_hw_device", "cuda", "-i", "/m/a.mkv", "/m/o.mp4"],
      ["cuda -> vaapi"],
    ],
    [
      "binary narrows it to one binary",
      [{ replace: { h264: "hevc" }, binary: "ffprobe" }],
      ["-c:v", "h264", "-i", "/m/a.mkv", "/m/o.mp4"],
      ["-c:v", "h264", "-i", "/m/a.mkv", "/m/o.mp4"],
      [],
    ],
    [
      "in order: a later profile sees what an earlier one wrote",
      [{ replace: { h264_nvenc: "h264_qsv" } }, { replace: { h264_qsv: "h264_vaapi" } }],
      ["-i", "/m/a.mkv", "-c:v", "h264_nvenc", "/m/o.mp4"],
      ["-i", "/m/a.mkv", "-c:v", "h264_vaapi", "/m/o.mp4"],
      ["h264_nvenc -> h264_qsv", "h264_qsv -> h264_vaapi"],
    ],
    [
      "the longest prefix wins; replace before replace_prefix",
      [{ replace_prefix: { "/dev/dri/": "/dev/x/", "/dev/dri/renderD": "/dev/dri/card" } }],
      ["-vaapi_device", "/dev/dri/renderD128", "-i", "/m/a.mkv", "/m/o.mp4"],
      ["-vaapi_device", "/dev/dri/card128", "-i", "/m/a.mkv", "/m/o.mp4"],
      ["/dev/dri/renderD128 -> /dev/dri/card128"],
    ],
  ]
  for (const [name, raw, args, want, changes] of cases)
    test(name, () => {
      const out = applyProfiles(name.includes("ffprobe") ? "ffprobe" : "ffmpeg", args, profiles(raw))
      expect(out.args).toEqual(want)
      expect(out.rewrites.map((r) => `${r.from} -> ${r.to}`)).toEqual(changes)
      // The command keeps its shape: as many arguments, the same options in the same places.
      expect(out.args.length).toBe(args.length)
    })
})

describe("describeRewrites", () => {
  test("each change once, for the timeline", () => {
    const r = (from: string, to: string) => ({ index: 1, option: "c", from, to })
    expect(describeRewrites([])).toBeUndefined()
    expect(describeRewrites([r("h264_nvenc", "h264_qsv"), r("h264_nvenc", "h264_qsv"), r("cuda", "qsv")])).toBe(
      "profile: h264_nvenc -> h264_qsv, cuda -> qsv",
    )
  })
  test("a caller's control or bidi characters never reach the timeline", () => {
    expect(describeRewrites([{ index: 1, option: "x", from: "/dev/a\u202e\u001b", to: "/dev/b\u202e\u001b" }])).toBe(
      "profile: /dev/a?? -> /dev/b??",
    )
  })
})

describe("Profile (config)", () => {
  test.each([
    [{}, "a profile needs replace or replace_prefix"],
    [{ replace: {} }, "1-256 entries"],
    [{ replace: { a: "" } }, "must not be empty"],
    [{ replace: { a: "b\n" } }, "no control characters"],
    [{ replace: { a: "b" }, options: ["-c:v"] }, "option names without"],
    [{ replace: { a: "b" }, extra: 1 }, "extra"],
  ])("refuses %j", (raw, message) => {
    const res = v.safeParse(Profile, raw)
    expect(res.success).toBe(false)
    expect(JSON.stringify(res.issues)).toContain(message)
  })
})
