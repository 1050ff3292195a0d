import { describe, expect, test } from "bun:test"
import { getToken, parseFiltergraph } from "./filtergraph.ts"
import { parseUrl, urlHost } from "./url.ts"

describe("parseFiltergraph", () => {
  test("chains, labels, positional and keyed options", () => {
    expect(parseFiltergraph("[0:v]scale=1280:-1,setsar=1[v];movie=a.mkv:si=0[m]")).toEqual([
      { name: "scale", options: [{ value: "1280" }, { value: "-1" }] },
      { name: "setsar", options: [{ value: "1" }] },
      { name: "movie", options: [{ value: "a.mkv" }, { key: "si", value: "0" }] },
    ])
  })

  test("quotes and escapes are removed at both levels, as libavfilter does", () => {
    expect(parseFiltergraph("movie=filename='/etc/passwd'")[0].options).toEqual([
      { key: "filename", value: "/etc/passwd" },
    ])
    expect(parseFiltergraph("movie=\\/etc\\/passwd")[0].options).toEqual([{ value: "/etc/passwd" }])
    expect(parseFiltergraph("subtitles=f='a\\:b.srt'")[0].options).toEqual([{ key: "f", value: "a:b.srt" }])
    expect(parseFiltergraph("drawtext=text='a, b; c'")[0].options).toEqual([{ key: "text", value: "a, b; c" }])
  })

  test("an instance name is not part of the filter name", () => {
    expect(parseFiltergraph("movie@x=a.mkv")[0].name).toBe("movie")
  })

  test("getToken trims unquoted trailing space only", () => {
    expect(getToken("  a b  ,x", 0, ",")).toEqual({ token: "a b", end: 7 })
    expect(getToken("'a '", 0, ",").token).toBe("a ")
  })
})

describe("parseUrl", () => {
  test("plain paths, file:, wrappers and nested schemes", () => {
    expect(parseUrl("../x.mkv")).toEqual({ protocol: "file", rest: "../x.mkv", inner: [] })
    expect(parseUrl("file:../x")).toEqual({ protocol: "file", rest: "../x", inner: [] })
    expect(parseUrl("concat:a|/b").inner).toEqual(["a", "/b"])
    expect(parseUrl("subfile,,start,0,end,0,,:/abs").inner).toEqual(["/abs"])
    // url_alloc_for_protocol: the character after `subfile,` separates the options, an empty key ends them.
    expect(parseUrl("subfile,:::/abs").inner).toEqual(["/abs"])
    expect(parseUrl("subfile,:start:0:::/abs").inner).toEqual(["/abs"])
    expect(parseUrl("subfile,|start|0||:/abs").inner).toEqual(["/abs"])
    expect(parseUrl("subfile,|start|0|||:/abs").inner).toEqual([])
    // Options that do not end in an empty key, or no `:` after it: ffmpeg opens no file the target names.
    expect(parseUrl("subfile,,start,0,:/abs").inner).toEqual([])
    expect(parseUrl("subfile,,,x:y").inner).toEqual([])
    expect(parseUrl("crypto+file:/k").inner).toEqual(["file:/k"])
    expect(parseUrl("HTTP://h/x").protocol).toBe("http")
  })

  test("hosts and ports", () => {
    expect(urlHost("//127.0.0.1:8080/x")).toEqual({ host: "127.0.0.1", port: 8080 })
    expect(urlHost("//user:pw@[::1]:1935/app")).toEqual({ host: "::1", port: 1935 })
    expect(urlHost("//Example.COM/x")).toEqual({ host: "example.com", port: undefined })
  })
})
