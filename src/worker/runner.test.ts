import { describe, expect, test } from "bun:test"
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { FakeTransport, pacedFfmpeg } from "../../test/helpers/fake-transport.ts"
import { createLogger } from "../shared/log.ts"
import { createWorkerMapper } from "../shared/paths/mapping.ts"
import { frameJson, Kind } from "../shared/protocol/frames.ts"
import type { ProgressReport } from "../shared/protocol/schemas.ts"
import { makeMedia } from "../../test/helpers/media.ts"
import type { Assignment } from "../shared/protocol/worker.ts"
import { ProtocolError, StaleJobError, TransportUnavailableError } from "../transports/types.ts"
import { startRun, type RunnerDeps } from "./runner.ts"
import * as v from "valibot"
import { WorkerConfig } from "../shared/config/server-schema.ts"
import { workerPolicy } from "./policy-deps.ts"
import type { Confinement } from "./sandbox.ts"

const enc = new TextEncoder()
let n = 0

/** An assignment of `binary` with `args`; each test gets its own job id. */
function assignment(args: string[], over: Partial<Assignment> = {}): Assignment {
  const id = `01M8DFWF4PCGSZBYEVT8TN${String(++n).padStart(4, "0")}`
  return { id, epoch: 3, binary: "ffmpeg", args, paths: [], cwd: null, stdin: false, ...over }
}

/** Unconfined (sandbox: none), no argument policy: the runner's own behaviour, nothing else. */
const NONE: Confinement = {
  mode: "none",
  argv: (_job, command) => command,
  env: () => undefined,
  capabilities: { sandbox: "none", runAs: "test" },
}

/** Runner dependencies with `binary` standing in for ffmpeg (a real ffmpeg, or a tool for fault injection). */
function deps(t: FakeTransport, binary = Bun.which("ffmpeg")!): RunnerDeps {
  return {
    transport: t,
    log: createLogger({ level: "error" }),
    mapper: createWorkerMapper({ paths: {} }),
    binaries: new Map([["ffmpeg", binary]]),
    confinement: NONE,
    termAfterMs: 1000,
    killAfterMs: 2000,
  }
}

/** Resolves with `p`, or fails the test after `ms`. */
async function within<T>(p: Promise<T>, ms = 10_000): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(t)
  }
}

/** A stand-in for a long ffmpeg: prints a line every 50 ms until stopped. */
const FOREVER = ["-c", "while :; do echo tick; sleep 0.05; done"]

describe("startRun against a fake transport", () => {
  test("claims the job at its epoch before spawning, uploads output in sequence, then the exit frame", async () => {
    const t = new FakeTransport()
    const a = assignment(["-hide_banner", "-version"])
    await within(startRun(a, deps(t)).done)
    expect(t.starts).toEqual([{ id: a.id, epoch: 3 }])
    expect(t.calls.indexOf(`start:${a.id}`)).toBe(0)
    expect(t.text(a.id, Kind.stdout)).toContain("ffmpeg version")
    const frames = t.uploads.get(a.id)!
    const seqs = frames.filter((f) => f.kind === Kind.stdout || f.kind === Kind.stderr).map((f) => f.seq)
    expect(seqs).toEqual(seqs.map((_, i) => i + 1))
    expect(frames.at(-1)!.kind).toBe(Kind.exit)
    expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
  })

  test("with a linger, a trivial job's output and its exit go in one upload request", async () => {
    const t = new FakeTransport()
    const a = assignment(["-hide_banner", "-version"])
    // A linger longer than the test: the exit's drain is what sends the output.
    await within(startRun(a, { ...deps(t), outputLingerMs: 60_000 }).done)
    expect(t.calls.filter((c) => c === `upload:${a.id}`)).toHaveLength(1)
    expect(t.text(a.id, Kind.stdout)).toContain("ffmpeg version")
    expect(t.uploads.get(a.id)!.at(-1)!.kind).toBe(Kind.exit)
    expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
  })

  test("a refused start (no longer ours) never spawns and reports nothing", async () => {
    const t = new FakeTransport()
    t.faults.start.once.push(new StaleJobError("job is no longer assigned to w1 at epoch 3"))
    const a = assignment(["-hide_banner", "-version"])
    await within(startRun(a, deps(t)).done)
    expect(t.uploads.size).toBe(0)
    expect(t.calls).toEqual([`start:${a.id}`])
  })

  test("a stale upload stops the process without reporting its exit", async () => {
    const t = new FakeTransport()
    t.faults.upload.always = new StaleJobError("job is no longer running on w1 at epoch 3")
    const a = assignment(FOREVER)
    // Resolves only once the process has exited: it was killed.
    await within(startRun(a, deps(t, "/bin/sh")).done, 5000)
    expect(t.exitOf(a.id)).toBeUndefined()
    expect(t.calls.filter((c) => c === `upload:${a.id}`).length).toBe(1)
  })

  test("retryable upload failures are retried: every byte arrives once, then the exit", async () => {
    const t = new FakeTransport()
    t.faults.upload.once.push(new TransportUnavailableError("down"), new TransportUnavailableError("still down"))
    const a = assignment(["-c", "printf 'a\\nb\\n'; printf 'c' >&2; exit 3"])
    await within(startRun(a, deps(t, "/bin/sh")).done)
    expect(t.text(a.id, Kind.stdout)).toBe("a\nb\n")
    expect(t.text(a.id, Kind.stderr)).toBe("c")
    expect(t.exitOf(a.id)).toEqual({ code: 3, signal: null })
    expect(t.calls.filter((c) => c === `upload:${a.id}`).length).toBeGreaterThanOrEqual(3)
  })

  test("a garbled reply to an upload is retried after a pause: the job is not killed, every byte arrives once", async () => {
    const t = new FakeTransport()
    t.faults.upload.once.push(new ProtocolError("coordinator sent invalid JSON (HTTP 200)"))
    const a = assignment(["-c", "printf 'a\\n'; sleep 0.3; printf 'b\\n'; exit 3"])
    await within(startRun(a, deps(t, "/bin/sh")).done)
    expect(t.text(a.id, Kind.stdout)).toBe("a\nb\n")
    expect(t.exitOf(a.id)).toEqual({ code: 3, signal: null })
  })

  test("the downlink's stdin reaches the process and its end closes the pipe", async () => {
    const t = new FakeTransport()
    const a = assignment([], { stdin: true })
    const run = startRun(a, deps(t, "/bin/cat"))
    t.send(a.id, { kind: Kind.stdin, data: enc.encode("hello ") })
    t.send(a.id, { kind: Kind.stdin, data: enc.encode("world") })
    t.send(a.id, { kind: Kind.stdinEnd, data: new Uint8Array() })
    await within(run.done)
    expect(t.text(a.id, Kind.stdout)).toBe("hello world")
    expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
  })

  test("a cancel frame stops a real ffmpeg gracefully (q) and its exit is reported", async () => {
    const t = new FakeTransport()
    // Only a process with the caller's stdin has a pipe to type `q` into.
    const a = assignment(pacedFfmpeg(60), { stdin: true })
    const run = startRun(a, deps(t))
    await t.until(() => t.starts.length === 1 && t.calls.includes(`input:${a.id}`))
    const t0 = performance.now()
    t.send(a.id, { kind: Kind.cancel, data: enc.encode(JSON.stringify({ reason: "canceled by alice" })) })
    await within(run.done, 5000)
    // `q` ends ffmpeg at once: well before the SIGTERM of the stop schedule.
    expect(performance.now() - t0).toBeLessThan(1000)
    expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
  })

  test("without the caller's stdin the process reads EOF at once, and a cancel stops it with SIGTERM", async () => {
    const t = new FakeTransport()
    const eof = assignment(["-c", "cat; echo eof"])
    await within(startRun(eof, deps(t, "/bin/sh")).done, 5000)
    expect(t.text(eof.id, Kind.stdout)).toBe("eof\n")
    // ffmpeg's other graceful stop, at once: it finalises and exits 255.
    const a = assignment(pacedFfmpeg(60))
    const run = startRun(a, deps(t))
    // Once it transcodes: before that, ffmpeg has no handler yet and SIGTERM kills it (as it would locally).
    await t.until(() => (t.text(a.id, Kind.stderr) ?? "").includes("Output #0"))
    // The coordinator's poll names the job once its cancel is requested: only then is the downlink followed.
    run.openDownlink()
    await t.until(() => t.calls.includes(`input:${a.id}`))
    t.send(a.id, { kind: Kind.cancel, data: enc.encode(JSON.stringify({ reason: "canceled by alice" })) })
    await within(run.done, 5000)
    expect(t.exitOf(a.id)).toEqual({ code: 255, signal: null })
  })

  test("a cancel frame with kill (the caller vanished) SIGKILLs the process at once", async () => {
    const t = new FakeTransport()
    const a = assignment(["-c", "trap '' TERM INT; while :; do sleep 0.05; done"], { stdin: true })
    const run = startRun(a, deps(t, "/bin/sh"))
    await t.until(() => t.calls.includes(`input:${a.id}`))
    await Bun.sleep(100)
    t.send(a.id, {
      kind: Kind.cancel,
      data: enc.encode(JSON.stringify({ reason: "the caller went away", kill: true })),
    })
    // Before the stop schedule's SIGKILL (2 s): the kill is not the graceful schedule's last step.
    await within(run.done, 1500)
    expect(t.exitOf(a.id)).toEqual({ code: null, signal: "SIGKILL" })
  })

  test("a finished job's downlink is ended by the coordinator, not cut by the worker (its connection stays pooled)", async () => {
    const t = new FakeTransport()
    const a = assignment(["-c", "head -c 3; echo done"], { stdin: true })
    const run = startRun(a, deps(t, "/bin/sh"))
    await t.until(() => t.calls.includes(`input:${a.id}`))
    t.send(a.id, { kind: Kind.stdin, data: enc.encode("abc") })
    await within(run.done, 5000)
    expect(t.text(a.id, Kind.stdout)).toBe("abcdone\n")
    expect(t.calls.filter((c) => c.startsWith("input-"))).toEqual([`input-ended:${a.id}`])
  })

  test("a job without stdin follows no downlink until openDownlink(); then a signal frame reaches the process", async () => {
    const t = new FakeTransport()
    const a = assignment(["-c", "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.05; done"])
    const run = startRun(a, deps(t, "/bin/sh"))
    await t.until(() => t.text(a.id, Kind.stdout).includes("ready"))
    expect(run.following).toBe(false)
    expect(t.calls.filter((c) => c.startsWith("input:"))).toEqual([])
    run.openDownlink()
    run.openDownlink()
    expect(run.following).toBe(true)
    await t.until(() => t.calls.includes(`input:${a.id}`))
    t.send(a.id, { kind: Kind.signal, data: enc.encode("SIGUSR1") })
    await within(run.done, 5000)
    expect(t.text(a.id, Kind.stdout)).toBe("ready\ngot-usr1\n")
    expect(t.exitOf(a.id)).toEqual({ code: 7, signal: null })
    // The second call opened nothing more.
    expect(t.calls.filter((c) => c.startsWith("input:"))).toEqual([`input:${a.id}`])
  })

  test("fence() kills at once and reports nothing; abandon() reports the job as given up", async () => {
    const t = new FakeTransport()
    const fenced = assignment(FOREVER)
    const run = startRun(fenced, deps(t, "/bin/sh"))
    await t.until(() => t.text(fenced.id, Kind.stdout).includes("tick"))
    run.fence()
    await within(run.done, 3000)
    expect(t.exitOf(fenced.id)).toBeUndefined()

    const given = assignment(FOREVER)
    const other = startRun(given, deps(t, "/bin/sh"))
    await t.until(() => t.text(given.id, Kind.stdout).includes("tick"))
    other.abandon("worker w1 was shut down while running the job")
    await within(other.done, 5000)
    expect(t.exitOf(given.id)?.abandoned).toBe("worker w1 was shut down while running the job")
  })
})

describe("files written into a scratch working directory are never lost in silence", () => {
  test("a job that writes into it and exits 0 fails with exit 1 and an error naming the files", async () => {
    const t = new FakeTransport()
    const a = assignment(["-c", "echo x > out.mkv; mkdir fonts; echo y > fonts/a.ttf; pwd"])
    await within(startRun(a, deps(t, "/bin/sh")).done)
    const scratch = t.text(a.id, Kind.stdout)!.trim()
    expect(scratch).toContain("dffmpeg-job-")
    expect(t.exitOf(a.id)).toEqual({
      code: 1,
      signal: null,
      error:
        'ffmpeg wrote "fonts/a.ttf", "out.mkv" into its working directory, which is under no path mapping, so the ' +
        "caller cannot see them: run from a mapped directory or give absolute paths",
    })
    // Deleted all the same: the worker keeps nothing of a job.
    expect(await Bun.file(`${scratch}/out.mkv`).exists()).toBe(false)
  })

  test("ffmpeg's own failure code is kept; a job that writes nothing there exits as it did", async () => {
    const t = new FakeTransport()
    const failed = assignment(["-c", "echo x > out.mkv; exit 8"])
    await within(startRun(failed, deps(t, "/bin/sh")).done)
    expect(t.exitOf(failed.id)).toMatchObject({ code: 8, signal: null })
    expect(t.exitOf(failed.id)?.error).toContain('"out.mkv"')
    const clean = assignment(["-hide_banner", "-version"])
    await within(startRun(clean, deps(t)).done)
    expect(t.exitOf(clean.id)).toEqual({ code: 0, signal: null })
  })

  test("a mapped working directory is the caller's own: what is written there is not reported", async () => {
    const root = mkdtempSync(`${tmpdir()}/dffmpeg-runner-cwd-`)
    try {
      const t = new FakeTransport()
      const d = { ...deps(t, "/bin/sh"), mapper: createWorkerMapper({ paths: { Media: root } }) }
      const a = assignment(["-c", "echo x > out.mkv"], { paths: ["Media"], cwd: "$Media" })
      await within(startRun(a, d).done)
      expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
      expect(await Bun.file(`${root}/out.mkv`).text()).toBe("x\n")
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})

describe("the worker's roots leave as path variables", () => {
  test("stderr names $Var paths with a literal $ escaped; ffmpeg's stdout is sent as written", async () => {
    const root = mkdtempSync(`${tmpdir()}/dffmpeg-runner-`)
    try {
      const data = `${root}/x $Media $$`.repeat(100)
      writeFileSync(`${root}/data.bin`, data)
      const t = new FakeTransport()
      const d = { ...deps(t), mapper: createWorkerMapper({ paths: { Media: root } }) }
      const missing = assignment(["-hide_banner", "-i", "$Media/no $1.mkv"], { paths: ["Media"], pathTokens: true })
      await within(startRun(missing, d).done)
      expect(t.text(missing.id, Kind.stderr)).toBe("$Media/no $$1.mkv: No such file or directory\n")
      const copy = ["-v", "error", "-f", "data", "-i", "$Media/data.bin", "-map", "0", "-c", "copy", "-f", "data", "-"]
      const piped = assignment(copy, { paths: ["Media"], pathTokens: true })
      await within(startRun(piped, d).done)
      expect(t.text(piped.id, Kind.stdout)).toBe(data)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })

  test("only for a job whose caller decodes them: an older caller's job reads the worker's own paths", async () => {
    const root = mkdtempSync(`${tmpdir()}/dffmpeg-runner-`)
    try {
      const t = new FakeTransport()
      const d = { ...deps(t), mapper: createWorkerMapper({ paths: { Media: root } }) }
      const old = assignment(["-hide_banner", "-i", "$Media/no $1.mkv"], { paths: ["Media"] })
      await within(startRun(old, d).done)
      expect(t.text(old.id, Kind.stderr)).toBe(`${root}/no $1.mkv: No such file or directory\n`)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})

describe("the job's files (concat lists, filter scripts)", () => {
  test("are written outside the scratch directory with our paths, run with -safe 0, and removed after the job", async () => {
    const root = mkdtempSync(`${tmpdir()}/dffmpeg-runner-files-`)
    try {
      const t = new FakeTransport()
      const d = { ...deps(t, "/bin/sh"), mapper: createWorkerMapper({ paths: { Media: root } }) }
      // sh -c SCRIPT $0 $1 ...: the list's copy is the argument after -i.
      const script = 'for a; do last=$a; done; echo "$0 $1 $2 $3 $4"; cat "$last"; pwd; echo "$last"'
      const args = ["-c", script, "-f", "concat", "-i", "$Media/l.txt"]
      const files = [{ arg: 5, content: "ffconcat version 1.0\nfile '$Media/a b.ts'\n" }]
      const a = assignment(args, { paths: ["Media"], files })
      await within(startRun(a, d).done)
      // Nothing was left in the scratch directory: the copy is elsewhere.
      expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
      const [flags, head, entry, cwd, copy] = t.text(a.id, Kind.stdout)!.trim().split("\n")
      expect(flags).toBe("-f concat -safe 0 -i")
      expect([head, entry]).toEqual(["ffconcat version 1.0", `file '${root}/a b.ts'`])
      expect(copy!.startsWith(cwd!)).toBe(false)
      expect(copy!.endsWith("/l.txt")).toBe(true)
      expect(await Bun.file(copy!).exists()).toBe(false)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })

  test("an entry escaping its root refuses the job before anything runs", async () => {
    const t = new FakeTransport()
    const d = { ...deps(t, "/bin/sh"), mapper: createWorkerMapper({ paths: { Media: tmpdir() } }) }
    const files = [{ arg: 5, content: "file '$Media/../etc/passwd'\n" }]
    const a = assignment(["-c", "echo ran", "-f", "concat", "-i", "$Media/l.txt"], { paths: ["Media"], files })
    await within(startRun(a, d).done)
    expect(t.text(a.id, Kind.stdout) ?? "").toBe("")
    expect(t.exitOf(a.id)?.error).toBe(
      'worker refused the job: line 1 of argument 6 "$Media/l.txt" escapes $Media; remove the ".." segments that leave the mapped directory',
    )
  })
})

describe("argument profiles", () => {
  const qsv = [{ replace: { h264_nvenc: "h264_qsv" } }]
  test("rewrite before spawning and tell the start claim what changed", async () => {
    const t = new FakeTransport()
    // The argv as spawned, one argument a line (no output file in it: the worker adds no -progress).
    const a = assignment(["-c", 'printf "%s\\n" "$0" "$@"', "-c:v", "h264_nvenc"])
    await within(startRun(a, { ...deps(t, "/bin/sh"), profiles: qsv }).done)
    expect(t.starts).toEqual([{ id: a.id, epoch: 3, note: "profile: h264_nvenc -> h264_qsv" }])
    expect(t.text(a.id, Kind.stdout)).toBe("-c:v\nh264_qsv\n")
  })
  test("no rewrite, no note", async () => {
    const t = new FakeTransport()
    const a = assignment(["-hide_banner", "-version"])
    await within(startRun(a, { ...deps(t), profiles: qsv }).done)
    expect(t.starts[0]!.note).toBeUndefined()
  })
  test("the argument policy checks the rewritten argv", async () => {
    const t = new FakeTransport()
    const checked: string[][] = []
    const policy = {
      check: async (job: { args: string[] }) => {
        checked.push(job.args)
        if (job.args.includes("h264_qsv")) throw new Error("h264_qsv is not allowed here")
        return { args: job.args }
      },
    }
    const a = assignment(["-f", "lavfi", "-i", "nullsrc", "-c:v", "h264_nvenc", "-f", "null", "-"])
    await within(startRun(a, { ...deps(t), profiles: qsv, policy: policy as never }).done)
    expect(checked).toEqual([["-f", "lavfi", "-i", "nullsrc", "-c:v", "h264_qsv", "-f", "null", "-"]])
    expect(t.exitOf(a.id)).toEqual({
      code: null,
      signal: null,
      error: "worker refused the job: h264_qsv is not allowed here",
    })
  })
})

describe("argument profiles against the real argument policy", () => {
  test("a rewrite into a path outside the job's roots is refused like the caller's own would be", async () => {
    const cfg = v.parse(WorkerConfig, { client_id: "w1", sandbox: "none", allow_root: true })
    const binaries = new Map([["ffmpeg", Bun.which("ffmpeg")!]])
    const policy = workerPolicy(cfg, binaries, createLogger({ level: "error" }))!
    const profiles = [{ replace: { "subtitles=sub.srt": "subtitles=/etc/passwd" }, options: ["vf"] }]
    const t = new FakeTransport()
    const a = assignment(["-f", "lavfi", "-i", "nullsrc", "-vf", "subtitles=sub.srt", "-f", "null", "-"])
    await within(startRun(a, { ...deps(t), policy, profiles }).done)
    expect(t.starts[0]!.note).toBe("profile: subtitles=sub.srt -> subtitles=/etc/passwd")
    const exit = t.exitOf(a.id) as { code: null; error?: string }
    expect(exit.code).toBeNull()
    expect(exit.error).toStartWith("worker refused the job: ")
    expect(exit.error).toContain("/etc/passwd")
  })
})

describe("progress for a quiet job", () => {
  /** The progress reports the job uploaded, in order. */
  const reports = (t: FakeTransport, id: string) =>
    (t.uploads.get(id) ?? []).filter((f) => f.kind === Kind.progress).map((f) => frameJson(f) as ProgressReport)

  test("a -v error -nostats ffmpeg, unconfined: its own pipe and the probed length give 100 %, its output is untouched", async () => {
    const root = mkdtempSync(`${tmpdir()}/dffmpeg-runner-progress-`)
    try {
      makeMedia(["-f", "lavfi", "-i", "testsrc=duration=2:size=64x48:rate=25", "-c:v", "mpeg4", `${root}/in.mkv`])
      const t = new FakeTransport()
      const d = {
        ...deps(t),
        binaries: new Map([
          ["ffmpeg", Bun.which("ffmpeg")!],
          ["ffprobe", Bun.which("ffprobe")!],
        ]),
        mapper: createWorkerMapper({ paths: { Media: root } }),
      }
      const args = ["-v", "error", "-nostats", "-i", "$Media/in.mkv", "-f", "framecrc", "-"]
      const a = assignment(args, { paths: ["Media"] })
      await within(startRun(a, d).done)
      expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
      const local = Bun.spawnSync(["ffmpeg", ...args.map((x) => x.replace("$Media", root))])
      expect(t.text(a.id, Kind.stdout)).toBe(local.stdout.toString())
      expect([t.text(a.id, Kind.stderr), local.stderr.toString()]).toEqual(["", ""])
      expect(reports(t, a.id).at(-1)).toMatchObject({ timeMs: 2000, durationMs: 2000, percent: 100, etaMs: 0 })
      // The last report came before the exit.
      const kinds = t.uploads.get(a.id)!.map((f) => f.kind)
      expect(kinds.lastIndexOf(Kind.progress)).toBeLessThan(kinds.indexOf(Kind.exit))
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })

  test("a process that leaves its progress pipe open behind it still has its exit reported", async () => {
    const dir = mkdtempSync(`${tmpdir()}/dffmpeg-runner-fd-`)
    try {
      // Fault injection: an "ffmpeg" writing one block to fd 4, then leaving a child holding fd 4 open.
      const fake = `${dir}/ffmpeg`
      const pidFile = `${dir}/holder.pid`
      writeFileSync(
        fake,
        `#!/bin/sh\nprintf 'out_time_us=500000\\nprogress=end\\n' >&4\nsleep 30 >&4 2>&4 &\necho $! > ${pidFile}\nexit 0\n`,
      )
      chmodSync(fake, 0o755)
      const t = new FakeTransport()
      const a = assignment(["-i", "in.mkv", "out.mkv"])
      try {
        await within(startRun(a, deps(t, fake)).done)
      } finally {
        process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL")
      }
      expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
      expect(reports(t, a.id).at(-1)).toMatchObject({ timeMs: 500 })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
