import { describe, expect, test } from "bun:test"
import { parseAttributes, playlistEntries } from "./hls.ts"

describe("HLS attributes (ff_parse_key_value)", () => {
  test("quoted, escaped and unquoted values", () => {
    expect(parseAttributes('METHOD=AES-128,URI="a\\"b",IV=0x1')).toEqual([
      ["METHOD", "AES-128"],
      ["URI", 'a"b'],
      ["IV", "0x1"],
    ])
    expect(parseAttributes("URI=../../secret.ts,BYTERANGE=10")).toEqual([
      ["URI", "../../secret.ts"],
      ["BYTERANGE", "10"],
    ])
  })

  test("entries: URI lines and URI= of every tag, quoted or not, with line numbers", () => {
    const text =
      '#EXTM3U\n#EXT-X-MAP:URI=../../a.ts\n#EXT-X-KEY:METHOD=AES-128,URI="k.key"\r#EXT-X-MEDIA:TYPE=AUDIO, URI=au.m3u8\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI="if.m3u8"\n#EXTINF:1,\nseg.ts\n'
    expect(playlistEntries(text)).toEqual([
      { line: 2, uri: "../../a.ts" },
      { line: 3, uri: "k.key" },
      { line: 4, uri: "au.m3u8" },
      { line: 5, uri: "if.m3u8" },
      { line: 7, uri: "seg.ts" },
    ])
  })
})
