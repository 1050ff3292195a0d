import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { apiFor, submitRaw } from "../helpers/api.ts"
import { Cluster } from "../helpers/cluster.ts"
import { sample, makeMedia as make, md5 } from "../helpers/media.ts"

const hashFile = async (p: string) => md5(new Uint8Array(await Bun.file(p).arrayBuffer()))

// Files whose content names the caller's paths: concat lists and filter scripts. The sandboxed worker sees
// the storage at another path and none of the caller's, so the client sends them rewritten to `$Var` form and
// the worker writes its own copy. Local ffmpeg on the caller's paths is the reference.
let c: Cluster
let m: string

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, maxJobs: 2 })
  m = c.clientMedia
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
  mkdirSync(join(c.storage, "parts"))
  for (const [name, color] of [
    ["a.ts", "red"],
    ["b b.ts", "blue"],
  ])
    make([
      "-f",
      "lavfi",
      "-i",
      `color=c=${color}:s=64x48:r=5:d=1`,
      "-c:v",
      "mpeg2video",
      join(c.storage, "parts", name),
    ])
  writeFileSync(join(c.storage, "a.srt"), "1\n00:00:00,000 --> 00:00:05,000\nBurned in from a script\n\n")
  make(["-f", "lavfi", "-i", "color=c=green:s=16x16", "-frames:v", "1", join(c.storage, "logo.png")])
}, 60_000)

afterAll(async () => {
  await c?.stop()
})

/** Runs `args` through dffmpeg and locally, each writing its own output file; both must succeed with equal bytes. */
async function sameOutput(args: (out: string) => string[], name: string) {
  const remote = await c.run("ffmpeg", ["-v", "error", ...args(join(m, `remote-${name}`))])
  const local = await c.local("ffmpeg", ["-v", "error", ...args(join(m, `local-${name}`))])
  if (remote.code !== 0 || local.code !== 0)
    throw new Error(`exit ${remote.code} vs ${local.code}: ${remote.err}\n${local.err}\n${c.logs()}`)
  expect(remote.err).toBe(local.err)
  expect(await hashFile(join(c.storage, `remote-${name}`))).toBe(await hashFile(join(c.storage, `local-${name}`)))
}

describe("-f concat lists", () => {
  test("absolute entries (quoted, with a space) under -safe 0, plus duration and comment lines", async () => {
    writeFileSync(
      join(c.storage, "abs.txt"),
      `ffconcat version 1.0\n# the caller's own paths\nfile '${m}/parts/a.ts'\nduration 1\r\nfile '${m}/parts/b b.ts'\n`,
    )
    await sameOutput(
      (out) => ["-f", "concat", "-safe", "0", "-i", join(m, "abs.txt"), "-c", "copy", "-y", out],
      "abs.ts",
    )
  })

  test("relative entries resolve against the list's folder, not the working directory", async () => {
    writeFileSync(join(c.storage, "parts", "rel.txt"), "file a.ts\nfile 'b b.ts'\n")
    await sameOutput(
      (out) => ["-f", "concat", "-safe", "0", "-i", join(m, "parts", "rel.txt"), "-c", "copy", "-y", out],
      "rel.ts",
    )
  })

  test("relative safe entries without -safe 0, the list found by its ffconcat head", async () => {
    writeFileSync(join(c.storage, "parts", "safe.ffconcat"), "ffconcat version 1.0\nfile a.ts\nfile a.ts\n")
    await sameOutput((out) => ["-i", join(m, "parts", "safe.ffconcat"), "-c", "copy", "-y", out], "safe.ts")
  })

  test("ffprobe of a list (its input positional): the same answer as local ffprobe", async () => {
    writeFileSync(join(c.storage, "probe.txt"), `file '${m}/parts/a.ts'\nfile '${m}/parts/b b.ts'\n`)
    const args = ["-v", "error", "-show_entries", "format=format_name,filename", "-of", "json", "-f", "concat"]
    // Also behind `--`, after which ffprobe takes every argument for an input name.
    for (const all of [
      [...args, "-safe", "0", join(m, "probe.txt")],
      [...args, "-safe", "0", "--", join(m, "probe.txt")],
    ]) {
      const remote = await c.run("ffprobe", all)
      const local = await c.local("ffprobe", all)
      expect([remote.code, local.code]).toEqual([0, 0])
      expect(remote.out).toBe(local.out)
      expect(local.out).toContain(join(m, "probe.txt"))
    }
  })

  test("a missing entry fails as locally: same exit code, and stderr names the caller's list and entry", async () => {
    writeFileSync(join(c.storage, "gap.txt"), `file '${m}/parts/nope.ts'\nfile '${m}/parts/a.ts'\n`)
    const args = ["-v", "error", "-f", "concat", "-safe", "0", "-i", join(m, "gap.txt"), "-f", "null", "-"]
    const remote = await c.run("ffmpeg", args)
    const local = await c.local("ffmpeg", args)
    expect(local.code).not.toBe(0)
    expect(remote.code).toBe(local.code)
    const plain = (s: string) => s.replace(/ @ 0x[0-9a-f]+\]/g, " @ 0x…]")
    expect(plain(remote.err)).toBe(plain(local.err))
    expect(local.err).toContain(join(m, "gap.txt"))
  })

  test("a list starting with a byte order mark fails as it does locally (ffmpeg reads it as part of the keyword)", async () => {
    writeFileSync(join(c.storage, "bom.txt"), `\uFEFFfile '${m}/parts/a.ts'\nfile '${m}/parts/a.ts'\n`)
    const args = ["-v", "error", "-f", "concat", "-safe", "0", "-i", join(m, "bom.txt"), "-f", "null", "-"]
    const remote = await c.run("ffmpeg", args)
    const local = await c.local("ffmpeg", args)
    expect(local.code).not.toBe(0)
    expect(remote.code).toBe(local.code)
    const plain = (s: string) => s.replace(/ @ 0x[0-9a-f]+\]/g, " @ 0x…]")
    expect(plain(remote.err)).toBe(plain(local.err))
  })

  test("an entry under no mapping is refused before submission with one line, and nothing is written", async () => {
    writeFileSync(join(c.storage, "out.txt"), `file '${m}/parts/a.ts'\nfile '/etc/hostname'\n`)
    const before = (await c.jobs()).length
    const out = join(m, "never.ts")
    const r = await c.run("ffmpeg", ["-f", "concat", "-safe", "0", "-i", join(m, "out.txt"), "-c", "copy", out])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^dffmpeg: argument 6 \(-i ".*out\.txt"\), line 2: path \/etc\/hostname is not under any/)
    expect(r.err.trim().split("\n").length).toBe(1)
    expect((await c.jobs()).length).toBe(before)
    expect(existsSync(join(c.storage, "never.ts"))).toBe(false)
  })
})

describe("filter scripts", () => {
  test("-filter_complex_script with a subtitle burn-in and a movie= overlay: the same frames as local", async () => {
    writeFileSync(
      join(c.storage, "graph.txt"),
      `movie=${m}/logo.png[wm];\n[0:v]subtitles=${m}/a.srt[s];\n[s][wm]overlay=10:10\n`,
    )
    const args = ["-v", "error", "-i", join(m, "av.mkv"), "-filter_complex_script", join(m, "graph.txt")]
    const all = [...args, "-frames:v", "5", "-an", "-f", "framemd5", "-"]
    const remote = await c.run("ffmpeg", all)
    const local = await c.local("ffmpeg", all)
    if (remote.code !== 0 || local.code !== 0)
      throw new Error(`exit ${remote.code} vs ${local.code}: ${remote.err}\n${local.err}\n${c.logs()}`)
    expect(md5(remote.stdout)).toBe(md5(local.stdout))
    expect(remote.err).toBe(local.err)
    const plain = await c.local("ffmpeg", [
      "-v",
      "error",
      "-i",
      join(m, "av.mkv"),
      "-frames:v",
      "5",
      "-an",
      "-f",
      "framemd5",
      "-",
    ])
    expect(md5(remote.stdout)).not.toBe(md5(plain.stdout))
  })

  test("-filter_script:v with a stream specifier", async () => {
    writeFileSync(join(c.storage, "vf.txt"), `subtitles=filename=${m}/a.srt`)
    const all = ["-v", "error", "-i", join(m, "av.mkv"), "-filter_script:v", join(m, "vf.txt")]
    const args = [...all, "-frames:v", "3", "-an", "-f", "framemd5", "-"]
    const remote = await c.run("ffmpeg", args)
    const local = await c.local("ffmpeg", args)
    expect([remote.code, local.code]).toEqual([0, 0])
    expect(md5(remote.stdout)).toBe(md5(local.stdout))
  })
})

describe("a client that sends its own files: the worker's checks", () => {
  const args = ["-v", "error", "-f", "concat", "-safe", "0", "-i", "$Media/l.txt", "-c", "copy", "-f", "mpegts", "-"]
  const raw = (content: string, a = args) =>
    submitRaw(apiFor(c, "client1"), {
      binary: "ffmpeg",
      args: a,
      paths: ["Media"],
      cwd: null,
      files: [{ arg: 7, content }],
    })

  test.each([
    [
      "a .. escape",
      "file '$Media/../../../../etc/passwd'\n",
      /^worker refused the job: line 1 of argument 8 "\$Media\/l\.txt" escapes \$Media;/,
    ],
    ["a symlink out of the root", "file '$Media/passwd-link'\n", /escapes \$Media through a symlink/],
    [
      "an absolute path",
      "file '/etc/passwd'\n",
      /line 1 of argument 8 "\$Media\/l\.txt": the entry is not a path variable/,
    ],
    [
      "a network entry (allow_network is off)",
      "file 'http://127.0.0.1:1/a.ts'\n",
      /line 1 of "l\.txt" names a network protocol or host/,
    ],
  ])("%s is refused, and nothing of the file reaches the output", async (_, content, want) => {
    if (!existsSync(join(c.storage, "passwd-link"))) symlinkSync("/etc/passwd", join(c.storage, "passwd-link"))
    const r = await raw(content)
    expect(r.status).toBe(200)
    expect(r.outcome?.status).toBe("failed")
    expect(r.outcome?.error).toMatch(want)
    expect(r.outcome?.error).not.toContain(c.dir)
    expect(r.stdout).toBe("")
  })

  test("-safe 0 on a list read from the storage (not sent with the job) is still refused", async () => {
    writeFileSync(join(c.storage, "stored.txt"), "file '/etc/passwd'\n")
    const r = await submitRaw(apiFor(c, "client1"), {
      binary: "ffmpeg",
      args: ["-f", "concat", "-safe", "0", "-i", "$Media/stored.txt", "-f", "null", "-"],
      paths: ["Media"],
      cwd: null,
    })
    expect(r.outcome?.error).toMatch(/-safe 0 lets the input name files outside the job's directories; not allowed/)
  })

  test("an undeclared variable inside a file is a 400 at submission", async () => {
    const r = await raw("file '$Other/a.ts'\n")
    expect(r.status).toBe(400)
    expect(r.error?.error.message).toBe("files[0] uses $Other, which is not listed in paths")
  })
})
