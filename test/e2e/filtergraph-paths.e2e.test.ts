import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { sample, makeMedia as make, md5 } from "../helpers/media.ts"

// Files named inside filtergraphs (subtitle burn-in, movie overlays): the sandboxed worker sees the storage
// at another path than the caller and cannot see the caller's paths, so an untranslated path fails there.
// Local ffmpeg on the caller's paths is the reference: the same exit code and the same frames.
let c: Cluster
let media: string
let srt: string
let subbed: string
let logo: string
let odd: string
let ass: string
let fonts: string

const SRT = "1\n00:00:00,000 --> 00:00:05,000\nBurned in through dffmpeg\n\n"
/** An .ass script whose style names the font that only the `fontsdir` folder holds under that file name. */
const ASS = [
  "[Script Info]",
  "ScriptType: v4.00+",
  "PlayResX: 320",
  "PlayResY: 240",
  "",
  "[V4+ Styles]",
  "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding",
  "Style: Default,DejaVu Sans Mono,24,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1",
  "",
  "[Events]",
  "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
  "Dialogue: 0,0:00:00.00,0:00:05.00,Default,,0,0,0,,Burned in with its own font",
  "",
].join("\n")

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, maxJobs: 2 })
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
  writeFileSync(join(c.storage, "a.srt"), SRT)
  // A name with what both escaping levels of a filtergraph take: `:` `'` `,` `;` `[` `]` `=` and a space.
  writeFileSync(join(c.storage, "we:i'r,d; [x] =.srt"), SRT.replace("dffmpeg", "odd names"))
  make(
    ["-i", join(c.storage, "av.mkv"), "-i", join(c.storage, "a.srt"), "-map", "0", "-map", "1", "-c", "copy"].concat([
      "-c:s",
      "srt",
      join(c.storage, "subbed.mkv"),
    ]),
  )
  make(["-f", "lavfi", "-i", "color=c=red:s=48x32", "-frames:v", "1", join(c.storage, "logo.png")])
  writeFileSync(join(c.storage, "a.ass"), ASS)
  mkdirSync(join(c.storage, "fonts"))
  copyFileSync("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", join(c.storage, "fonts", "Mine.ttf"))
  media = join(c.clientMedia, "av.mkv")
  srt = join(c.clientMedia, "a.srt")
  subbed = join(c.clientMedia, "subbed.mkv")
  logo = join(c.clientMedia, "logo.png")
  odd = join(c.clientMedia, "we:i'r,d; [x] =.srt")
  ass = join(c.clientMedia, "a.ass")
  fonts = join(c.clientMedia, "fonts")
}, 60_000)

afterAll(async () => {
  await c?.stop()
})

/** The first frames of `-vf graph` on the sample as framemd5, remote and local; both must succeed and agree. */
async function frames(graph: string, option = "-vf"): Promise<RunResult> {
  const args = ["-v", "error", "-i", media, option, graph, "-frames:v", "5", "-an", "-f", "framemd5", "-"]
  const remote = await c.run("ffmpeg", args)
  const local = await c.local("ffmpeg", args)
  if (remote.code !== 0 || local.code !== 0)
    throw new Error(`exit ${remote.code} vs ${local.code}: ${remote.err}\n${local.err}\n${c.logs()}`)
  expect(md5(remote.stdout)).toBe(md5(local.stdout))
  expect(remote.err).toBe(local.err)
  return remote
}

describe("paths inside filtergraphs", () => {
  let plain = ""
  beforeAll(async () => {
    plain = md5(
      (await c.local("ffmpeg", ["-v", "error", "-i", media, "-frames:v", "5", "-an", "-f", "framemd5", "-"])).stdout,
    )
  })

  test("subtitle burn-in from an external .srt (positional file name)", async () => {
    const r = await frames(`subtitles=${srt}`)
    // The subtitle was really drawn: the frames differ from the sample's own.
    expect(md5(r.stdout)).not.toBe(plain)
  })

  test("subtitle burn-in from an mkv's subtitle stream (Jellyfin: f='…':si=0)", async () => {
    const r = await frames(`subtitles=f='${subbed}':si=0:alpha=1`)
    expect(md5(r.stdout)).not.toBe(plain)
  })

  test("a file name with the characters of both escaping levels, quoted and escaped", async () => {
    const escaped = odd.replace(/[\\':]/g, "\\$&").replace(/[\\'[\],;]/g, "\\$&")
    const r = await frames(`scale=iw:ih,subtitles=filename=${escaped}`)
    expect(md5(r.stdout)).not.toBe(plain)
  })

  test("ass= burn-in of an .ass script", async () => {
    const r = await frames(`ass=${ass}`)
    expect(md5(r.stdout)).not.toBe(plain)
  })

  test("fontsdir= loads the font from the caller's folder: the same log line and the same frames as local", async () => {
    for (const graph of [`ass=${ass}:fontsdir=${fonts}`, `subtitles=f=${ass}:fontsdir=${fonts}`]) {
      const args = [
        "-hide_banner",
        "-v",
        "verbose",
        "-i",
        media,
        "-vf",
        graph,
        "-frames:v",
        "5",
        "-an",
        "-f",
        "framemd5",
        "-",
      ]
      const remote = await c.run("ffmpeg", args)
      const local = await c.local("ffmpeg", args)
      expect([remote.code, local.code]).toEqual([0, 0])
      expect(md5(remote.stdout)).toBe(md5(local.stdout))
      const loaded = (err: string) => err.split("\n").filter((l) => l.includes("Loading font file"))
      // The worker loaded it from its own copy of the folder; the caller reads its own path, as local prints it.
      expect(loaded(local.err).map((l) => l.replace(/^\[\S+ @ 0x[0-9a-f]+\] /, ""))).toEqual([
        `Loading font file '${fonts}/Mine.ttf'`,
      ])
      expect(loaded(remote.err).map((l) => l.replace(/ @ 0x[0-9a-f]+/, ""))).toEqual(
        loaded(local.err).map((l) => l.replace(/ @ 0x[0-9a-f]+/, "")),
      )
    }
  })

  test("movie= overlay of a png in -filter_complex", async () => {
    const r = await frames(`movie=${logo}[wm];[0:v][wm]overlay=10:10`, "-filter_complex")
    expect(md5(r.stdout)).not.toBe(plain)
  })

  test("an absolute path under no mapping in a filter is refused before submission, with one line", async () => {
    const before = (await c.jobs()).length
    const r = await c.run("ffmpeg", ["-i", media, "-vf", "subtitles=/nowhere/a.srt", "-f", "null", "-"])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^dffmpeg: path \/nowhere\/a\.srt in filter subtitles of argument 4 is not under any/)
    expect(r.err.trim().split("\n").length).toBe(1)
    expect((await c.jobs()).length).toBe(before)
  })
})
