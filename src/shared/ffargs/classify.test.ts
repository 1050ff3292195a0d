import { describe, expect, test } from "bun:test"
import { classifyArgs, deviceParts, optionKind } from "./classify.ts"
import { rewriteTee, teeSlaves } from "./tee.ts"
import { rewriteUrl } from "./url.ts"

const kinds = (tool: "ffmpeg" | "ffprobe", args: string[]) => classifyArgs(tool, args).map((p) => p.kind)

describe("classifyArgs", () => {
  test("every position of an ffmpeg command line", () => {
    const args = [
      "-init_hw_device",
      "vaapi=va:/dev/dri/renderD128",
      "-i",
      "/m/a.mkv",
      "-i",
      "concat:/m/a.ts|/m/b.ts",
      "-f",
      "lavfi",
      "-i",
      "movie=/m/a.png",
      "-filter:v:0",
      "scale=1:1",
      "-metadata",
      "title=/x",
      "-hls_base_url",
      "/videos/",
      "-hls_segment_filename",
      "/m/s%d.ts",
      "-progress",
      "pipe:1",
      "-x264opts",
      "/m/x",
      "/m/out.m3u8",
      "-f",
      "tee",
      "[f=null]/dev/null",
      "--",
      "-odd.mkv",
    ]
    expect(kinds("ffmpeg", args)).toEqual([
      "option",
      "device",
      "option",
      "path",
      "option",
      "url",
      "option",
      "text",
      "option",
      "graph",
      "option",
      "graph",
      "option",
      "text",
      "option",
      "text",
      "option",
      "path",
      "option",
      "url",
      "option",
      "unknown",
      "path",
      "option",
      "text",
      "tee",
      "separator",
      "path",
    ])
    expect(classifyArgs("ffmpeg", args)[17].name).toBe("hls_segment_filename")
  })

  test("ffprobe: the positional input, -o output, a lavfi input is a graph", () => {
    expect(kinds("ffprobe", ["-show_entries", "format=filename", "-o", "/m/out.json", "/m/a.mkv"])).toEqual([
      "option",
      "text",
      "option",
      "path",
      "path",
    ])
    expect(kinds("ffprobe", ["-show_streams", "-f", "lavfi", "movie=/media/a.mkv"])).toEqual([
      "option",
      "option",
      "text",
      "graph",
    ])
    // A tee format means nothing to ffprobe's text output.
    expect(kinds("ffprobe", ["-f", "tee", "-o", "[f=null]x", "a.mkv"])[3]).toBe("path")
  })

  test("option kinds: one table for mappers and policy", () => {
    expect(
      ["filter_complex_script", "dump_attachment", "hls_fmp4_init_filename", "ca_file", "header"].map(optionKind),
    ).toEqual(["path", "path", "path", "path", "path"])
    // hlsenc writes the key to -hls_enc_key_url (with -hls_enc 1): a file, not only the playlist's URI.
    expect(optionKind("hls_enc_key_url")).toBe("path")
    expect(
      ["vaapi_device", "qsv_device", "init_hw_device", "hwaccel_device", "filter_hw_device"].map(optionKind),
    ).toEqual(["device", "device", "device", "device", "device"])
    expect(["metadata", "hls_base_url", "segment_list_entry_prefix", "headers", "map"].map(optionKind)).toEqual([
      "text",
      "text",
      "text",
      "text",
      "text",
    ])
    expect(["vf", "lavfi", "graph"].map(optionKind)).toEqual(["graph", "graph", "graph"])
    expect(["c", "x264-params", "b"].map(optionKind)).toEqual(["unknown", "unknown", "unknown"])
  })
})

describe("deviceParts", () => {
  test.each([
    ["init_hw_device", "vaapi=va:/dev/dri/renderD128", ["/dev/dri/renderD128"]],
    ["init_hw_device", "vaapi=va:/dev/dri/renderD128,driver=iHD", ["/dev/dri/renderD128", "iHD"]],
    ["init_hw_device", "vaapi:/dev/dri/card0", ["/dev/dri/card0"]],
    ["init_hw_device", "vaapi=va:,kernel_driver=i915,driver=iHD", ["i915", "iHD"]],
    ["init_hw_device", "qsv=hw:hw_any,child_device=/dev/dri/renderD129", ["hw_any", "/dev/dri/renderD129"]],
    ["init_hw_device", "qsv=qs@va", []],
    ["init_hw_device", "qsv=hw", []],
    ["init_hw_device", "cuda=cu:0", ["0"]],
    ["init_hw_device", "vaapi", []],
    ["vaapi_device", "/dev/dri/renderD128", ["/dev/dri/renderD128"]],
    ["vaapi_device", "/dev/dri/renderD128,kernel_driver=i915", ["/dev/dri/renderD128", "i915"]],
    ["qsv_device", "/dev/dri/renderD128", ["hw_any", "/dev/dri/renderD128"]],
    ["qsv_device", "/dev/dri/renderD128,child_device=/etc/x", ["hw_any", "/dev/dri/renderD128", "/etc/x"]],
    ["hwaccel_device", "0", ["0"]],
    ["filter_hw_device", "va", []],
  ])("%s %s", (name, value, want) => {
    expect(deviceParts(name, value)).toEqual(want)
  })
})

describe("tee slaves", () => {
  test("split on unescaped | (quotes and escapes removed once), options parsed as tee does", () => {
    const url = "[f=mpegts:onfail=ignore]/m/a.ts|'[f=null]x|y'|[f=matroska]  z\\|w.mkv  |plain.mkv|[bad]x"
    expect(teeSlaves(url).map((s) => [s.options, s.target])).toEqual([
      ["f=mpegts:onfail=ignore", "/m/a.ts"],
      ["f=null", "x|y"],
      ["f=matroska", "  z|w.mkv"],
      ["", "plain.mkv"],
      ["", undefined],
    ])
    expect(teeSlaves("[select=\\'v:0\\']/m/a.ts")[0].target).toBe("/m/a.ts")
    // The pairs the policy checks key by key: values unescaped as av_opt_get_key_value reads them.
    expect(teeSlaves("[select=\\'v:0\\']/m/a.ts")[0].pairs).toEqual([["select", "v:0"]])
    expect(teeSlaves("[ f = hls :hls_time=2:x=a\\\\:b]o.m3u8")[0].pairs).toEqual([
      ["f", "hls"],
      ["hls_time", "2"],
      ["x", "a:b"],
    ])
    expect(teeSlaves("[bad]x")[0].pairs).toEqual([])
    expect(teeSlaves("")).toEqual([])
  })

  test("rewriteTee keeps unchanged slaves and options byte for byte and escapes new targets", () => {
    const map = (t: string) => t.replace(/^\/m\//, "$M/")
    expect(rewriteTee("[f=mpegts:onfail=ignore]/m/a.ts|[f=null]/dev/null", map)).toBe(
      "[f=mpegts:onfail=ignore]$M/a.ts|[f=null]/dev/null",
    )
    expect(rewriteTee("[f=matroska]/m/a\\|b.mkv|/m/c\\'d.mkv|/m/'e f'.mkv", map)).toBe(
      "[f=matroska]$M/a\\|b.mkv|$M/c\\'d.mkv|$M/e f.mkv",
    )
    // A quote across the options and the target: the options are written again, escaped.
    expect(rewriteTee("'[f=null]/m/x y'", map)).toBe("[f=null]$M/x y")
    expect(rewriteTee("'[f=null]/m/x y '", map)).toBe("[f=null]$M/x y\\ ")
    expect(rewriteTee("[bad]/m/x", map)).toBe("[bad]/m/x")
    for (const url of ["[f=null]/m/x y|/m/a\\|b", "'[f=null]/m/x y '"]) {
      expect(teeSlaves(rewriteTee(url, map)).map((s) => s.target)).toEqual(teeSlaves(url).map((s) => map(s.target!)))
    }
  })
})

describe("tee slaves: rewriting keeps what tee reads", () => {
  test("for 2000 random URLs of tee's special characters, every target reads back as mapped and nothing else changes", () => {
    let seed = 11
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    const alphabet = ["[", "]", "=", ":", "|", "'", "\\", " ", "/m/", "a", "f", "null"]
    const map = (t: string) => (t.includes("/m/") ? t.replaceAll("/m/", "/w w/") : t)
    for (let n = 0; n < 2000; n++) {
      const url = Array.from({ length: 1 + rand(14) }, () => alphabet[rand(alphabet.length)]).join("")
      const before = teeSlaves(url)
      const out = rewriteTee(url, map)
      const after = teeSlaves(out)
      expect(
        after.map((s) => [s.options, s.target]),
        url,
      ).toEqual(before.map((s) => [s.options, s.target && map(s.target)]))
      if (before.every((s) => s.target === undefined || map(s.target) === s.target)) expect(out).toBe(url)
    }
  })
})

describe("rewriteUrl", () => {
  const map = (p: string) => p.replace(/^(file:)?\/m\//, "$1$M/")
  test.each([
    ["concat:/m/a.ts|/m/b.ts|rel.ts|http://h/c.ts", "concat:$M/a.ts|$M/b.ts|rel.ts|http://h/c.ts"],
    ["subfile,,start,0,end,10,,:/m/a.vob", "subfile,,start,0,end,10,,:$M/a.vob"],
    ["subfile:/m/a.vob", "subfile:$M/a.vob"],
    ["cache:/m/a.ts", "cache:$M/a.ts"],
    ["crypto:/m/a.ts", "crypto:$M/a.ts"],
    ["crypto+file:/m/a.ts", "crypto+file:$M/a.ts"],
    ["cache:http://h/m/a.ts", "cache:http://h/m/a.ts"],
    ["http://h/m/a.ts", "http://h/m/a.ts"],
    ["pipe:1", "pipe:1"],
    ["/m/a.ts", "/m/a.ts"],
  ])("%s", (url, want) => {
    expect(rewriteUrl(url, map)).toBe(want)
  })
})
