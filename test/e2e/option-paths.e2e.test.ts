import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { sample, makeMedia as make, md5 } from "../helpers/media.ts"

// Paths by the option they belong to: values that are not paths (`-hls_base_url /videos/abc/`) pass as
// written, paths inside concat:, subfile and tee slaves are translated (the sandboxed worker sees the
// storage elsewhere and cannot see the caller's paths), device values are checked against `devices`.
// Local ffmpeg on the caller's paths is the reference: exit code, stdout and every written file.
let c: Cluster
let media: string
let tsA: string
let tsB: string
let tsAB: string

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, maxJobs: 2 })
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
  const src = join(c.storage, "av.mkv")
  make(["-i", src, "-t", "1", "-map", "0", "-c", "copy", "-f", "mpegts", join(c.storage, "a.ts")])
  make(["-ss", "1", "-i", src, "-map", "0", "-c", "copy", "-f", "mpegts", join(c.storage, "b.ts")])
  writeFileSync(
    join(c.storage, "ab.ts"),
    Buffer.concat([readFileSync(join(c.storage, "a.ts")), readFileSync(join(c.storage, "b.ts"))]),
  )
  // Sandboxed jobs run as another user: they must be able to write there too.
  for (const d of ["remote", "local"]) {
    mkdirSync(join(c.storage, d))
    chmodSync(join(c.storage, d), 0o777)
  }
  media = join(c.clientMedia, "av.mkv")
  tsA = join(c.clientMedia, "a.ts")
  tsB = join(c.clientMedia, "b.ts")
  tsAB = join(c.clientMedia, "ab.ts")
}, 60_000)

afterAll(async () => {
  await c?.stop()
})

const fail = (r: RunResult) => `exit ${r.code}; stderr:\n${r.err}\n${c.logs()}`

/** The same command remotely and locally; both must succeed with equal stdout and stderr. */
async function same(tool: "ffmpeg" | "ffprobe", args: (dir: string) => string[]) {
  const remote = await c.run(tool, args(join(c.clientMedia, "remote")))
  const local = await c.local(tool, args(join(c.clientMedia, "local")))
  expect(remote.code, fail(remote)).toBe(0)
  expect(local.code, local.err).toBe(0)
  expect(md5(remote.stdout)).toBe(md5(local.stdout))
  expect(remote.err).toBe(local.err)
  return remote
}

/** name → md5 of every file under `remote/` and `local/` whose name starts with `prefix`. */
function written(prefix: string) {
  const of = (dir: string) =>
    Object.fromEntries(
      readdirSync(join(c.storage, dir))
        .filter((f) => f.startsWith(prefix))
        .sort()
        .map((f) => [f, md5(readFileSync(join(c.storage, dir, f)))]),
    )
  return { remote: of("remote"), local: of("local") }
}

describe("option-aware paths through the real proxy", () => {
  test("-hls_base_url /videos/abc/ is text: the playlist equals local ffmpeg's byte for byte", async () => {
    await same("ffmpeg", (dir) => [
      "-v",
      "error",
      "-i",
      media,
      "-map",
      "0",
      "-c",
      "copy",
      "-f",
      "hls",
      "-hls_time",
      "1",
      "-hls_list_size",
      "0",
      "-hls_base_url",
      "/videos/abc/",
      "-hls_segment_filename",
      join(dir, "hls%d.ts"),
      join(dir, "hls.m3u8"),
    ])
    const files = written("hls")
    expect(files.remote).toEqual(files.local)
    expect(Object.keys(files.remote)).toContain("hls0.ts")
    expect(readFileSync(join(c.storage, "remote", "hls.m3u8"), "utf8")).toContain("\n/videos/abc/hls0.ts\n")
  })

  test("concat:a.ts|b.ts input with absolute parts", async () => {
    const r = await same("ffmpeg", () => [
      "-v",
      "error",
      "-i",
      `concat:${tsA}|${tsB}`,
      "-map",
      "0",
      "-c",
      "copy",
      "-f",
      "framemd5",
      "-",
    ])
    // Both parts were read: more packets than either file alone.
    const one = await c.local("ffmpeg", ["-v", "error", "-i", tsA, "-map", "0", "-c", "copy", "-f", "framemd5", "-"])
    expect(r.out.split("\n").length).toBeGreaterThan(one.out.split("\n").length + 10)
  })

  test("subfile,,start,…,end,…,,: input reads the byte range of a caller's file", async () => {
    const start = statSync(join(c.storage, "a.ts")).size
    const end = statSync(join(c.storage, "ab.ts")).size
    const r = await same("ffmpeg", () => [
      "-v",
      "error",
      "-i",
      `subfile,,start,${start},end,${end},,:${tsAB}`,
      "-map",
      "0",
      "-c",
      "copy",
      "-f",
      "framemd5",
      "-",
    ])
    // The range is b.ts exactly.
    const b = await c.local("ffmpeg", ["-v", "error", "-i", tsB, "-map", "0", "-c", "copy", "-f", "framemd5", "-"])
    expect(md5(r.stdout)).toBe(md5(b.stdout))
  })

  test("-f tee with two file slaves: both files equal local ffmpeg's", async () => {
    await same("ffmpeg", (dir) => [
      "-v",
      "error",
      "-i",
      media,
      "-map",
      "0",
      "-c",
      "copy",
      "-fflags",
      "+bitexact",
      "-f",
      "tee",
      `[f=mpegts]${join(dir, "tee1.ts")}|[f=matroska:onfail=abort]${join(dir, "tee 2.mkv")}`,
    ])
    const files = written("tee")
    expect(Object.keys(files.remote)).toEqual(["tee 2.mkv", "tee1.ts"])
    expect(files.remote).toEqual(files.local)
  })

  test("a device path outside the worker's devices is refused with one line naming the argument and the key", async () => {
    // -hwaccel_device names a device and needs no hwaccel of the worker (the coordinator would refuse a
    // -vaapi_device job at once, no worker here having vaapi): the worker's own device check answers.
    const r = await c.run("ffmpeg", ["-hwaccel_device", "/dev/dri/renderD128", "-i", media, "-f", "null", "-"])
    expect(r.code).toBe(1)
    expect(r.err.trim().split("\n")).toEqual([
      expect.stringMatching(
        /^dffmpeg: job \w+ failed: worker refused the job: argument 2 "\/dev\/dri\/renderD128": -hwaccel_device names device "\/dev\/dri\/renderD128", which is not in this worker's devices; add it \(or its folder\) to devices in the worker's config$/,
      ),
    ])
  })

  test("a concat: part under no mapping is refused by the client before submission, with one line", async () => {
    const before = (await c.jobs()).length
    const r = await c.run("ffmpeg", ["-i", `concat:${tsA}|/etc/passwd`, "-f", "null", "-"])
    expect(r.code).toBe(1)
    expect(r.err.trim().split("\n")).toEqual([
      "dffmpeg: path /etc/passwd in the concat URL of argument 2 is not under any configured path mapping (client paths: Media); add a mapping or use a relative path",
    ])
    expect((await c.jobs()).length).toBe(before)
  })
})
