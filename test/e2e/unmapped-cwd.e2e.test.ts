import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"

/**
 * Issue 11, "never lost in silence": with the caller's working directory under no mapping, the job runs in
 * a scratch directory the caller cannot see. What it writes there must fail the job with one `dffmpeg:`
 * line naming the files, never exit 0 with them gone; a job that writes nothing there is untouched.
 */

let c: Cluster
/** The caller's working directory: outside every mapping (the client maps only `client/media`). */
let unmapped: string

beforeAll(async () => {
  c = await Cluster.start({ workers: 1 })
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
  // An mkv with a font attachment, as a media server extracts them (`-dump_attachment:t ""`).
  writeFileSync(join(c.storage, "font.ttf"), "not really a font, but bytes to extract")
  const made = await c.local(
    "ffmpeg",
    ["-v", "error", "-y", "-i", "av.mkv", "-t", "0.5", "-c", "copy", "-attach", "font.ttf"].concat([
      "-metadata:s:t",
      "mimetype=application/x-truetype-font",
      "withfont.mkv",
    ]),
    { cwd: c.storage },
  )
  if (made.code !== 0) throw new Error(made.err)
  unmapped = join(c.dir, "caller")
  mkdirSync(unmapped)
}, 60_000)

afterAll(async () => {
  await c?.stop()
})

/** A fresh directory for local ffmpeg to run in, to see what it writes into its cwd. */
const localCwd = () => mkdtempSync(join(c.dir, "local-"))

/** The stderr lines that are dffmpeg's own. */
const ownLines = (r: RunResult) => r.err.split("\n").filter((l) => l.startsWith("dffmpeg:"))

describe("a job that writes into an unmapped working directory", () => {
  test("a relative output fails with exit 1 and one dffmpeg: line naming it, after ffmpeg's own stderr", async () => {
    const args = ["-y", "-i", join(c.clientMedia, "av.mkv"), "-t", "0.5", "-c", "copy", "out.mkv"]
    const here = localCwd()
    const local = await c.local("ffmpeg", ["-y", "-i", join(c.storage, "av.mkv"), ...args.slice(3)], { cwd: here })
    // Locally the file is written into the cwd: through the proxy it would be lost.
    expect(local.code).toBe(0)
    expect(existsSync(join(here, "out.mkv"))).toBe(true)
    const r = await c.run("ffmpeg", args, { cwd: unmapped })
    expect(r.code).toBe(1)
    const own = ownLines(r)
    expect(own.length).toBe(1)
    expect(own[0]).toContain('"out.mkv"')
    expect(own[0]).toContain("working directory, which is under no path mapping")
    // ffmpeg's own stderr came first, in full (it did the work), and dffmpeg's line is the last.
    expect(r.err).toContain("Output #0, matroska")
    expect(r.err.trimEnd().split("\n").at(-1)).toBe(own[0]!)
    expect(readdirSync(unmapped)).toEqual([])
    const job = (await c.jobs()).at(0)!
    expect(job).toMatchObject({ status: "failed", exitCode: 1 })
  })

  test('-dump_attachment:t "" (a font extraction) fails the same way, naming the font', async () => {
    const args = (input: string) => ["-v", "error", "-dump_attachment:t", "", "-i", input, "-t", "0", "-f", "null", "-"]
    const here = localCwd()
    const local = await c.local("ffmpeg", args(join(c.storage, "withfont.mkv")), { cwd: here })
    expect(local.code).toBe(0)
    expect(readdirSync(here)).toEqual(["font.ttf"])
    const r = await c.run("ffmpeg", args(join(c.clientMedia, "withfont.mkv")), { cwd: unmapped })
    expect(r.code).toBe(1)
    expect(r.err.startsWith(local.err)).toBe(true)
    const own = ownLines(r)
    expect(own.length).toBe(1)
    expect(own[0]).toContain('"font.ttf"')
    expect(r.err.trimEnd().split("\n").at(-1)).toBe(own[0]!)
  })

  test("when ffmpeg failed too its own code is kept, with the line naming what it wrote first", async () => {
    // The first output is opened (in the cwd), the second's directory does not exist: ffmpeg fails itself.
    const args = (root: string) =>
      ["-v", "error", "-y", "-i", join(root, "av.mkv"), "-t", "0.2", "-c", "copy", "a.mkv"].concat([
        "-c",
        "copy",
        join(root, "no-such-dir", "b.mkv"),
      ])
    const here = localCwd()
    const local = await c.local("ffmpeg", args(c.storage), { cwd: here })
    expect(local.code).not.toBe(0)
    expect(readdirSync(here)).toEqual(["a.mkv"])
    const r = await c.run("ffmpeg", args(c.clientMedia), { cwd: unmapped })
    expect(r.code).toBe(local.code)
    expect(r.err).toContain("No such file or directory")
    const own = ownLines(r)
    expect(own.length).toBe(1)
    expect(own[0]).toContain('"a.mkv"')
  })
})

describe("a job with an unmapped working directory that writes nothing there", () => {
  test("ffprobe of an absolute path exits 0 with the output of local ffprobe", async () => {
    const args = ["-v", "error", "-show_entries", "format=duration:stream=codec_name", "-of", "json"]
    const local = await c.local("ffprobe", [...args, join(c.storage, "av.mkv")], { cwd: localCwd() })
    const r = await c.run("ffprobe", [...args, join(c.clientMedia, "av.mkv")], { cwd: unmapped })
    expect(r.code).toBe(0)
    expect(r.out).toBe(local.out)
    expect(r.err).toBe(local.err)
  })

  test("an absolute output exits 0 and the file is there", async () => {
    const args = ["-v", "error", "-y", "-i", join(c.clientMedia, "av.mkv"), "-t", "0.2", "-c", "copy"]
    const r = await c.run("ffmpeg", [...args, join(c.clientMedia, "abs.mkv")], { cwd: unmapped })
    expect(r.code).toBe(0)
    expect(r.err).toBe("")
    expect(existsSync(join(c.storage, "abs.mkv"))).toBe(true)
  })
})
