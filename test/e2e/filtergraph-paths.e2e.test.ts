import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"

const md5 = (b: Uint8Array) => new Bun.CryptoHasher("md5").update(b).digest("hex")

// Files named inside filtergraphs (subtitle burn-in, movie overlays): the sandboxed worker sees the storage
// at another path than the caller and cannot see the caller's paths, so an untranslated path fails there.
// Local ffmpeg on the caller's paths is the reference: the same exit code and the same frames.
let c: Cluster
let media: string
let srt: string
let subbed: string
let logo: string
let odd: string

const SRT = "1\n00:00:00,000 --> 00:00:05,000\nBurned in through dffmpeg\n\n"

function make(args: string[]) {
  const r = Bun.spawnSync(["ffmpeg", "-v", "error", "-y", ...args])
  if (r.exitCode !== 0) throw new Error(r.stderr.toString())
}

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
  media = join(c.clientMedia, "av.mkv")
  srt = join(c.clientMedia, "a.srt")
  subbed = join(c.clientMedia, "subbed.mkv")
  logo = join(c.clientMedia, "logo.png")
  odd = join(c.clientMedia, "we:i'r,d; [x] =.srt")
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
