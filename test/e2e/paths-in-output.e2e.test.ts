import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { BIN, waitFor } from "../helpers/bin.ts"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { sample, md5 } from "../helpers/media.ts"

// The caller's paths in what the caller reads: the worker sees the storage as `worker1/mnt`, the caller as
// `client/media`; local ffmpeg/ffprobe run on the caller's paths are the reference, byte for byte.
let c: Cluster
let media: string // a file as the caller names it
let odd: string // a file whose name holds characters each writer escapes, and a `$`
let workerRoot: string

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, maxJobs: 4 })
  workerRoot = c.workerMedia(c.workerIds[0] ?? "worker1")
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
  const name = `a&b <c> "d" 'e',f|g$h=i#j.mkv`
  // Metadata with text that looks like the wire's tokens: it must come out as it is.
  const made = Bun.spawnSync([
    "ffmpeg",
    "-v",
    "error",
    "-i",
    join(c.storage, "av.mkv"),
    "-c",
    "copy",
    "-metadata",
    "title=cost $5, $Media/x and $$Media",
    join(c.storage, name),
  ])
  if (made.exitCode !== 0) throw new Error(made.stderr.toString())
  media = join(c.clientMedia, "av.mkv")
  odd = join(c.clientMedia, name)
}, 60_000)

afterAll(async () => {
  await c?.stop()
})

/** Same exit code and the same stdout bytes as local; returns both runs. */
async function same(tool: "ffmpeg" | "ffprobe", args: string[]): Promise<[RunResult, RunResult]> {
  const remote = await c.run(tool, args)
  const local = await c.local(tool, args)
  if (remote.code !== local.code) throw new Error(`exit ${remote.code} vs ${local.code}: ${remote.err}\n${c.logs()}`)
  expect(remote.out).toBe(local.out)
  expect(md5(remote.stdout)).toBe(md5(local.stdout))
  return [remote, local]
}

describe("the caller's paths in every message", () => {
  test("ffprobe -of json -show_format: stdout byte-equal to local, format.filename included", async () => {
    for (const input of [media, `file:${media}`, odd, `file:${odd}`]) {
      const [remote] = await same("ffprobe", ["-v", "error", "-of", "json", "-show_format", input])
      expect(JSON.parse(remote.out).format.filename).toBe(input)
      if (input.endsWith(odd)) expect(remote.out).toContain("cost $5, $Media/x and $$Media")
    }
  })

  for (const of of ["xml", "csv", "flat", "ini", "default", "compact", "csv=s=|:p=0", "json=c=1"]) {
    test(`ffprobe -of ${of}: stdout byte-equal to local`, async () => {
      for (const input of [media, `file:${odd}`]) {
        const [remote] = await same("ffprobe", ["-v", "error", "-of", of, "-show_format", "-show_streams", input])
        expect(remote.out).not.toContain(workerRoot)
      }
    })
  }

  test("ffmpeg's stderr says Input #0 … from '<caller path>', as local does", async () => {
    const args = ["-hide_banner", "-i", media, "-t", "0.2", "-f", "null", "-"]
    const remote = await c.run("ffmpeg", args)
    const local = await c.local("ffmpeg", args)
    expect(remote.code).toBe(0)
    const input = (r: RunResult) => r.err.split("\n").find((l) => l.startsWith("Input #0"))
    expect(input(remote)).toBe(`Input #0, matroska,webm, from '${media}':`)
    expect(input(remote)).toBe(input(local)!)
    expect(remote.err).not.toContain(workerRoot)
  })

  test("a missing input: the same 'No such file or directory' line naming the caller's path", async () => {
    const missing = join(c.clientMedia, "missing $1.mkv")
    const [remote, local] = await same("ffmpeg", ["-hide_banner", "-i", missing, "-f", "null", "-"])
    expect(remote.code).toBe(1)
    expect(remote.err).toBe(local.err)
    expect(remote.err).toContain(`${missing}: No such file or directory`)
  })

  test("Output #0 … to and Opening … for writing name the caller's paths", async () => {
    const out = join(c.clientMedia, "hls", "p.m3u8")
    Bun.spawnSync(["mkdir", "-p", join(c.storage, "hls")])
    const args = ["-hide_banner", "-y", "-i", media, "-t", "1", "-c", "copy", "-f", "hls", out]
    const remote = await c.run("ffmpeg", args)
    expect(remote.code).toBe(0)
    expect(remote.err).toContain(`Output #0, hls, to '${out}':`)
    expect(remote.err).toContain(`Opening '${join(c.clientMedia, "hls", "p0.ts")}' for writing`)
    expect(remote.err).not.toContain(workerRoot)
  })

  test("ffmpeg's stdout is never rewritten, even when it holds the worker's root and tokens", async () => {
    // Data whose bytes are the worker's root, a `$Var` token and `$$`: copied through as it is.
    const bytes = `'${workerRoot}/av.mkv' from ${workerRoot} $Media/a $$ $`.repeat(2000)
    writeFileSync(join(c.storage, "data.bin"), bytes)
    const data = join(c.clientMedia, "data.bin")
    const [remote] = await same("ffmpeg", [
      "-v",
      "error",
      "-f",
      "data",
      "-i",
      data,
      "-map",
      "0",
      "-c",
      "copy",
      "-f",
      "data",
      "pipe:1",
    ])
    expect(remote.out).toBe(bytes)
    const raw = ["-v", "error", "-i", media, "-t", "0.5", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]
    const [video] = await same("ffmpeg", raw)
    expect(video.stdout.length).toBe(320 * 240 * 13)
  })

  test("client attach to a finished job shows this caller's paths too (the coordinator keeps $Var tokens)", async () => {
    const args = ["-v", "error", "-of", "json", "-show_format", odd]
    const local = await c.local("ffprobe", args)
    const cmd = [BIN, "client", "submit", "--config", c.clientConfig, "-b", "ffprobe", "--detach", "--json", "--"]
    const job = JSON.parse((await c.exec([...cmd, ...args], {})).out)
    await waitFor(async () => ((await c.job(job.id)).status === "completed" ? true : undefined), {
      what: "the job to end",
    })
    const a = await c.exec([BIN, "client", "attach", "--config", c.clientConfig, job.id], {})
    expect({ code: a.code, out: a.out }).toEqual({ code: 0, out: local.out })
  }, 30_000)
})
