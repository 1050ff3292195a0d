import { describe, expect, test } from "bun:test"
import { parseFiltergraph } from "./filtergraph.ts"
import { escapeGraphArgs, rewriteGraphPaths, serialiseFilterArgs } from "./graph-paths.ts"

/** Maps /media/... to $Media/... the way the client does, and records what it saw. */
function toVar(graph: string) {
  const seen: string[] = []
  const out = rewriteGraphPaths(graph, (value, filter) => {
    seen.push(`${filter}:${value}`)
    return value.startsWith("/media/") ? `$Media/${value.slice("/media/".length)}` : value
  })
  return { out, seen }
}

describe("rewriteGraphPaths", () => {
  const cases: [string, string, string, string[]][] = [
    [
      "Jellyfin burn-in from the mkv's own stream",
      "subtitles=f='/media/Movies/a.mkv':si=0:alpha=1",
      "subtitles=f=$Media/Movies/a.mkv:si=0:alpha=1",
      ["subtitles:/media/Movies/a.mkv"],
    ],
    [
      "a quoted positional file name and fontsdir",
      "subtitles='/media/a.srt':fontsdir='/media/fonts'",
      "subtitles=$Media/a.srt:fontsdir=$Media/fonts",
      ["subtitles:/media/a.srt", "subtitles:/media/fonts"],
    ],
    ["ass positional", "ass=/media/a.ass", "ass=$Media/a.ass", ["ass:/media/a.ass"]],
    [
      "movie source overlaid, labels and chains kept",
      "movie=/media/logo.png[wm];[in][wm]overlay",
      "movie=$Media/logo.png[wm];[in][wm]overlay",
      ["movie:/media/logo.png"],
    ],
    [
      "a colon escaped for both levels stays in the name",
      "subtitles=filename=/media/x\\\\:y.srt",
      "subtitles=filename=$Media/x\\\\:y.srt",
      ["subtitles:/media/x:y.srt"],
    ],
    [
      "a colon escaped once is used up at the graph level and splits the options, as in ffmpeg",
      "subtitles=filename=/media/x\\:y.srt",
      "subtitles=filename=$Media/x:y.srt",
      ["subtitles:/media/x", "subtitles:y.srt"],
    ],
    [
      "a quote escaped for both levels",
      "subtitles=f=/media/a\\\\\\'b.srt",
      "subtitles=f=$Media/a\\\\\\'b.srt",
      ["subtitles:/media/a'b.srt"],
    ],
    [
      "a space inside quotes, then more filters",
      "scale=640:-2,subtitles=f='/media/a b.mkv':si=0,format=yuv420p",
      "scale=640:-2,subtitles=f=$Media/a b.mkv:si=0,format=yuv420p",
      ["subtitles:/media/a b.mkv"],
    ],
    [
      "graph-level specials in the name",
      "subtitles='/media/a,b;[c].srt'",
      "subtitles=$Media/a\\,b\\;\\[c\\].srt",
      ["subtitles:/media/a,b;[c].srt"],
    ],
    [
      "drawtext files, other options untouched",
      "drawtext=fontfile=/media/f.ttf:textfile=/media/t.txt:x=10",
      "drawtext=fontfile=$Media/f.ttf:textfile=$Media/t.txt:x=10",
      ["drawtext:/media/f.ttf", "drawtext:/media/t.txt"],
    ],
    ["lut3d positional", "lut3d=/media/a.cube", "lut3d=$Media/a.cube", ["lut3d:/media/a.cube"]],
    [
      "movie's f is the format, not the file",
      "movie=filename=/media/a.mkv:f=matroska",
      "movie=filename=$Media/a.mkv:f=matroska",
      ["movie:/media/a.mkv"],
    ],
    ["sendcmd file", "sendcmd=f=/media/c.txt,null", "sendcmd=f=$Media/c.txt,null", ["sendcmd:/media/c.txt"]],
    [
      "file options found in ffmpeg -h full: nnedi's positional weights, showcqt's font and axis files",
      "nnedi=/media/w.bin:field=af,showcqt=fontfile=/media/f.ttf:axisfile=/media/a.png:fps=25",
      "nnedi=$Media/w.bin:field=af,showcqt=fontfile=$Media/f.ttf:axisfile=$Media/a.png:fps=25",
      ["nnedi:/media/w.bin", "showcqt:/media/f.ttf", "showcqt:/media/a.png"],
    ],
    [
      "life and cellauto read a pattern file, fieldhint a hint file, curves writes a plot",
      "life=f=/media/p.txt;cellauto=/media/c.txt;fieldhint=/media/h.txt,curves=plot=/media/plot.gp",
      "life=f=$Media/p.txt;cellauto=$Media/c.txt;fieldhint=$Media/h.txt,curves=plot=$Media/plot.gp",
      ["life:/media/p.txt", "cellauto:/media/c.txt", "fieldhint:/media/h.txt", "curves:/media/plot.gp"],
    ],
    [
      "filters that name no file are left byte for byte",
      "[0:v] scale = 1280:-1 , drawtext=text='a, b'",
      "[0:v] scale = 1280:-1 , drawtext=text='a, b'",
      [],
    ],
    [
      "a value that maps to itself leaves its filter as written",
      "subtitles=f='rel.srt':si=0",
      "subtitles=f='rel.srt':si=0",
      ["subtitles:rel.srt"],
    ],
    [
      "a movie whose file is a nested graph is not a path",
      "movie=f=lavfi:filename=color",
      "movie=f=lavfi:filename=color",
      [],
    ],
  ]
  for (const [what, graph, want, seen] of cases) {
    test(what, () => {
      const got = toVar(graph)
      expect(got.out).toBe(want)
      expect(got.seen).toEqual(seen)
    })
  }

  test("the rewritten graph parses to the same filters with the new paths", () => {
    // No option that names no file starts with /media/ in these cases, so every /media/ value is a mapped file.
    for (const [, graph] of cases) {
      const want = parseFiltergraph(graph).map((f) => ({
        ...f,
        options: f.options.map((o) => ({ ...o, value: o.value.replace(/^\/media\//, "$Media/") })),
      }))
      expect(parseFiltergraph(toVar(graph).out)).toEqual(want)
    }
  })

  test("worker side: a path with every special character survives both escaping levels", () => {
    const path = "/srv/st:or'a\\ge/a, b; [c] = d.srt"
    const out = rewriteGraphPaths("subtitles=f='$Media/a.srt':si=0", () => path)
    expect(parseFiltergraph(out)[0].options).toEqual([
      { key: "f", value: path },
      { key: "si", value: "0" },
    ])
    // Positional: a value with `=` must not turn into a key.
    const pos = rewriteGraphPaths("subtitles=$Media/a.srt", () => "/srv/a=b.srt")
    expect(parseFiltergraph(pos)[0].options).toEqual([{ value: "/srv/a=b.srt" }])
    // Leading and trailing blanks are kept (av_get_token trims unescaped ones).
    const blank = rewriteGraphPaths("ass=$Media/a.ass", () => " /srv/a.ass ")
    expect(parseFiltergraph(blank)[0].options).toEqual([{ value: " /srv/a.ass " }])
  })
})

describe("round trip", () => {
  const graphs = [
    "subtitles=f='/media/Movies/a.mkv':si=0:alpha=1",
    "subtitles='/media/a.srt':fontsdir='/media/fonts'",
    "drawtext=text='it\\'s 10\\:00, ok; [x]':fontsize=20",
    "movie=/media/logo.png[wm];[in][wm]overlay=10:10",
    "subtitles=filename=/media/x\\:y.srt:force_style='FontName=Arial,Outline=1'",
    "scale=w=iw/2:h=-2",
  ]
  for (const g of graphs) {
    test(`parse(serialise(g)) == g: ${g}`, () => {
      for (const f of parseFiltergraph(g)) {
        const again = parseFiltergraph(`${f.name}=${escapeGraphArgs(serialiseFilterArgs(f.options))}`)
        expect(again).toEqual([f])
      }
    })
  }
})
