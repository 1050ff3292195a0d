import { describe, expect, test } from "bun:test"
import type { Rewrite } from "../shared/config/schema.ts"
import { rewriteArgs } from "./rewrite.ts"

const nvenc = [
  "-hwaccel",
  "cuda",
  "-hwaccel_output_format",
  "cuda",
  "-i",
  "in.mkv",
  "-c:v",
  "h264_nvenc",
  "-c:a",
  "copy",
  "out.mp4",
]

describe("fallback rewrites", () => {
  test.each<[string, Rewrite[], string[], string[]]>([
    [
      "replace swaps an encoder named as an option value",
      [{ replace: { h264_nvenc: "libx264" } }],
      ["-i", "in.mkv", "-c:v", "h264_nvenc", "out.mp4"],
      ["-i", "in.mkv", "-c:v", "libx264", "out.mp4"],
    ],
    [
      "replace never touches inputs, outputs or option names",
      [{ replace: { h264_nvenc: "libx264", "-c:v": "-x", "in.mkv": "other.mkv" } }],
      ["-i", "in.mkv", "-c:v", "copy", "h264_nvenc"],
      ["-i", "in.mkv", "-c:v", "copy", "h264_nvenc"],
    ],
    [
      "drop removes -hwaccel cuda wherever it is, and nothing else",
      [{ drop: ["-hwaccel", "cuda"] }],
      [
        "-hwaccel",
        "cuda",
        "-i",
        "a.mkv",
        "-hwaccel",
        "vaapi",
        "-i",
        "b.mkv",
        "-hwaccel",
        "cuda",
        "-i",
        "c.mkv",
        "o.mkv",
      ],
      ["-i", "a.mkv", "-hwaccel", "vaapi", "-i", "b.mkv", "-i", "c.mkv", "o.mkv"],
    ],
    [
      "drop does not split an option from its value (the value would become an output)",
      [{ drop: ["-hwaccel"] }],
      ["-hwaccel", "cuda", "-i", "in.mkv", "out.mp4"],
      ["-hwaccel", "cuda", "-i", "in.mkv", "out.mp4"],
    ],
    [
      "drop does not match a value that merely looks like its first argument",
      [{ drop: ["-an"] }],
      ["-metadata", "-an", "-i", "in.mkv", "-an", "out.mp4"],
      ["-metadata", "-an", "-i", "in.mkv", "out.mp4"],
    ],
    [
      "drop_option removes options with whatever value they have",
      [{ drop_option: ["-hwaccel", "-hwaccel_output_format"] }],
      nvenc,
      ["-i", "in.mkv", "-c:v", "h264_nvenc", "-c:a", "copy", "out.mp4"],
    ],
    [
      "drop_option without a stream specifier matches every specifier; with one, only it",
      [{ drop_option: ["-b"] }, { drop_option: ["-c:a"] }],
      ["-i", "in.mkv", "-b:v", "2M", "-b:a", "128k", "-c:v", "libx264", "-c:a", "aac", "out.mp4"],
      ["-i", "in.mkv", "-c:v", "libx264", "out.mp4"],
    ],
    [
      "drop_option of a flag removes only the flag",
      [{ drop_option: ["-re"] }],
      ["-re", "-i", "in.mkv", "out.mp4"],
      ["-i", "in.mkv", "out.mp4"],
    ],
    [
      "rules apply in order: the Jellyfin NVENC fallback",
      [{ drop_option: ["-hwaccel", "-hwaccel_output_format"] }, { replace: { h264_nvenc: "libx264" } }],
      nvenc,
      ["-i", "in.mkv", "-c:v", "libx264", "-c:a", "copy", "out.mp4"],
    ],
    ["no rules: the caller's argv as is", [], nvenc, nvenc],
  ])("%s", (_name, rules, args, want) => {
    expect(rewriteArgs("ffmpeg", args, rules)).toEqual(want)
  })

  test("ffprobe's arguments are read with ffprobe's model", () => {
    // `-o` takes a value in ffprobe (its output); `-show_streams` takes none.
    expect(
      rewriteArgs("ffprobe", ["-show_streams", "-o", "h264_nvenc", "-i", "in.mkv"], [{ drop_option: ["-o"] }]),
    ).toEqual(["-show_streams", "-i", "in.mkv"])
  })

  test("the caller's array is not changed", () => {
    const args = [...nvenc]
    rewriteArgs("ffmpeg", args, [{ drop_option: ["-hwaccel"] }])
    expect(args).toEqual(nvenc)
  })
})
