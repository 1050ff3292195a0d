import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { FILM_FONT, FILM_SUBTITLE, film } from "../helpers/media.ts"

/**
 * docs/jellyfin.md, step 4, with the compiled binary: Jellyfin's own command lines (a library probe, font
 * extraction with its attachment folder as working directory, subtitle extraction, a burn-in transcode to
 * HLS, trickplay frames) through the proxy, with the folders the guide names mapped as separate path
 * variables that the client and the worker see at different paths; and the guide's reason for `TMPDIR`:
 * trickplay frames aimed at an unmapped /tmp are refused before anything runs.
 */

let c: Cluster
let env: Record<string, string>
/** The folders as Jellyfin (the client) sees them: the guide's Media, Cache and Subtitles. */
let media: string
let cache: string
let subtitles: string

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, startWorkers: false })
  // One storage, three folders, each its own path variable (as Jellyfin's libraries, cache and data folder).
  for (const d of ["media", "cache", "subtitles"]) {
    mkdirSync(join(c.storage, d))
    chmodSync(join(c.storage, d), 0o777) // jobs run as `nobody` in their sandbox
  }
  media = join(c.clientMedia, "media")
  cache = join(c.clientMedia, "cache")
  subtitles = join(c.clientMedia, "subtitles")
  const w = c.workerMedia("worker1")
  await c.startWorker("worker1", {
    paths: { Media: join(w, "media"), Cache: join(w, "cache"), Subtitles: join(w, "subtitles") },
  })
  env = c.clientWith("jellyfin", { paths: { Media: media, Cache: cache, Subtitles: subtitles } })

  // A film as Jellyfin meets them: video, audio, a subtitle stream and a font attachment.
  await film(join(c.storage, "media", "film.mkv"))
}, 90_000)

afterAll(async () => {
  await c?.stop()
})

const jellyfin = (tool: "ffmpeg" | "ffprobe", args: string[], cwd?: string) => c.run(tool, args, { env, cwd })
const ok = (r: RunResult) => {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.err}\n${c.logs()}`)
}
const movie = () => join(media, "film.mkv")
const words = (s: string) => s.split(" ")
/** Jellyfin's trickplay extraction: frames of the film as JPEG files named by `pattern`. */
const trickplay = (pattern: string) =>
  jellyfin("ffmpeg", [
    ...words("-loglevel error -an -sn -i"),
    `file:${movie()}`,
    ...words("-threads 1 -vf fps=2,scale=w=160:h=-2 -c:v mjpeg -f image2"),
    pattern,
  ])
/** A fresh folder where Jellyfin's code would create one before running ffmpeg. */
const folder = (root: string, ...parts: string[]) => {
  const d = join(root, ...parts)
  mkdirSync(d, { recursive: true })
  chmodSync(d, 0o777)
  return d
}

describe("Jellyfin's command lines through the proxy, with the guide's folders mapped", () => {
  test("the library probe equals a local ffprobe's", async () => {
    const args = (input: string) => [
      ...words("-analyzeduration 200M -probesize 1G -i"),
      `file:${input}`,
      ...words("-threads 0 -v warning -print_format json -show_streams -show_chapters -show_format"),
    ]
    const r = await jellyfin("ffprobe", args(movie()))
    ok(r)
    const local = await c.local("ffprobe", args(movie()))
    expect(r.out).toBe(local.out)
    const probe = JSON.parse(r.out) as { streams: { codec_type: string }[]; format: { filename: string } }
    expect(probe.streams.map((s) => s.codec_type)).toEqual(["video", "audio", "subtitle", "attachment"])
    expect(probe.format.filename).toBe(`file:${movie()}`) // the caller's path, not the worker's
  })

  test("fonts are extracted into the attachment folder, the job's working directory", async () => {
    const dir = folder(cache, "attachments", "source1")
    const r = await jellyfin(
      "ffmpeg",
      ["-dump_attachment:t", "", "-y", "-i", `file:${movie()}`, "-t", "0", "-f", "null", "null"],
      dir,
    )
    ok(r)
    expect(readdirSync(dir)).toEqual(["DejaVuSans.ttf"])
    expect(readFileSync(join(dir, "DejaVuSans.ttf")).equals(readFileSync(FILM_FONT))).toBe(true)
  })

  test("a subtitle stream is extracted into the data folder's subtitles", async () => {
    const out = join(folder(subtitles, "a1"), "film.2.srt")
    const r = await jellyfin("ffmpeg", [
      "-i",
      `file:${movie()}`,
      "-copyts",
      "-map",
      "0:2",
      "-an",
      "-vn",
      "-c:s",
      "srt",
      out,
    ])
    ok(r)
    expect(readFileSync(out, "utf8")).toContain(FILM_SUBTITLE)
  })

  test("a burn-in transcode to HLS reads the file's fonts and writes into the transcode folder", async () => {
    const fonts = folder(cache, "attachments", "source2")
    ok(
      await jellyfin(
        "ffmpeg",
        ["-dump_attachment:t", "", "-y", "-i", `file:${movie()}`, "-t", "0", "-f", "null", "null"],
        fonts,
      ),
    )
    const transcodes = folder(cache, "transcodes")
    const r = await jellyfin("ffmpeg", [
      ...["-i", `file:${movie()}`, ...words("-map 0:0 -map 0:1")],
      ...["-vf", `subtitles=f='${movie()}':si=0:fontsdir='${fonts}'`],
      ...words("-c:v libx264 -preset ultrafast -c:a aac -t 1 -f hls -hls_time 1"),
      ...["-hls_segment_filename", join(transcodes, "abc%d.ts"), "-y", join(transcodes, "abc.m3u8")],
    ])
    ok(r)
    const playlist = readFileSync(join(transcodes, "abc.m3u8"), "utf8")
    expect(playlist).toContain("abc0.ts")
    expect(existsSync(join(transcodes, "abc0.ts"))).toBe(true)
    // The timeline shows the worker read the subtitles filter's paths under its own roots.
    const job = (await c.jobs()).find((j) => j.args.some((a) => a.startsWith("subtitles=")))!
    expect(job.args).toContain("subtitles=f=$Media/film.mkv:si=0:fontsdir=$Cache/attachments/source2")
  })

  test("trickplay frames go to $TMPDIR/jellyfin under the cache (TMPDIR on the shared folder)", async () => {
    const tmp = folder(cache, "tmp", "jellyfin", "guid1")
    const r = await trickplay(join(tmp, "%08d.jpg"))
    ok(r)
    expect(readdirSync(tmp).length).toBeGreaterThanOrEqual(3)
    expect(readdirSync(tmp).sort()[0]).toBe("00000001.jpg")
  })

  test("with TMPDIR left on the local /tmp, trickplay is refused before anything runs", async () => {
    const before = (await c.jobs()).length
    const r = await trickplay("/tmp/jellyfin/guid2/%08d.jpg")
    expect(r.code).toBe(1)
    const lines = r.err.trim().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toStartWith("dffmpeg: ")
    expect(lines[0]).toContain("/tmp/jellyfin/guid2/%08d.jpg")
    expect(lines[0]).toContain("not under any configured path mapping")
    expect((await c.jobs()).length).toBe(before)
  })
})
