import { describe, expect, test } from "bun:test"
import { fileOption, infoCommand, parseArgv, takesValue, type Tool } from "./argv.ts"

const roles = (tool: "ffmpeg" | "ffprobe", args: string[]) =>
  parseArgv(tool, args).tokens.map((t) => `${t.role}:${t.text}`)

describe("parseArgv (ffmpeg)", () => {
  test("options, values, inputs after -i and positional outputs", () => {
    expect(roles("ffmpeg", ["-y", "-ss", "1", "-i", "in.mkv", "-c:v", "libx264", "out.mkv"])).toEqual([
      "option:-y",
      "option:-ss",
      "value:1",
      "option:-i",
      "input:in.mkv",
      "option:-c:v",
      "value:libx264",
      "output:out.mkv",
    ])
  })

  test("stream specifiers are split from the option name", () => {
    const t = parseArgv("ffmpeg", ["-dump_attachment:t:0", "x.ttf", "-i", "a.mkv"]).tokens[0]
    expect([t.name, t.spec]).toEqual(["dump_attachment", "t:0"])
  })

  test("unknown names are AVOptions and take a value; -noX booleans take none", () => {
    expect(takesValue("ffmpeg", "hls_segment_filename")).toBe(true)
    expect(takesValue("ffmpeg", "nostdin")).toBe(false)
    expect(takesValue("ffmpeg", "noautorotate")).toBe(false)
    // autorotate is a boolean with HAS_ARG in fftools 5.1: it swallows the next argument.
    expect(takesValue("ffmpeg", "autorotate")).toBe(true)
    expect(takesValue("ffmpeg", "vstats")).toBe(false)
    expect(takesValue("ffmpeg", "novstats")).toBe(true)
  })

  test("-- makes only the next argument an output", () => {
    const outs = parseArgv("ffmpeg", ["-i", "a", "--", "-weird.mkv", "-y", "b.mkv"]).files.map(
      (f) => `${f.kind}:${f.url}`,
    )
    expect(outs).toEqual(["input:a", "output:-weird.mkv", "output:b.mkv"])
  })

  test("every -- is a separator for ffmpeg, so '-- --' still protects the argument after them", () => {
    // split_commandline checks for "--" before the protection: "-metadata" and "/x" are both outputs.
    const outs = parseArgv("ffmpeg", ["-i", "a", "--", "--", "-metadata", "/x"]).files.map((f) => `${f.kind}:${f.url}`)
    expect(outs).toEqual(["input:a", "output:-metadata", "output:/x"])
    // ffprobe: after the first --, everything is positional (a second -- is the input).
    expect(parseArgv("ffprobe", ["--", "--"]).files.map((f) => f.url)).toEqual(["--"])
  })

  test("per-file options belong to the next file", () => {
    const { files } = parseArgv("ffmpeg", [
      "-f",
      "concat",
      "-safe",
      "0",
      "-i",
      "list.txt",
      "-f",
      "tee",
      "[f=matroska]a.mkv",
    ])
    expect(fileOption(files[0], "f")).toBe("concat")
    expect(fileOption(files[0], "safe")).toBe("0")
    expect(fileOption(files[1], "f")).toBe("tee")
    expect(fileOption(files[1], "safe")).toBeUndefined()
  })
})

describe("parseArgv (ffprobe)", () => {
  test("the positional is the input, -o the output, options apply to the input wherever they are", () => {
    const { files } = parseArgv("ffprobe", ["-show_streams", "in.mkv", "-of", "json", "-o", "out.json", "-f", "hls"])
    expect(files.map((f) => `${f.kind}:${f.url}`)).toEqual(["input:in.mkv", "output:out.json"])
    expect(fileOption(files[0], "f")).toBe("hls")
  })

  test("-noX is option X for any ffprobe option (parse_option), with X's argument: -nof is -f, -noi is -i", () => {
    const { files, tokens } = parseArgv("ffprobe", ["-nof", "lavfi", "-noshow_entries", "format", "amovie=/x"])
    expect(files.map((f) => `${f.kind}:${f.url}`)).toEqual(["input:amovie=/x"])
    expect(fileOption(files[0], "f")).toBe("lavfi")
    expect(tokens[2].name).toBe("show_entries")
    expect(parseArgv("ffprobe", ["-noi", "a.m3u8"]).files.map((f) => `${f.kind}:${f.url}`)).toEqual(["input:a.m3u8"])
    expect(parseArgv("ffprobe", ["-noo", "o.json", "a"]).files.map((f) => `${f.kind}:${f.url}`)).toEqual([
      "output:o.json",
      "input:a",
    ])
    // An AVOption keeps its name (ffprobe finds no option "fflags" to negate), and ffmpeg negates booleans only.
    expect(parseArgv("ffprobe", ["-nofflags", "x", "a"]).tokens[0].name).toBe("nofflags")
    expect(parseArgv("ffmpeg", ["-nof", "lavfi", "-i", "a", "o"]).files.map((f) => fileOption(f, "f"))).toEqual([
      undefined,
      undefined,
    ])
  })
})

describe("infoCommand", () => {
  const cases: [Tool, string[], ReturnType<typeof infoCommand>][] = [
    ["ffmpeg", ["-version"], { name: "version" }],
    ["ffmpeg", ["-hide_banner", "-encoders"], { name: "encoders" }],
    ["ffmpeg", ["-hide_banner", "-loglevel", "quiet", "-hwaccels"], { name: "hwaccels" }],
    ["ffmpeg", ["-h", "encoder=h264_nvenc"], { name: "h", topic: "encoder=h264_nvenc" }],
    ["ffmpeg", ["-hide_banner", "-h", "filter=scale_cuda"], { name: "h", topic: "filter=scale_cuda" }],
    ["ffmpeg", ["-help"], { name: "h" }],
    ["ffprobe", ["-version"], { name: "version" }],
    ["ffprobe", ["-hide_banner", "-buildconf"], { name: "buildconf" }],
    ["ffmpeg", ["-i", "/m/a.mkv", "-f", "null", "-"], undefined],
    ["ffmpeg", ["-i", "/m/a.mkv", "-version"], undefined],
    ["ffprobe", ["-v", "error", "-show_format", "/m/a.mkv"], undefined],
    ["ffmpeg", ["-hide_banner"], undefined],
  ]
  for (const [tool, args, want] of cases)
    test(`${tool} ${args.join(" ")}`, () => expect(infoCommand(tool, args)).toEqual(want))
})
