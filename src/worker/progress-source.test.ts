import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { makeMedia } from "../../test/helpers/media.ts"
import type { WorkerConfig } from "../shared/config/server-schema.ts"
import { createLogger } from "../shared/log.ts"
import { loglevelOf, probeDuration, progressSource } from "./progress-source.ts"
import { createConfinement, type Confinement } from "./sandbox.ts"

const OWN = ["-progress", "pipe:4"]

describe("loglevelOf: ffmpeg 5.1's opt_loglevel", () => {
  const cases: [string, number | undefined][] = [
    ["quiet", -8],
    ["error", 16],
    ["info", 32],
    ["verbose", 40],
    ["trace", 56],
    ["repeat+level+debug", 48],
    ["+repeat+warning", 24],
    ["level+error", 16],
    ["-repeat-level+info", 32],
    ["16", 16],
    ["-8", -8],
    [" 40", 40],
    ["+48", 48],
    // Flags only: the level stays.
    ["repeat", undefined],
    ["+level-repeat", undefined],
    // "repeat+" leaves an empty level, which strtol reads as 0 (panic), as ffmpeg does.
    ["repeat+", 0],
    // ffmpeg refuses these ("Invalid loglevel"): never guessed.
    ["x", Number.NaN],
    ["infox", Number.NaN],
    ["16x", Number.NaN],
    ["toString", Number.NaN],
    ["repeatx", Number.NaN],
  ]
  test.each(cases)("%j sets %p", (value, level) => {
    expect(loglevelOf(value)).toBe(level as number)
  })
})

describe("progressSource: where the worker adds its own -progress", () => {
  const job = ["-i", "/m/in.mkv", "-c:v", "libx264", "/m/out.mkv"]

  test("a transcode gets -progress pipe:4 first, and the caller's argv after it unchanged", () => {
    for (const args of [job, ["-hide_banner", "-nostats", ...job], ["-v", "error", "-stats_period", "2", ...job]]) {
      const s = progressSource("ffmpeg", args, "/m")
      expect(s.args).toEqual([...OWN, ...args])
      expect(s.own).toBe(true)
    }
    expect(progressSource("/usr/lib/jellyfin-ffmpeg/ffmpeg", job, "/m").own).toBe(true)
    // Sources in a filter graph instead of inputs: still a transcode, with nothing to probe.
    expect(
      progressSource("ffmpeg", ["-v", "error", "-filter_complex", "testsrc", "-t", "2", "/m/o.mkv"], "/m"),
    ).toEqual({
      args: [...OWN, "-v", "error", "-filter_complex", "testsrc", "-t", "2", "/m/o.mkv"],
      own: true,
      probe: undefined,
    })
  })

  test("never beside the caller's own -progress, whatever it names", () => {
    for (const url of ["pipe:1", "pipe:2", "/m/p.txt", "-"]) {
      const args = ["-progress", url, ...job]
      expect(progressSource("ffmpeg", args, "/m")).toMatchObject({ args, own: false })
    }
  })

  test("never when ffmpeg would log its pipe: verbose or more anywhere, -report, FFREPORT, a refused level", () => {
    for (const args of [
      ["-v", "verbose", ...job],
      ["-loglevel", "debug", ...job],
      ["-v", "repeat+level+trace", ...job],
      ["-v", "debug", "-v", "error", ...job],
      ["-v", "40", ...job],
      ["-v", "bogus", ...job],
      ["-report", ...job],
    ])
      expect(progressSource("ffmpeg", args, "/m")).toMatchObject({ args, own: false })
    expect(progressSource("ffmpeg", job, "/m", { FFREPORT: "file=x.log" }).own).toBe(false)
    expect(progressSource("ffmpeg", ["-v", "info", "-v", "quiet", ...job], "/m").own).toBe(true)
  })

  test("never for ffprobe, info commands or a command without an output, or without an input or a graph", () => {
    for (const [binary, args] of [
      ["ffprobe", ["-i", "/m/in.mkv"]],
      ["ffmpeg", ["-version"]],
      ["ffmpeg", ["-h", "encoder=libx264"]],
      ["ffmpeg", ["-i", "/m/in.mkv", "-encoders", "/m/out.mkv"]],
      ["ffmpeg", ["-i", "/m/in.mkv"]],
      ["ffmpeg", ["/m/out.mkv"]],
      ["ffmpeg", ["-vf", "scale=2:2", "/m/out.mkv"]],
      ["ffmpeg", []],
    ] as [string, string[]][])
      expect(progressSource(binary, args, "/m")).toEqual({ args, own: false })
  })

  test("a -progress that is an option's value is not the caller's -progress", () => {
    const args = ["-metadata", "-progress", "-i", "/m/in.mkv", "/m/out.mkv"]
    expect(progressSource("ffmpeg", args, "/m").own).toBe(true)
  })
})

describe("progressSource: which input the worker probes for its length", () => {
  test("only when the last loglevel hides the Duration header", () => {
    expect(progressSource("ffmpeg", ["-i", "/m/a.mkv", "/m/o.mkv"], "/m").probe).toBeUndefined()
    expect(progressSource("ffmpeg", ["-v", "info", "-i", "/m/a.mkv", "/m/o.mkv"], "/m").probe).toBeUndefined()
    expect(progressSource("ffmpeg", ["-v", "quiet", "-v", "info", "-i", "/m/a.mkv", "/m/o.mkv"], "/m").probe).toBe(
      undefined,
    )
    for (const level of ["error", "quiet", "warning", "-8", "repeat+panic"])
      expect(progressSource("ffmpeg", ["-v", level, "-i", "/m/a.mkv", "/m/o.mkv"], "/m").probe).toEqual({
        path: "/m/a.mkv",
        format: undefined,
      })
    // With the caller's own -progress too: its blocks still need a length.
    expect(
      progressSource("ffmpeg", ["-v", "error", "-progress", "pipe:1", "-i", "/m/a.mkv", "/m/o.mkv"], "/m"),
    ).toMatchObject({ own: false, probe: { path: "/m/a.mkv" } })
  })

  test("the first input as a path (relative to the job's directory, file: stripped), with its -f", () => {
    const probe = (args: string[]) => progressSource("ffmpeg", ["-v", "error", ...args, "/m/o.mkv"], "/m/sub").probe
    expect(probe(["-i", "a.mkv", "-i", "/m/b.mkv"])).toEqual({ path: "/m/sub/a.mkv", format: undefined })
    expect(probe(["-i", "file:../a.mkv"])).toEqual({ path: "/m/a.mkv", format: undefined })
    expect(probe(["-f", "MPEGTS", "-i", "/m/a.ts"])).toEqual({ path: "/m/a.ts", format: "mpegts" })
  })

  test("never stdin, pipes, URLs, devices by protocol, filter graphs or concat lists", () => {
    for (const input of [
      ["-i", "-"],
      ["-i", "pipe:0"],
      ["-i", "pipe:"],
      ["-i", "http://127.0.0.1/a.mkv"],
      ["-i", "concat:/m/a.ts|/m/b.ts"],
      ["-i", "subfile,,start,0,end,10,,:/m/a.ts"],
      ["-f", "lavfi", "-i", "testsrc"],
      ["-f", "concat", "-safe", "0", "-i", "/m/list.txt"],
    ])
      expect(progressSource("ffmpeg", ["-v", "error", ...input, "/m/o.mkv"], "/m").probe).toBeUndefined()
  })
})

describe("probeDuration: the worker's ffprobe, confined as the job", () => {
  const dir = mkdtempSync(join(tmpdir(), "dffmpeg-probe-"))
  const log = createLogger({ level: "error" })
  const plain: Confinement = {
    mode: "none",
    argv: (_job, command) => command,
    env: () => undefined,
    capabilities: { sandbox: "none", runAs: "test" },
  }
  let boxed: Confinement
  const clip = join(dir, "clip.mkv")
  const ffprobe = Bun.which("ffprobe")!
  const job = { roots: [{ src: dir, dest: dir }], cwd: dir }

  beforeAll(async () => {
    // The sandboxed probe runs as nobody, as jobs do in tests.
    chmodSync(dir, 0o755)
    makeMedia(["-f", "lavfi", "-i", "testsrc=duration=3:size=64x48:rate=10", "-c:v", "mpeg4", clip])
    chmodSync(clip, 0o644)
    writeFileSync(join(dir, "notes.txt"), "not media\n")
    copyFileSync(clip, join(dir, "clip.bin"))
    const cfg = {
      sandbox: "bwrap",
      run_as: "nobody",
      allow_root: false,
      allow_network: false,
      sandbox_ro_paths: [],
      devices: [],
      passthrough_paths: [],
    } as unknown as WorkerConfig
    boxed = await createConfinement(cfg, new Map([["ffprobe", ffprobe]]), log, Bun.which("setpriv") ?? undefined)
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  test("reads a file's length, unconfined and in the sandbox", async () => {
    expect(await probeDuration(plain, ffprobe, { path: clip }, job)).toBe(3000)
    expect(boxed.mode).toBe("bwrap")
    expect(await probeDuration(boxed, ffprobe, { path: clip }, job)).toBe(3000)
    // -f as the job gave it.
    expect(await probeDuration(boxed, ffprobe, { path: join(dir, "clip.bin"), format: "matroska" }, job)).toBe(3000)
  })

  test("null for what is not a readable media file: missing, not media, a FIFO, outside the job's binds", async () => {
    expect(await probeDuration(plain, ffprobe, { path: join(dir, "missing.mkv") }, job)).toBeNull()
    expect(await probeDuration(plain, ffprobe, { path: join(dir, "notes.txt") }, job)).toBeNull()
    const fifo = join(dir, "fifo")
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0)
    // Refused by its type before ffprobe could block on it: no writer ever opens it.
    expect(await probeDuration(plain, ffprobe, { path: fifo }, job)).toBeNull()
    // The sandbox binds only the job's roots: a file elsewhere stays invisible to the probe.
    expect(await probeDuration(boxed, ffprobe, { path: clip }, { roots: [], cwd: "/" })).toBeNull()
  })

  test("stops at once when the job ends", async () => {
    const stop = new AbortController()
    stop.abort()
    expect(await probeDuration(plain, ffprobe, { path: clip }, job, stop.signal)).toBeNull()
  })
})
