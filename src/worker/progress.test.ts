import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as v from "valibot"
import { rng } from "../../test/helpers/rng.ts"
import { ProgressReport } from "../shared/protocol/schemas.ts"
import { createProgressTracker, type ProgressTracker, type Stream } from "./progress.ts"
import { PROGRESS_FD } from "./progress-source.ts"

const enc = new TextEncoder()
type Feed = [Stream, string | Uint8Array]

function tracker(args: string[], now: () => number = () => 0, own = false): ProgressTracker {
  const t = createProgressTracker("ffmpeg", args, now, own)
  if (!t) throw new Error("ffmpeg must get a tracker")
  return t
}

/** Feeds each part, taking after each as the runner does; returns the latest report taken (schema-checked). */
function run(t: ProgressTracker, feeds: Feed[]): ProgressReport | undefined {
  let latest: ProgressReport | undefined
  for (const [stream, data] of feeds) {
    t.feed(stream, typeof data === "string" ? enc.encode(data) : data)
    const report = t.take()
    if (report) latest = v.parse(ProgressReport, report)
  }
  return latest
}

/** stderr as ffmpeg writes it before the first status line. */
function header(...durations: string[]): string {
  const inputs = durations.map(
    (d, i) =>
      `Input #${i}, matroska,webm, from 'in${i}.mkv':\n  Metadata:\n    duration        : 09:09:09.00\n` +
      `  Duration: ${d}, start: 0.000000, bitrate: 187 kb/s\n  Stream #${i}:0: Video: h264, yuv420p, 160x120, 25 fps\n` +
      `    Metadata:\n      DURATION        : 00:00:06.023000000\n`,
  )
  return `${inputs.join("")}Stream mapping:\n  Stream #0:0 -> #0:0 (h264 (native) -> h264 (libx264))\nOutput #0, matroska, to 'out.mkv':\n  Duration: 01:00:00.00\n`
}

const status = (time: string, speed = "1.00x") =>
  `frame=  250 fps= 50 q=28.0 size=     256kB time=${time} bitrate= 209.7kbits/s speed=${speed}    \r`
const block = (lines: string[]) => lines.map((l) => `${l}\n`).join("")

describe("createProgressTracker", () => {
  test("applies to ffmpeg under any install name and never to ffprobe or other tools", () => {
    const names = [
      "ffmpeg",
      "/usr/lib/jellyfin-ffmpeg/ffmpeg",
      "ffmpeg.exe",
      "C:\\tools\\FFmpeg.exe",
      "ffprobe",
      "/usr/bin/ffprobe",
      "ffplay",
      "sox",
    ]
    expect(
      Object.fromEntries(names.map((n) => [n, createProgressTracker(n, ["-i", "a.mkv", "b.mkv"]) !== undefined])),
    ).toEqual({
      ffmpeg: true,
      "/usr/lib/jellyfin-ffmpeg/ffmpeg": true,
      "ffmpeg.exe": true,
      "C:\\tools\\FFmpeg.exe": true,
      ffprobe: false,
      "/usr/bin/ffprobe": false,
      ffplay: false,
      sox: false,
    })
  })
})

describe("status lines on stderr", () => {
  test("reads a video status line against Input #0's duration", () => {
    const report = run(tracker(["-i", "in.mkv", "out.mkv"]), [
      ["stderr", header("00:00:20.00")],
      ["stderr", "frame=  250 fps= 50 q=28.0 size=     256kB time=00:00:10.00 bitrate= 209.7kbits/s speed=2.01x    \r"],
    ])
    expect(report).toEqual({
      timeMs: 10000,
      durationMs: 20000,
      percent: 50,
      speed: 2.01,
      fps: 50,
      frame: 250,
      etaMs: 4975,
    })
  })

  test("reads an audio-only status line, which has no frame or fps", () => {
    const report = run(tracker(["-i", "in.flac", "out.m4a"]), [
      ["stderr", header("00:01:00.00")],
      ["stderr", "size=     512kB time=00:00:30.00 bitrate= 139.8kbits/s speed= 120x\n"],
    ])
    expect(report).toEqual({
      timeMs: 30000,
      durationMs: 60000,
      percent: 50,
      speed: 120,
      fps: null,
      frame: null,
      etaMs: 250,
    })
  })

  test("treats N/A fields as unknown and clamps a negative time to 0", () => {
    const report = run(tracker(["-i", "in.mkv", "out.mkv"]), [
      ["stderr", header("00:01:00.00")],
      ["stderr", "frame=    0 fps=N/A q=0.0 size=N/A time=-00:00:00.02 bitrate=N/A speed=N/A    \r"],
    ])
    expect(report).toEqual({ timeMs: 0, durationMs: 60000, percent: 0, speed: null, fps: null, frame: 0, etaMs: null })
  })

  test("keeps the last known time when a line says time=N/A", () => {
    const report = run(tracker(["-i", "in.mkv", "out.mkv"]), [
      ["stderr", header("00:01:00.00") + status("00:00:06.00", "2x")],
      ["stderr", "frame=  300 fps= 50 q=28.0 size=N/A time=N/A bitrate=N/A speed=2x    \r"],
    ])
    expect(report).toMatchObject({ timeMs: 6000, frame: 300, percent: 10, etaMs: 27000 })
  })

  test("reads the final Lsize= line, a level prefix and speed in exponent notation", () => {
    const t = tracker(["-i", "in.mkv", "out.mkv"])
    expect(
      run(t, [
        [
          "stderr",
          header("00:00:08.00") +
            "[info] frame=   37 fps=0.0 q=-0.0 Lsize=N/A time=00:00:02.00 bitrate=N/A speed=1.52e+03x    \n",
        ],
      ]),
    ).toEqual({
      timeMs: 2000,
      durationMs: 8000,
      percent: 25,
      speed: 1520,
      fps: 0,
      frame: 37,
      etaMs: 4,
    })
  })

  test("ignores log lines that merely mention time= or size=", () => {
    const logs =
      "[segment @ 0x55] time=00:00:09.00 size=1kB\rPress [q] to stop, [?] for help\nvideo:80kB audio:51kB time=00:00:09.00\n"
    expect(run(tracker(["-i", "in.mkv", "out.mkv"]), [["stderr", header("00:00:10.00") + logs]])).toBeUndefined()
  })

  test("parses a record only once its break arrives", () => {
    const t = tracker(["-i", "in.mkv", "out.mkv"])
    expect(
      run(t, [
        [
          "stderr",
          header("00:00:10.00") +
            "frame=  250 fps= 50 q=28.0 size=     256kB time=00:00:05.00 bitrate= 209.7kbits/s speed=1x",
        ],
      ]),
    ).toBeUndefined()
    expect(run(t, [["stderr", "\r"]])).toMatchObject({ timeMs: 5000, percent: 50 })
  })

  test("reads the duration of Input #0 only, never stream metadata, later inputs or outputs", () => {
    const first = run(tracker(["-i", "a.mkv", "-i", "b.mkv", "out.mkv"]), [
      ["stderr", header("00:00:10.00", "00:01:39.00") + status("00:00:01.00")],
    ])
    const unknown = run(tracker(["-i", "a.mkv", "-i", "b.mkv", "out.mkv"]), [
      ["stderr", header("N/A", "00:01:39.00") + status("00:00:01.00")],
    ])
    expect([first?.durationMs, unknown?.durationMs]).toEqual([10000, null])
  })

  test("leaves percent and eta unknown when the duration is N/A", () => {
    const report = run(tracker(["-f", "lavfi", "-i", "testsrc", "out.mkv"]), [
      ["stderr", header("N/A") + status("00:00:04.00", "2x")],
    ])
    expect(report).toEqual({
      timeMs: 4000,
      durationMs: null,
      percent: null,
      speed: 2,
      fps: 50,
      frame: 250,
      etaMs: null,
    })
  })

  test("takes the length from -t when the input's is unknown", () => {
    const report = run(tracker(["-f", "lavfi", "-i", "testsrc", "-t", "8", "out.mkv"]), [
      ["stderr", header("N/A") + status("00:00:04.00", "2x")],
    ])
    expect(report).toMatchObject({ durationMs: 8000, percent: 50, etaMs: 2000 })
  })
})

describe("expected length from the command's -ss/-sseof/-t/-to", () => {
  // The input lasts 2 h; each row is the argv and the length ffmpeg will write.
  const cases: [string[], number | null][] = [
    [["-i", "in"], 7200000],
    [["-ss", "10", "-i", "in"], 7190000],
    [["-i", "in", "-ss", "00:00:10.5"], 7189500],
    [["-i", "in", "-t", "1:30"], 90000],
    [["-i", "in", "-t", "01:02:03.5"], 3723500],
    [["-i", "in", "-t", "1:02:03"], 3723000],
    [["-i", "in", "-t", "100:00:00"], 7200000],
    [["-i", "in", "-t", "1500ms"], 1500],
    [["-i", "in", "-t", "2.5s"], 2500],
    [["-i", "in", "-t", "250000us"], 250],
    [["-i", "in", "-t", "42.25"], 42250],
    [["-ss", "5", "-t", "20", "-i", "in"], 20000],
    [["-ss", "5", "-to", "20", "-i", "in"], 15000],
    [["-ss", "5", "-to", "30", "-t", "10", "-i", "in"], 10000],
    [["-i", "in", "-ss", "10", "-to", "25"], 15000],
    // Output -to counts on the output's own timeline, which input -ss has already moved to 0.
    [["-ss", "10", "-i", "in", "-to", "20"], 20000],
    [["-ss", "1:00:00", "-i", "in", "-ss", "30:00", "-t", "1:00:00"], 1800000],
    [["-ss", "3:00:00", "-i", "in"], 0],
    [["-sseof", "-15", "-i", "in"], 15000],
    [["-sseof", "-15", "-ss", "50", "-i", "in"], 15000],
    // Options between two inputs belong to the second one.
    [["-i", "a", "-ss", "10", "-t", "5", "-i", "b", "out"], 7200000],
    [["-i", "a", "-i", "b", "-t", "5", "out"], 5000],
    // Unparsable or impossible values are ignored, as ffmpeg would refuse them.
    [["-i", "in", "-t", "90:00"], 7200000],
    [["-i", "in", "-t", "abc"], 7200000],
    [["-i", "in", "-to", "1h"], 7200000],
    [["-ss", "-5", "-i", "in"], 7200000],
    [["-sseof", "15", "-i", "in"], 7200000],
    [["-i", "in", "-t"], 7200000],
  ]
  test.each(cases)("%j gives %p ms", (args, expected) => {
    expect(run(tracker(args), [["stderr", header("02:00:00.00") + status("00:00:00.00")]])?.durationMs).toBe(expected)
  })
})

describe("-progress blocks", () => {
  const continued = block([
    "frame=94",
    "fps=47.00",
    "stream_0_0_q=17.0",
    "bitrate=   1.6kbits/s",
    "total_size=741",
    "out_time_us=3785000",
    "out_time_ms=3785000",
    "out_time=00:00:03.785000",
    "dup_frames=0",
    "drop_frames=0",
    "speed=  36x",
    "progress=continue",
  ])

  test("reads -progress pipe:1 blocks from stdout", () => {
    const report = run(tracker(["-progress", "pipe:1", "-i", "in.mkv", "out.mkv"]), [
      ["stderr", header("00:00:10.00")],
      ["stdout", continued],
    ])
    expect(report).toEqual({
      timeMs: 3785,
      durationMs: 10000,
      percent: 37.9,
      speed: 36,
      fps: 47,
      frame: 94,
      etaMs: 173,
    })
  })

  test("reads out_time_ms as microseconds, as ffmpeg writes it, and out_time as a fallback", () => {
    const t = tracker(["-progress", "-", "-i", "in.mkv", "out.mkv"])
    const quirk = run(t, [["stdout", block(["out_time_ms=2500000", "out_time=00:00:09.000000", "progress=continue"])]])
    const clock = run(t, [["stdout", block(["out_time_us=N/A", "out_time=00:00:03.500000", "progress=continue"])]])
    const negative = run(t, [["stdout", block(["out_time_us=-23000", "progress=continue"])]])
    expect([quirk?.timeMs, clock?.timeMs, negative?.timeMs]).toEqual([2500, 3500, 0])
  })

  test("reports nothing until a block ends", () => {
    const t = tracker(["-progress", "pipe:1", "-i", "in.mkv", "out.mkv"])
    expect(run(t, [["stdout", "frame=5\nout_time_us=200000\nspeed=1x\n"]])).toBeUndefined()
    expect(run(t, [["stdout", "progress=continue\n"]])).toMatchObject({ timeMs: 200, frame: 5 })
  })

  test("shows 100 % and no time left at progress=end", () => {
    const end = block(["frame=150", "out_time_us=5960000", "speed=38.4x", "progress=end"])
    const known = run(tracker(["-progress", "/dev/stdout", "-i", "in.mkv", "out.mkv"]), [
      ["stderr", header("00:00:06.02")],
      ["stdout", end],
    ])
    const unknown = run(tracker(["-progress", "pipe:", "-i", "in.mkv", "out.mkv"]), [["stdout", end]])
    expect([known, unknown]).toEqual([
      { timeMs: 5960, durationMs: 6020, percent: 100, speed: 38.4, fps: null, frame: 150, etaMs: 0 },
      { timeMs: 5960, durationMs: null, percent: null, speed: 38.4, fps: null, frame: 150, etaMs: 0 },
    ])
  })

  test("with -progress pipe:2 reads the blocks among stderr lines and ignores the status lines", () => {
    const report = run(tracker(["-progress", "pipe:2", "-i", "in.mkv", "out.mkv"]), [
      [
        "stderr",
        header("00:00:10.00") +
          status("00:00:07.00") +
          block(["out_time_us=4000000", "speed=2x", "progress=continue"]) +
          status("00:00:08.00"),
      ],
    ])
    expect(report).toMatchObject({ timeMs: 4000, durationMs: 10000, percent: 40, speed: 2 })
  })

  test("with -progress to a file keeps reading the status lines", () => {
    const report = run(tracker(["-progress", "/tmp/progress.txt", "-i", "in.mkv", "out.mkv"]), [
      ["stderr", header("00:00:10.00") + status("00:00:07.00")],
    ])
    expect(report).toMatchObject({ timeMs: 7000, percent: 70 })
  })

  test("never reads stdout unless -progress goes there, even when media bytes look like progress", () => {
    const rand = rng(7)
    const media = new Uint8Array(65536).map(() => (rand() * 256) | 0)
    const lookalike = block(["out_time_us=5000000", "progress=continue"]) + status("00:00:09.00")
    const feeds: Feed[] = [
      ["stdout", media],
      ["stdout", lookalike],
      ["stdout", media],
    ]
    expect(run(tracker(["-i", "in.mkv", "-f", "matroska", "-"]), feeds)).toBeUndefined()
    expect(run(tracker(["-progress", "pipe:2", "-i", "in.mkv", "-f", "matroska", "pipe:1"]), feeds)).toBeUndefined()
  })
})

describe("the worker's own -progress pipe", () => {
  const own = (args: string[]) => tracker(args, () => 0, true)
  const at = (us: number, end = false) =>
    block([
      `frame=${us / 40000}`,
      "fps=25.00",
      `out_time_us=${us}`,
      "speed=1.5x",
      `progress=${end ? "end" : "continue"}`,
    ])

  test("reads its blocks, with the duration from the header, and ignores stderr status lines", () => {
    const t = own(["-i", "in.mkv", "out.mkv"])
    const report = run(t, [
      ["stderr", header("00:00:10.00") + status("00:00:09.00")],
      ["private", at(2_000_000)],
      ["stderr", status("00:00:08.00")],
    ])
    expect(report).toEqual({
      timeMs: 2000,
      durationMs: 10000,
      percent: 20,
      speed: 1.5,
      fps: 25,
      frame: 50,
      etaMs: 5333,
    })
  })

  test("takes the probed length when ffmpeg prints no header, the header when it does", () => {
    const quiet = own(["-v", "error", "-i", "in.mkv", "out.mkv"])
    expect(run(quiet, [["private", at(1_000_000)]])).toMatchObject({ durationMs: null, percent: null })
    quiet.probed(10_000)
    // A new length alone makes a new report.
    expect(quiet.take()).toMatchObject({ timeMs: 1000, durationMs: 10000, percent: 10, etaMs: 6000 })
    expect(run(quiet, [["private", at(4_000_000, true)]])).toMatchObject({ percent: 100, etaMs: 0 })
    // -t caps the length with or without a probe; a shorter probed input shortens it.
    const capped = own(["-v", "error", "-i", "in.mkv", "-t", "4", "out.mkv"])
    expect(run(capped, [["private", at(1_000_000)]])).toMatchObject({ durationMs: 4000 })
    capped.probed(3000)
    expect(capped.take()).toMatchObject({ durationMs: 3000 })

    const loud = own(["-i", "in.mkv", "out.mkv"])
    loud.probed(99_000)
    expect(
      run(loud, [
        ["stderr", header("00:00:10.00")],
        ["private", at(5_000_000)],
      ]),
    ).toMatchObject({
      durationMs: 10000,
      percent: 50,
    })
    // A probe that found nothing (or nonsense) leaves the length unknown.
    const none = own(["-i", "in.mkv", "out.mkv"])
    for (const ms of [null, Number.NaN, -5, Number.POSITIVE_INFINITY]) none.probed(ms)
    expect(run(none, [["private", at(1_000_000)]])).toMatchObject({ durationMs: null })
  })

  test("leaves the private stream unread when the caller has its own -progress (the worker then adds none)", () => {
    const t = own(["-progress", "pipe:1", "-i", "in.mkv", "out.mkv"])
    expect(run(t, [["private", at(3_000_000)]])).toBeUndefined()
    expect(run(t, [["stdout", at(1_000_000)]])).toMatchObject({ timeMs: 1000 })
    // Without `own`, a private feed is nothing: stderr status lines stay the source.
    const plain = tracker(["-i", "in.mkv", "out.mkv"])
    expect(
      run(plain, [
        ["private", at(3_000_000)],
        ["stderr", header("00:00:10.00") + status("00:00:01.00")],
      ]),
    ).toMatchObject({
      timeMs: 1000,
    })
  })

  test("joins blocks cut anywhere across reads, and stays bounded on a huge record", () => {
    const bytes = enc.encode(at(1_000_000) + at(2_000_000) + at(3_000_000))
    for (let cut = 1; cut < bytes.length; cut += 3) {
      const t = own(["-i", "in.mkv", "out.mkv"])
      t.probed(6000)
      expect(
        run(t, [
          ["private", bytes.subarray(0, cut)],
          ["private", bytes.subarray(cut)],
        ]),
      ).toMatchObject({
        timeMs: 3000,
        percent: 50,
      })
    }
    const t = own(["-i", "in.mkv", "out.mkv"])
    const huge = new Uint8Array(8 * 1024 * 1024).fill(0x3d) // "=" without a break
    for (let o = 0; o < huge.length; o += 65536) t.feed("private", huge.subarray(o, o + 65536))
    // The huge record ends at the first break and is dropped whole; the next block reads.
    expect(run(t, [["private", `\n${at(4_000_000)}`]])).toMatchObject({ timeMs: 4000 })
  })
})

describe("speed and changes", () => {
  test("estimates speed from the wall clock when ffmpeg prints speed=N/A", () => {
    let clock = 1000
    const t = tracker(["-i", "in.mkv", "out.mkv"], () => clock)
    expect(run(t, [["stderr", header("00:01:00.00") + status("00:00:01.00", "N/A")]])).toMatchObject({
      speed: null,
      etaMs: null,
    })
    clock = 3000
    expect(run(t, [["stderr", status("00:00:05.00", "N/A")]])).toMatchObject({ timeMs: 5000, speed: 2, etaMs: 27500 })
  })

  test("take returns a report only when it changed", () => {
    const t = tracker(["-progress", "pipe:1", "-i", "in.mkv", "out.mkv"])
    const line = block(["out_time_us=1000000", "speed=1x", "progress=continue"])
    expect(t.take()).toBeUndefined()
    t.feed("stdout", enc.encode(line))
    expect(t.take()).toMatchObject({ timeMs: 1000, durationMs: null })
    expect(t.take()).toBeUndefined()
    t.feed("stdout", enc.encode(line))
    expect(t.take()).toBeUndefined()
    // The header may come after the first block: stdout and stderr are separate pipes.
    t.feed("stderr", enc.encode(header("00:00:04.00")))
    expect(t.take()).toMatchObject({ timeMs: 1000, durationMs: 4000, percent: 25, etaMs: 3000 })
    expect(t.take()).toBeUndefined()
  })
})

describe("robustness", () => {
  test("never throws and only yields schema-valid reports on hostile bytes", () => {
    const rand = rng(42)
    const hostile = [
      status("99999999999999999:00:00.00", "1e400x"),
      status(`${"9".repeat(400)}.5`),
      "frame=99999999999999999999 fps=1e308 size=1kB time=00:00:01.00 speed=9e9x\r",
      block(["out_time_us=" + "9".repeat(400), "frame=-3", "fps=NaN", "speed=-2x", "progress=end"]),
      header("99999999:00:00.00"),
      "Input #0, x, from 'é\u{1F600}':\n  Duration: 00:00:10.00, start\n",
      "\u{1F600}time=\u00e9=\r\n",
    ]
    for (const args of [
      ["-i", "in", "-t", "1e9"],
      ["-progress", "pipe:1", "-i", "in"],
      ["-progress", "pipe:2", "-ss", "1", "-i", "in"],
    ]) {
      const t = tracker(args, () => rand() * 1e6)
      for (let i = 0; i < 400; i++) {
        const piece =
          rand() < 0.5
            ? enc.encode(hostile[Math.floor(rand() * hostile.length)])
            : new Uint8Array(1 + Math.floor(rand() * 300)).map(() => (rand() * 256) | 0)
        const cut = Math.floor(rand() * piece.length)
        const stream = rand() < 0.5 ? "stdout" : "stderr"
        run(t, [
          [stream, piece.subarray(0, cut)],
          [stream, piece.subarray(cut)],
        ])
      }
    }
  })

  test("drops a record longer than 8 KiB whole and resumes at the next break", () => {
    const t = tracker(["-i", "in.mkv", "out.mkv"])
    const long = "x".repeat(9000) + status("00:00:02.00")
    expect(
      run(t, [
        ["stderr", header("00:00:10.00")],
        ["stderr", long.slice(0, 5000)],
        ["stderr", long.slice(5000)],
      ]),
    ).toBeUndefined()
    expect(run(t, [["stderr", status("00:00:03.00")]])).toMatchObject({ timeMs: 3000 })
  })

  test("stays bounded while fed 50 MB without a break, then works on", () => {
    const junk = new Uint8Array(50 * 1024 * 1024).fill(0x41)
    const t = tracker(["-i", "in.mkv", "out.mkv"])
    run(t, [["stderr", header("00:00:10.00")]])
    Bun.gc(true)
    const before = process.memoryUsage().rss
    // 64 KiB views of one buffer, as a pipe reader hands them over, then the whole 50 MB at once.
    for (let o = 0; o < junk.length; o += 65536) t.feed("stderr", junk.subarray(o, o + 65536))
    t.feed("stderr", junk)
    // The break ends the junk record (dropped whole: a status line glued to it is not read).
    expect(run(t, [["stderr", status("00:00:09.00")]])).toBeUndefined()
    expect(run(t, [["stderr", status("00:00:04.00")]])).toMatchObject({ timeMs: 4000, percent: 40 })
    Bun.gc(true)
    // Loose on purpose (RSS is noisy), but keeping the junk would add 50 MB.
    expect(process.memoryUsage().rss - before).toBeLessThan(16 * 1024 * 1024)
  })
})

describe("real ffmpeg output", () => {
  const dir = mkdtempSync(join(tmpdir(), "dffmpeg-progress-"))
  const encode = ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "matroska", "-y"]
  const base = ["-hide_banner", "-nostdin", "-stats_period", "0.1"]
  type Capture = { args: string[]; stdout: Uint8Array; stderr: Uint8Array }
  const captured = {} as Record<"generated" | "transcode" | "progress", Capture>
  let quiet: Capture & { own: Uint8Array }

  function ffmpeg(args: string[]): Capture {
    const p = Bun.spawnSync(["ffmpeg", ...args], { stdout: "pipe", stderr: "pipe" })
    if (p.exitCode !== 0) throw new Error(`ffmpeg ${args.join(" ")} failed:\n${p.stderr.toString()}`)
    return { args, stdout: new Uint8Array(p.stdout), stderr: new Uint8Array(p.stderr) }
  }

  beforeAll(async () => {
    const src = join(dir, "src.mkv")
    // A generated input has no known length (Duration: N/A); the file it makes has one (6 s).
    captured.generated = ffmpeg([
      ...base,
      "-f",
      "lavfi",
      "-i",
      "testsrc=size=160x120:rate=25:duration=6",
      "-f",
      "lavfi",
      "-i",
      "sine=duration=6",
      ...encode,
      src,
    ])
    captured.transcode = ffmpeg([...base, "-i", src, ...encode, join(dir, "a.mkv")])
    captured.progress = ffmpeg([...base, "-nostats", "-progress", "pipe:1", "-i", src, ...encode, join(dir, "b.mkv")])
    // As the worker runs a quiet job: its own -progress on fd 4, nothing on stderr.
    const args = ["-v", "error", "-nostats", "-stats_period", "0.1", "-i", src, ...encode, join(dir, "c.mkv")]
    const p = Bun.spawn(["ffmpeg", "-progress", `pipe:${PROGRESS_FD}`, ...args], {
      stdio: ["ignore", "pipe", "pipe", "ignore", "pipe"],
    })
    const [stdout, stderr, own] = await Promise.all([
      new Response(p.stdout).bytes(),
      new Response(p.stderr).bytes(),
      new Response(Bun.file(p.stdio[PROGRESS_FD] as number).stream()).bytes(),
      p.exited,
    ])
    quiet = { args, stdout, stderr, own }
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  const whole = (c: Capture) =>
    run(tracker(c.args), [
      ["stderr", c.stderr],
      ["stdout", c.stdout],
    ])

  /** Chunkings of one stream: a cut at every offset, 1-byte pieces and seeded random sizes. */
  function chunkings(bytes: Uint8Array): Uint8Array[][] {
    const out: Uint8Array[][] = []
    for (let cut = 1; cut < bytes.length; cut++) out.push([bytes.subarray(0, cut), bytes.subarray(cut)])
    out.push(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)))
    for (let seed = 1; seed <= 20; seed++) {
      const rand = rng(seed)
      const max = seed % 2 ? 16 : 4096
      const pieces: Uint8Array[] = []
      for (let o = 0; o < bytes.length; ) {
        const n = 1 + Math.floor(rand() * max)
        pieces.push(bytes.subarray(o, o + n))
        o += n
      }
      out.push(pieces)
    }
    return out
  }

  test("reads a real transcode of a 6 s file: about 6 s done of 6 s, 100 %", () => {
    const records = new TextDecoder().decode(captured.transcode.stderr).split(/[\r\n]/)
    expect(records.filter((r) => r.startsWith("frame=")).length).toBeGreaterThanOrEqual(2)
    expect(records.some((r) => /^ {2}Duration: 00:00:06\.\d\d,/.test(r))).toBe(true)
    const report = whole(captured.transcode)
    expect(report?.timeMs).toBeGreaterThan(5900)
    expect(report?.timeMs).toBeLessThan(6100)
    expect(report?.durationMs).toBeGreaterThan(5900)
    expect(report?.durationMs).toBeLessThan(6100)
    expect(report?.percent).toBeGreaterThanOrEqual(99)
    expect(report).toMatchObject({ frame: 150, etaMs: 0 })
  })

  test("reads a real generated input as 6 s done of an unknown length", () => {
    const report = whole(captured.generated)
    expect(report).toMatchObject({ durationMs: null, percent: null, etaMs: null })
    expect(Math.abs((report?.timeMs ?? 0) - 6000)).toBeLessThan(100)
  })

  test("reads a real -progress pipe:1 run to 100 %", () => {
    expect(new TextDecoder().decode(captured.progress.stdout)).toContain("progress=end")
    const report = whole(captured.progress)
    expect(report).toMatchObject({ percent: 100, etaMs: 0, frame: 150 })
    expect(Math.abs((report?.timeMs ?? 0) - 6000)).toBeLessThan(100)
  })

  test("reads a real quiet run's own pipe to 100 % of the probed length, however the pipe is chunked", () => {
    expect([quiet.stdout.length, quiet.stderr.length]).toEqual([0, 0])
    const feed = (pieces: Uint8Array[]) => {
      const t = tracker(quiet.args, () => 0, true)
      t.probed(6000)
      return run(
        t,
        pieces.map((p) => ["private", p]),
      )
    }
    const expected = feed([quiet.own])
    expect(expected).toMatchObject({ durationMs: 6000, percent: 100, etaMs: 0, frame: 150 })
    for (const pieces of chunkings(quiet.own).filter((_, i) => i % 5 === 0)) expect(feed(pieces)).toEqual(expected!)
  })

  test("gives the same reports for real stderr however it is chunked", () => {
    for (const c of [captured.transcode, captured.generated]) {
      const expected = whole(c)
      for (const pieces of chunkings(c.stderr))
        expect(
          run(
            tracker(c.args),
            pieces.map((p) => ["stderr", p]),
          ),
        ).toEqual(expected!)
    }
  })

  test("gives the same reports for a real -progress run however its two streams are chunked and interleaved", () => {
    const c = captured.progress
    const expected = whole(c)
    const outs = chunkings(c.stdout)
    const errs = chunkings(c.stderr)
    const rand = rng(99)
    for (let i = 0; i < Math.max(outs.length, errs.length); i += 7) {
      const queues: Feed[][] = [
        outs[i % outs.length].map((p) => ["stdout", p]),
        errs[i % errs.length].map((p) => ["stderr", p]),
      ]
      const feeds: Feed[] = []
      while (queues.some((q) => q.length)) {
        const q = queues[0].length && (!queues[1].length || rand() < 0.5) ? queues[0] : queues[1]
        feeds.push(q.shift()!)
      }
      expect(run(tracker(c.args), feeds)).toEqual(expected!)
    }
  })
})
