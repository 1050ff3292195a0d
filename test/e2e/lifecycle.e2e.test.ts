import { afterEach, describe, expect, test } from "bun:test"
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { apiFor } from "../helpers/api.ts"
import { BIN, pidsOf, waitFor } from "../helpers/bin.ts"
import { Cluster, type ClusterOptions } from "../helpers/cluster.ts"
import { slowEncode } from "../helpers/media.ts"
import { Proc } from "../helpers/proc.ts"

/**
 * The delivery promise under faults: every job reaches exactly one terminal state, at most one attempt
 * completes, no ffmpeg outlives its lease, and the caller gets the true outcome. Timings are shortened
 * through config (heartbeat 0.5 s → a job is lost after 1.25 s without heartbeat); recovery times are
 * printed for the record, never asserted as performance.
 */
const FAST: ClusterOptions = {
  coordinatorConfig: {
    heartbeat_interval: 0.5,
    registration_interval: 1,
    janitor: { interval: 0.25, jitter: 0.05, job_assignment_timeout: 2, job_pending_timeout: 20 },
  },
  workerConfig: { cancel_term_after_seconds: 1, cancel_kill_after_seconds: 2 },
}

let clusters: Cluster[] = []
async function cluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const c = await Cluster.start({ ...FAST, ...opts, workerConfig: { ...FAST.workerConfig, ...opts.workerConfig } })
  clusters.push(c)
  return c
}
afterEach(async () => {
  await Promise.all(clusters.map((c) => c.stop()))
  clusters = []
})

const dec = new TextDecoder()
const text = async (s: ReadableStream<Uint8Array> | number | undefined) =>
  s && typeof s !== "number" ? dec.decode(await new Response(s).bytes()) : ""

/** The states a job ends in (`canceling` is on the way to one). */
const TERMINAL = new Set(["completed", "failed", "canceled"])
const terminal = (events: { status: string }[]) => events.filter((e) => TERMINAL.has(e.status))

async function runningJob(c: Cluster) {
  return waitFor(async () => (await c.jobs()).find((j) => j.status === "running"), {
    timeoutMs: 15_000,
    what: "a running job",
  })
}

/** Waits until job `id` ends canceled; returns it with its timeline. */
const endsCanceled = (c: Cluster, id: string) =>
  waitFor(
    async () => {
      const j = await c.job(id)
      return j.status === "canceled" ? j : undefined
    },
    { timeoutMs: 15_000, what: `job ${id} to end canceled` },
  )

/** Waits until every pid is gone; returns how long it took. */
async function gone(pids: number[], timeoutMs: number): Promise<number> {
  const t0 = performance.now()
  await waitFor(() => pids.every((p) => !isAlive(p)), {
    timeoutMs,
    intervalMs: 50,
    what: `processes ${pids.join(",")} to end`,
  })
  return performance.now() - t0
}
/** A zombie is dead: it runs no code and writes nothing, it only waits for a reaper (slow in some containers). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}

describe("lost workers", () => {
  test("worker SIGKILL mid-job: its ffmpeg dies with it and the attached caller gets a clear failure", async () => {
    const c = await cluster()
    const name = `kill-${Date.now()}.mkv`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
    await runningJob(c)
    const ffmpeg = await waitFor(() => (pidsOf(`mnt/${name}`).length ? pidsOf(`mnt/${name}`) : undefined), {
      what: "the remote ffmpeg",
    })
    const t0 = performance.now()
    c.workers[0].proc.kill("SIGKILL")
    const orphanMs = await gone(ffmpeg, 5000)
    const code = await shim.exited
    const failMs = performance.now() - t0
    const err = await text(shim.stderr)
    expect(code).toBe(1)
    expect(err).toMatch(/^dffmpeg: job \w{26} failed: worker worker1 stopped responding while running the job/m)
    const [job] = await c.jobs()
    expect(job.status).toBe("failed")
    expect(terminal((await c.job(job.id)).events)).toHaveLength(1)
    console.log(
      `worker SIGKILL: orphan ffmpeg gone after ${orphanMs.toFixed(0)} ms, caller told after ${failMs.toFixed(0)} ms`,
    )
    expect(failMs).toBeLessThan(25_000)
  }, 60_000)

  test("a detached job with retries is re-run on another worker after its worker is killed, and completes once", async () => {
    const c = await cluster({ workers: 2, maxJobs: 1 })
    const name = `retry-${Date.now()}.mkv`
    const d = await c.exec(
      [
        BIN,
        "client",
        "submit",
        "--config",
        c.clientConfig,
        "--detach",
        "--retries",
        "1",
        "--",
        ...slowEncode(c.clientMedia, name, 4),
      ],
      {},
    )
    expect(d.code).toBe(0)
    const id = d.out.trim()
    const first = await runningJob(c)
    const victim = c.workers[c.workerIds.indexOf(first.workerId!)]
    const t0 = performance.now()
    victim.proc.kill("SIGKILL")
    const done = await waitFor(
      async () => {
        const j = await c.job(id)
        return j.status === "completed" ? j : undefined
      },
      { timeoutMs: 30_000, what: "the job to complete on the other worker" },
    )
    console.log(`worker SIGKILL with retries: re-run completed after ${(performance.now() - t0).toFixed(0)} ms`)
    expect(done.workerId).not.toBe(first.workerId)
    expect(done.attempts).toBe(1)
    expect(terminal(done.events)).toEqual([expect.objectContaining({ status: "completed" })])
    expect(done.events.filter((e) => e.status === "queued")).toHaveLength(2)
    const probe = await c.local("ffprobe", [
      "-v",
      "error",
      "-show_entries",
      "format=duration",
      "-of",
      "csv=p=0",
      join(c.storage, name),
    ])
    expect(Number(probe.out.trim())).toBeCloseTo(4, 0)
  }, 60_000)

  test("worker SIGSTOP past the threshold then SIGCONT: the job fails once, late writes are refused and its ffmpeg is stopped", async () => {
    const c = await cluster()
    const name = `stop-${Date.now()}.mkv`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
    const job = await runningJob(c)
    const ffmpeg = await waitFor(() => (pidsOf(`mnt/${name}`).length ? pidsOf(`mnt/${name}`) : undefined), {
      what: "the remote ffmpeg",
    })
    c.workers[0].proc.kill("SIGSTOP")
    const code = await shim.exited
    expect(code).toBe(1)
    expect(await text(shim.stderr)).toMatch(/stopped responding/)
    const t0 = performance.now()
    c.workers[0].proc.kill("SIGCONT")
    const fencedMs = await gone(ffmpeg, 10_000)
    console.log(`worker SIGSTOP/SIGCONT: ffmpeg stopped ${fencedMs.toFixed(0)} ms after SIGCONT`)
    const after = await c.job(job.id)
    expect(after.status).toBe("failed")
    expect(terminal(after.events)).toHaveLength(1)
    await waitFor(() => /409|no longer|self-fencing|not ours/.test(c.workers[0].log()), {
      what: "the worker to learn the job is gone",
    })
  }, 60_000)
})

describe("coordinator restart", () => {
  test("kill -9 and restart mid-job: the caller's output is gapless and the exit code exact", async () => {
    // Workers fence themselves after two heartbeats without an answer: with the FAST 0.5 s heartbeat
    // that is 1 s, less than a restart takes on a loaded 2-core machine (300 ms pause, start-up, the
    // heartbeat's retry backoff). A 1 s heartbeat leaves the restart a 2 s window, as production's 10 s.
    const c = await cluster({ coordinatorConfig: { ...FAST.coordinatorConfig, heartbeat_interval: 1 } })
    const args = [
      "-hide_banner",
      "-v",
      "error",
      "-re",
      "-f",
      "lavfi",
      "-i",
      "sine=frequency=440:duration=4",
      "-f",
      "wav",
      "pipe:1",
    ]
    const local = await c.local("ffmpeg", args)
    const shim = c.spawnProxy("ffmpeg", args)
    shim.stdin.end()
    const outP = new Response(shim.stdout).bytes()
    await runningJob(c)
    await Bun.sleep(800)
    const t0 = performance.now()
    await c.restartCoordinator("SIGKILL", 300)
    const restartMs = performance.now() - t0
    const [out, code] = await Promise.all([outP, shim.exited])
    const err = await text(shim.stderr)
    expect({ code, err }).toEqual({ code: 0, err: "" })
    const md5 = (b: Uint8Array) => new Bun.CryptoHasher("md5").update(b).digest("hex")
    expect(out.length).toBe(local.stdout.length)
    expect(md5(out)).toBe(md5(local.stdout))
    const [job] = await c.jobs()
    expect(job.status).toBe("completed")
    console.log(`coordinator kill -9: back after ${restartMs.toFixed(0)} ms, ${out.length} bytes relayed without gap`)
  }, 60_000)
})

describe("the caller stops the job", () => {
  // With stdin on /dev/null the job has no stdin: its downlink is opened only when the poll names it (the signal).
  for (const [sig, stdin] of [
    ["SIGINT", "pipe"],
    ["SIGTERM", "pipe"],
    ["SIGINT", "ignore"],
  ] as const) {
    test(`${sig} to the shim (stdin ${stdin === "pipe" ? "a pipe" : "/dev/null"}): the remote ffmpeg finalizes its output and the exit code equals local ffmpeg's`, async () => {
      const c = await cluster()
      const name = `${sig}-${Date.now()}.mp4`
      const localOut = join(c.storage, `local-${name}`)
      const lp = Bun.spawn(["ffmpeg", ...slowEncode(c.storage, `local-${name}`)], {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
      })
      const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name), { stdin })
      const job = (await runningJob(c)) as { stdin?: boolean }
      expect(job.stdin).toBe(stdin === "pipe")
      await Bun.sleep(1500)
      lp.kill(sig)
      const localCode = await lp.exited
      const t0 = performance.now()
      shim.kill(sig)
      const code = await shim.exited
      const stopMs = performance.now() - t0
      expect(code).toBe(localCode)
      expect(pidsOf(`mnt/${name}`)).toEqual([])
      // mp4 is only readable when ffmpeg wrote its index on the way out.
      for (const f of [localOut, join(c.storage, name)]) {
        const p = await c.local("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", f])
        expect({ f, code: p.code }).toEqual({ f, code: 0 })
        expect(Number(p.out.trim())).toBeGreaterThan(0.5)
      }
      console.log(`${sig} to the shim: exit ${code} (local ${localCode}) after ${stopMs.toFixed(0)} ms`)
      expect(stopMs).toBeLessThan(2000)
    }, 60_000)
  }

  test("q on the shim's stdin stops the remote ffmpeg, which finalizes and exits 0", async () => {
    const c = await cluster()
    const name = `q-${Date.now()}.mp4`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
    await runningJob(c)
    await Bun.sleep(1500)
    const t0 = performance.now()
    shim.stdin.write("q")
    await shim.stdin.flush()
    const code = await shim.exited
    console.log(`q to the shim: exit ${code} after ${(performance.now() - t0).toFixed(0)} ms`)
    expect(code).toBe(0)
    const p = await c.local("ffprobe", [
      "-v",
      "error",
      "-show_entries",
      "format=duration",
      "-of",
      "csv=p=0",
      join(c.storage, name),
    ])
    expect(p.code).toBe(0)
  }, 60_000)

  test("a killed shim cancels its job: the remote ffmpeg is killed at once and the job ends canceled", async () => {
    const c = await cluster()
    const name = `vanish-${Date.now()}.mkv`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
    const job = await runningJob(c)
    const ffmpeg = await waitFor(() => (pidsOf(`mnt/${name}`).length ? pidsOf(`mnt/${name}`) : undefined), {
      what: "the remote ffmpeg",
    })
    shim.kill("SIGKILL")
    // A vanished caller's job is SIGKILLed after a short grace (about 0.3 s); the 4 s deadline fails the
    // test when the process outlives that by far, the time itself is printed, not asserted.
    const ms = await gone(ffmpeg, 4000)
    console.log(`shim SIGKILL: remote ffmpeg stopped after ${ms.toFixed(0)} ms`)
    const after = await endsCanceled(c, job.id)
    expect(terminal(after.events)).toHaveLength(1)
  }, 60_000)

  test("caller_grace_seconds is how long a vanished caller's stream may stay away before its ffmpeg is killed", async () => {
    // The grace is capped by heartbeat_interval (the janitor's own abandoned-caller check follows it).
    const c = await cluster({
      coordinatorConfig: { ...FAST.coordinatorConfig, heartbeat_interval: 3, caller_grace_seconds: 2 },
    })
    const name = `grace-${Date.now()}.mkv`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
    await runningJob(c)
    const ffmpeg = await waitFor(() => (pidsOf(`mnt/${name}`).length ? pidsOf(`mnt/${name}`) : undefined), {
      what: "the remote ffmpeg",
    })
    shim.kill("SIGKILL")
    // A lower bound, which load can only lengthen: the job must outlive the configured grace (the default
    // of 0.3 s would have killed it long before).
    const ms = await gone(ffmpeg, 8000)
    console.log(`caller_grace_seconds 2: remote ffmpeg stopped ${ms.toFixed(0)} ms after the kill`)
    expect(ms).toBeGreaterThanOrEqual(2000)
  }, 60_000)

  test("admin jobs cancel stops a running detached job; cancel of a queued job ends it at once", async () => {
    const c = await cluster({ maxJobs: 1 })
    const submit = (name: string) =>
      c.exec(
        [BIN, "client", "submit", "--config", c.clientConfig, "--detach", "--", ...slowEncode(c.clientMedia, name)],
        {},
      )
    const a = (await submit(`a-${Date.now()}.mkv`)).out.trim()
    await runningJob(c)
    const b = (await submit(`b-${Date.now()}.mkv`)).out.trim()
    const rb = await c.admin(["jobs", "cancel", b])
    expect(rb.out.trim()).toBe(`${b} canceled`)
    const ra = await c.admin(["jobs", "cancel", a])
    expect(ra.out.trim()).toBe(`${a} canceling`)
    const done = await waitFor(
      async () => {
        const j = await c.job(a)
        return j.status === "canceled" ? j : undefined
      },
      { timeoutMs: 15_000, what: "job a to end canceled" },
    )
    expect(terminal(done.events)).toHaveLength(1)
    expect((await c.job(b)).status).toBe("canceled")
    const again = await c.admin(["jobs", "cancel", a])
    expect(again.code).not.toBe(0)
    expect(again.err).toMatch(/^dffmpeg: .*already ended/m)
  }, 60_000)
})

describe("a caller like a local ffmpeg's parent", () => {
  for (const stdin of ["devnull", "closed"] as const)
    test(`stdin ${stdin === "devnull" ? "/dev/null" : "closed at once"}: the overwrite prompt answers itself as locally`, async () => {
      const c = await cluster()
      const name = `exists-${stdin}-${Date.now()}.mkv`
      writeFileSync(join(c.storage, name), "keep me")
      const args = (dir: string) => ["-hide_banner", "-f", "lavfi", "-i", "testsrc=duration=1", join(dir, name)]
      const o = { stdin: stdin === "devnull" ? ("devnull" as const) : undefined, timeoutMs: 20_000 }
      const t0 = performance.now()
      const remote = await c.run("ffmpeg", args(c.clientMedia), o)
      const ms = performance.now() - t0
      const local = await c.local("ffmpeg", args(c.storage), o)
      // The prompt names the file as each side sees it; everything else must be the same.
      const norm = (err: string) => err.replace(/'[^']*\/exists-/g, "'exists-")
      expect({ code: remote.code, err: norm(remote.err) }).toEqual({ code: local.code, err: norm(local.err) })
      expect(local.code).toBe(1)
      expect(local.err).toContain("Not overwriting - exiting")
      expect(readFileSync(join(c.storage, name), "utf8")).toBe("keep me")
      console.log(`overwrite prompt with stdin ${stdin}: exit ${remote.code} after ${ms.toFixed(0)} ms`)
    }, 60_000)

  test("SIGKILL of the caller mid-HLS: the remote ffmpeg is killed at once and writes nothing more", async () => {
    const c = await cluster()
    const dir = `hls-${Date.now()}`
    mkdirSync(join(c.storage, dir), { mode: 0o777 })
    chmodSync(join(c.storage, dir), 0o777)
    const hls = (root: string) => [
      // slowEncode's input and codec, without its `-y OUTPUT`.
      ...slowEncode(root, "").slice(0, -2),
      "-g",
      "5",
      "-f",
      "hls",
      "-hls_time",
      "0.5",
      "-hls_list_size",
      "0",
      "-hls_segment_filename",
      join(root, dir, "seg%03d.ts"),
      join(root, dir, "index.m3u8"),
    ]
    const shim = c.spawnProxy("ffmpeg", hls(c.clientMedia))
    const job = await runningJob(c)
    const segments = () => readdirSync(join(c.storage, dir)).filter((f) => f.endsWith(".ts"))
    await waitFor(() => segments().length >= 2, { timeoutMs: 20_000, what: "two HLS segments" })
    const ffmpeg = pidsOf(`mnt/${dir}/index.m3u8`)
    expect(ffmpeg.length).toBeGreaterThan(0)
    shim.kill("SIGKILL")
    const ms = await gone(ffmpeg, 5000)
    const files = () =>
      readdirSync(join(c.storage, dir))
        .sort()
        .map((f) => {
          const st = statSync(join(c.storage, dir, f))
          return `${f} ${st.size} ${st.mtimeMs}`
        })
    const atDeath = files()
    // Long enough for a graceful stop to have written another segment and the final playlist.
    await Bun.sleep(2000)
    expect(files()).toEqual(atDeath)
    expect(readFileSync(join(c.storage, dir, "index.m3u8"), "utf8")).not.toContain("#EXT-X-ENDLIST")
    const after = await endsCanceled(c, job.id)
    expect(terminal(after.events)).toHaveLength(1)
    console.log(`caller SIGKILL mid-HLS: remote ffmpeg gone after ${ms.toFixed(0)} ms, ${atDeath.length} files`)
  }, 60_000)

  test("a signal to a caller whose job is queued ends it at once with local ffmpeg's exit code; a killed one never starts", async () => {
    const c = await cluster({ maxJobs: 1 })
    const ahead = await c.client("submit", ["--detach", "--", ...slowEncode(c.clientMedia, `ahead-${Date.now()}.mkv`)])
    expect(ahead.code).toBe(0)
    await runningJob(c)
    const queued = (name: string) =>
      waitFor(async () => (await c.jobs()).find((j) => j.status === "queued"), {
        timeoutMs: 15_000,
        what: `the job of ${name} queued`,
      })
    const withdrawn: string[] = []
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"] as const) {
      const name = `queued-${sig}-${Date.now()}.mkv`
      const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
      const job = await queued(name)
      let localCode: number | undefined
      if (sig !== "SIGKILL") {
        const lp = Bun.spawn(["ffmpeg", ...slowEncode(c.storage, `local-${name}`)], {
          stdin: "ignore",
          stdout: "ignore",
          stderr: "pipe",
        })
        // As a media server sends it: to an ffmpeg that runs (before its handlers are set up it dies by the signal).
        const reader = lp.stderr.getReader()
        let seen = ""
        while (!seen.includes("Output #0")) seen += dec.decode((await reader.read()).value ?? new Uint8Array())
        lp.kill(sig)
        localCode = await lp.exited
      }
      const t0 = performance.now()
      shim.kill(sig)
      const code = await shim.exited
      const ms = performance.now() - t0
      const err = await text(shim.stderr)
      const ended = await endsCanceled(c, job.id)
      expect(ended.events.map((e) => e.status)).not.toContain("running")
      withdrawn.push(job.id)
      if (sig !== "SIGKILL") {
        expect({ sig, code, err }).toEqual({ sig, code: localCode!, err: "" })
        console.log(`${sig} while queued: exit ${code} (local ${localCode}) after ${ms.toFixed(0)} ms`)
      }
    }
    // The slot frees: none of the withdrawn jobs starts, none writes its file.
    expect((await c.client("cancel", [ahead.out.trim()])).code).toBe(0)
    await waitFor(async () => (await c.jobs()).every((j) => j.status === "canceled"), {
      timeoutMs: 15_000,
      what: "every job canceled",
    })
    await Bun.sleep(1000)
    for (const id of withdrawn) expect((await c.job(id)).events.map((e) => e.status)).not.toContain("running")
    expect(readdirSync(c.storage).filter((f) => f.startsWith("queued-"))).toEqual([])
  }, 120_000)

  test("a queued job whose caller was just killed never starts, even when a slot frees within the grace", async () => {
    const c = await cluster({ maxJobs: 1 })
    const ahead = (
      await c.client("submit", ["--detach", "--", ...slowEncode(c.clientMedia, `ahead-${Date.now()}.mkv`)])
    ).out.trim()
    await runningJob(c)
    const name = `raced-${Date.now()}.mkv`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
    const job = await waitFor(async () => (await c.jobs()).find((j) => j.status === "queued"), {
      timeoutMs: 15_000,
      what: "the caller's job queued",
    })
    // The job ahead stops at once (no stdin: SIGTERM), so the slot frees while the caller's grace runs.
    const cancel = c.client("cancel", [ahead])
    shim.kill("SIGKILL")
    expect((await cancel).code).toBe(0)
    const ended = await endsCanceled(c, job.id)
    expect(ended.events.map((e) => e.status)).not.toContain("running")
    expect(existsSync(join(c.storage, name))).toBe(false)
    console.log(
      `killed caller, slot freed at once: job ${job.id} ended ${ended.events.map((e) => e.status).join(" → ")}`,
    )
  }, 60_000)
})

describe("exit codes of the remote process", () => {
  test("exit 1, exit 255 and death by SIGSEGV reach the caller exactly, and are not retried as a worker death", async () => {
    const c = await cluster()
    const fake = join(c.dir, "fake-ffmpeg")
    // A fake ffmpeg only to inject a crash: it reads its mode from its first argument.
    writeFileSync(
      fake,
      '#!/bin/sh\ncase "$1" in segv) kill -SEGV $$ ;; code) echo "fake ffmpeg exiting $2" >&2; exit "$2" ;; esac\n',
    )
    chmodSync(fake, 0o755)
    await c.workers[0].stop("SIGTERM")
    // The fake reads its positional arguments: no -protocol_whitelist from the argument policy.
    await c.startWorker("worker1", { binaries: { ffmpeg: fake, ffprobe: "ffprobe" }, argument_policy: false })
    const segv = await c.run("ffmpeg", ["segv"])
    expect(segv.code).toBe(139)
    const e255 = await c.run("ffmpeg", ["code", "255"])
    expect(e255.code).toBe(255)
    expect(e255.err).toBe("fake ffmpeg exiting 255\n")
    const e1 = await c.run("ffmpeg", ["code", "1"])
    expect(e1.code).toBe(1)
    const jobs = await c.jobs()
    expect(jobs.map((j) => j.status)).toEqual(["failed", "failed", "failed"])
    for (const j of jobs) {
      const full = await c.job(j.id)
      expect(full.attempts).toBe(0)
      expect(terminal(full.events)).toHaveLength(1)
    }
  }, 60_000)
})

describe("drain", () => {
  test("SIGTERM to a worker lets its running job finish, takes no new job, then the worker exits 0", async () => {
    const c = await cluster({
      workerConfig: { min_drain_time_seconds: 0.5 },
      // The late probe waits for the encode, the drain and a new worker's start (its tool detection):
      // longer than the 5 s a probe may wait with no worker online, which is not what this test is about.
      coordinatorConfig: {
        ...FAST.coordinatorConfig,
        janitor: { ...FAST.coordinatorConfig!.janitor!, probe_pending_timeout: 60 },
      },
    })
    const name = `drain-${Date.now()}.mkv`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name, 3))
    await runningJob(c)
    const worker = c.workers[0]
    worker.proc.kill("SIGTERM")
    await worker.waitForLine(/draining/)
    const late = c.spawnProxy("ffprobe", ["-version"])
    const [code, wcode] = await Promise.all([shim.exited, worker.exited])
    expect(code).toBe(0)
    expect(wcode).toBe(0)
    const jobs = await c.jobs()
    const lateJob = jobs.find((j) => j.status !== "completed")
    expect(lateJob?.status).toBe("queued")
    expect(existsSync(join(c.storage, name))).toBe(true)
    // A fresh worker picks the queued job up.
    await c.startWorker("worker1")
    expect(await late.exited).toBe(0)
  }, 60_000)
})

describe("load", () => {
  test("200 probes through 3 workers with 2 probe slots each: never more than 2 at once per worker, each completes once", async () => {
    // ffprobe jobs are probes: they run in the probe slots (max_probe_jobs), apart from max_jobs.
    // This test is about slots and exactly-once, not about noticing faults fast. It timed out on a slow
    // CI run (it takes 13 s alone); the likely cause, not confirmed, is FAST's thresholds (a job's worker
    // lost after 1.25 s without a heartbeat, an assignment re-queued after 2 s) failing or re-running jobs
    // of a live worker the loaded machine starved for a moment. So it keeps the production heartbeats and
    // puts the placement deadlines far above any stall: a job re-run or failed here is a real bug.
    const c = await cluster({
      workers: 3,
      maxJobs: 2,
      workerConfig: { max_probe_jobs: 2 },
      coordinatorConfig: {
        scheduling: { poll_gone_seconds: 30 },
        janitor: { job_assignment_timeout: 60, probe_pending_timeout: 120 },
      },
    })
    const ids: string[] = []
    const batch = async (n: number) => {
      const r = await c.exec(
        [
          BIN,
          "client",
          "submit",
          "--config",
          c.clientConfig,
          "--detach",
          "--binary",
          "ffprobe",
          "--",
          "-v",
          "error",
          "-f",
          "lavfi",
          "-i",
          `sine=duration=0.${(n % 9) + 1}`,
          "-show_entries",
          "format=duration",
        ],
        {},
      )
      if (r.code !== 0) throw new Error(r.err)
      ids.push(r.out.trim())
    }
    for (let i = 0; i < 200; i += 10) await Promise.all(Array.from({ length: 10 }, (_, k) => batch(i + k)))
    // Every job ends (completed, failed or canceled): a failed one is reported at once, not after the deadline.
    let last: Awaited<ReturnType<Cluster["jobs"]>> = []
    const jobs = await waitFor(
      async () => {
        last = await c.jobs()
        return last.length === 200 && last.every((j) => TERMINAL.has(j.status)) ? last : undefined
      },
      { timeoutMs: 240_000, intervalMs: 500, what: "200 ended jobs" },
    ).catch((err) => {
      throw new Error(`${err.message}; ${last.length} jobs listed; not completed:\n${notCompleted(last, ids)}`)
    })
    expect({ notCompleted: notCompleted(jobs, ids) }).toEqual({ notCompleted: "" })
    expect(new Set(jobs.map((j) => j.id))).toEqual(new Set(ids))
    for (const w of c.workerIds) {
      const spans = jobs
        .filter((j) => j.workerId === w)
        .flatMap(
          (j) =>
            [
              [j.startedAt!, 1],
              [j.finishedAt!, -1],
            ] as const,
        )
      // Ends sort before starts at the same instant: a slot freed and refilled in one millisecond is not an overlap.
      spans.sort((a, b) => a[0] - b[0] || a[1] - b[1])
      let now = 0
      let max = 0
      for (const [, d] of spans) max = Math.max(max, (now += d))
      expect({ worker: w, max }).toEqual({ worker: w, max: Math.min(2, max) })
    }
    expect(jobs.filter((j) => j.attempts !== 0).map((j) => `${j.id} attempts=${j.attempts}`)).toEqual([])
  }, 300_000)
})

/** One line per submitted job that is not completed (missing from the list, or in another state), for a failure's message. */
function notCompleted(jobs: Awaited<ReturnType<Cluster["jobs"]>>, ids: string[]): string {
  const byId = new Map(jobs.map((j) => [j.id, j]))
  return ids
    .flatMap((id) => {
      const j = byId.get(id)
      if (!j) return [`${id} not listed`]
      if (j.status === "completed") return []
      return [`${id} ${j.status} worker=${j.workerId ?? "-"} attempts=${j.attempts} error=${j.error ?? "-"}`]
    })
    .join("\n")
}

describe("more ways a job ends", () => {
  test("a reader that closes the shim's stdout cancels the job and the remote ffmpeg stops", async () => {
    const c = await cluster()
    const marker = `sine=frequency=431:duration=120`
    const shim = c.spawnProxy("ffmpeg", ["-v", "error", "-f", "lavfi", "-i", marker, "-f", "wav", "pipe:1"])
    const reader = shim.stdout.getReader()
    await reader.read()
    await waitFor(() => (pidsOf(marker).length > 1 ? true : undefined), { what: "the remote ffmpeg" })
    reader.releaseLock()
    await shim.stdout.cancel()
    const code = await shim.exited
    expect(code).toBe(1)
    expect(await text(shim.stderr)).toMatch(/^dffmpeg: the reader closed our standard output; canceled job/m)
    await waitFor(() => (pidsOf(marker).length === 0 ? true : undefined), {
      timeoutMs: 5000,
      what: "the remote ffmpeg to stop",
    })
    const [job] = await c.jobs()
    await waitFor(async () => ((await c.job(job.id)).status === "canceled" ? true : undefined), {
      what: "the job to end canceled",
    })
  }, 60_000)

  test("a detached job can be attached later: its output is replayed from the start and the exit code is exact", async () => {
    const c = await cluster()
    const args = ["-hide_banner", "-f", "lavfi", "-i", "sine=duration=1", "-f", "null", "-", "-nonexistent_option_xyz"]
    const local = await c.local("ffmpeg", args)
    const d = await c.exec(
      [BIN, "client", "submit", "--config", c.clientConfig, "--detach", "--json", "--", ...args],
      {},
    )
    const job = JSON.parse(d.out)
    expect(job.attached).toBe(false)
    await waitFor(async () => ((await c.job(job.id)).status === "failed" ? true : undefined), {
      what: "the job to end",
    })
    const a = await c.exec([BIN, "client", "attach", "--config", c.clientConfig, job.id], {})
    expect({ code: a.code, err: a.err }).toEqual({ code: local.code, err: local.err })
    // `client submit` without --detach behaves like the proxy, exit code included.
    const s = await c.exec([BIN, "client", "submit", "--config", c.clientConfig, "--", ...args], {})
    expect({ code: s.code, err: s.err }).toEqual({ code: local.code, err: local.err })
    expect(a.err).toBe(local.err)
  }, 60_000)

  test("second SIGTERM to a draining worker stops its job like a lost worker's, with a clear reason", async () => {
    const c = await cluster({ workerConfig: { min_drain_time_seconds: 0.2 } })
    const name = `force-${Date.now()}.mkv`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
    await runningJob(c)
    const worker = c.workers[0]
    worker.proc.kill("SIGTERM")
    await worker.waitForLine(/draining/)
    worker.proc.kill("SIGTERM")
    const [code, wcode] = await Promise.all([shim.exited, worker.exited])
    expect(wcode).toBe(0)
    expect(code).toBe(1)
    expect(await text(shim.stderr)).toMatch(
      /^dffmpeg: job \w{26} failed: worker worker1 was shut down while running the job/m,
    )
    expect(pidsOf(`mnt/${name}`)).toEqual([])
  }, 60_000)

  test("a path variable whose directory disappears is no longer advertised, and is again when it comes back", async () => {
    const c = await cluster({ workerConfig: { mount_check_interval_seconds: 0.2 } })
    const { renameSync } = await import("node:fs")
    const mnt = c.workerMedia("worker1")
    const probe = ["-v", "error", "-show_entries", "format=duration", join(c.clientMedia, "nothing-here.mkv")]
    renameSync(mnt, mnt + ".away")
    await c.workers[0].waitForLine(/path variable unavailable/)
    // The only online worker does not advertise $Media: a job that needs it fails at once, saying so.
    const away = await c.run("ffprobe", probe)
    expect(away.code).toBe(1)
    expect(away.err).toMatch(/^dffmpeg: job \w{26} failed: no online worker can run it \(needs ffprobe, \$Media\)$/m)
    renameSync(mnt + ".away", mnt)
    await c.workers[0].waitForLine(/path variable available again/)
    // Advertised again: the job now runs (and fails as local ffprobe would: the file does not exist).
    const back = await waitFor(
      async () => {
        const r = await c.run("ffprobe", probe)
        return /No such file or directory/.test(r.err) ? r : undefined
      },
      { what: "the path to be advertised again" },
    )
    expect(back.code).toBe(1)
  }, 60_000)

  test("coordinator SIGTERM: /health answers 503 during shutdown_delay_seconds, then it stops", async () => {
    const c = await cluster({ coordinatorConfig: { ...FAST.coordinatorConfig, shutdown_delay_seconds: 1 } })
    expect((await fetch(`${c.url}/health`)).status).toBe(200)
    c.coordinator.proc.kill("SIGTERM")
    const res = await waitFor(
      async () => {
        const r = await fetch(`${c.url}/health`).catch(() => undefined)
        return r?.status === 503 ? r : undefined
      },
      { timeoutMs: 3000, intervalMs: 20, what: "a 503 from /health" },
    )
    expect(((await res.json()) as { status: string }).status).toBe("shutting_down")
    expect(await c.coordinator.exited).toBe(0)
  }, 60_000)
})

describe("fencing and racing janitors", () => {
  test("a worker that cannot reach the coordinator stops its ffmpeg itself, before the job could be given away", async () => {
    const c = await cluster()
    const name = `selffence-${Date.now()}.mkv`
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, name))
    const job = await runningJob(c)
    const ffmpeg = await waitFor(() => (pidsOf(`mnt/${name}`).length ? pidsOf(`mnt/${name}`) : undefined), {
      what: "the remote ffmpeg",
    })
    c.coordinator.proc.kill("SIGSTOP")
    try {
      // 2 × heartbeat_interval (0.5 s) without an acknowledged heartbeat, then q/SIGTERM/SIGKILL.
      const ms = await gone(ffmpeg, 8000)
      console.log(`self-fencing: ffmpeg stopped ${ms.toFixed(0)} ms after the coordinator froze`)
      expect(c.workers[0].log()).toMatch(/self-fencing/)
    } finally {
      c.coordinator.proc.kill("SIGCONT")
    }
    expect(await shim.exited).toBe(1)
    // Failed, or canceled when the thawed coordinator's janitor first took the caller for gone (its
    // stream went unheard while the coordinator was frozen): either way ended with the worker's reason.
    expect(await text(shim.stderr)).toMatch(
      /^dffmpeg: job \w{26} (failed|was canceled): worker worker1 (lost contact with the coordinator|stopped responding)/m,
    )
    const after = await c.job(job.id)
    expect(["failed", "canceled"]).toContain(after.status)
    expect(terminal(after.events)).toHaveLength(1)
  }, 60_000)

  test("two coordinators' janitors on one database race for a lost job: it fails exactly once", async () => {
    const c = await cluster()
    const cfg = join(c.dir, "coordinator2.yaml")
    writeFileSync(
      cfg,
      JSON.stringify({
        host: "127.0.0.1",
        port: 0,
        database: { path: join(c.dir, "coordinator.db") },
        ...FAST.coordinatorConfig,
      }),
    )
    const second = new Proc(
      "coordinator2",
      Bun.spawn([BIN, "coordinator", "--config", cfg], {
        cwd: c.dir,
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      }),
    )
    try {
      await second.waitForLine(/listening on/)
      const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, `race-${Date.now()}.mkv`))
      const job = await runningJob(c)
      // Past both coordinators' start-up grace, so both janitors reap.
      await Bun.sleep(2200)
      c.workers[0].proc.kill("SIGKILL")
      expect(await shim.exited).toBe(1)
      await Bun.sleep(1000) // both janitors have run several passes over the lost job
      const after = await c.job(job.id)
      expect(after.status).toBe("failed")
      expect(terminal(after.events)).toHaveLength(1)
      expect(second.log()).not.toMatch(/ERROR/)
      expect(c.coordinator.log()).not.toMatch(/ERROR/)
    } finally {
      await second.stop("SIGTERM")
    }
  }, 60_000)

  test("a job that no online worker can run fails at once, saying what it needs", async () => {
    const c = await cluster({
      coordinatorConfig: {
        ...FAST.coordinatorConfig,
        janitor: { ...(FAST.coordinatorConfig!.janitor as object), job_pending_timeout: 1 },
      },
    })
    await c.workers[0].stop("SIGTERM")
    await c.startWorker("worker1", { binaries: { ffmpeg: "ffmpeg" } })
    const r = await c.run("ffprobe", ["-version"])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^dffmpeg: job \w{26} failed: no online worker can run it \(needs ffprobe\)$/m)
  }, 60_000)

  test("the proxy's job is never given to a worker that writes no path tokens (an older one), and says so", async () => {
    const c = await cluster({
      coordinatorConfig: {
        ...FAST.coordinatorConfig,
        janitor: { ...(FAST.coordinatorConfig!.janitor as object), job_pending_timeout: 1 },
      },
    })
    await c.workers[0].stop("SIGTERM")
    // An older worker: online with the binary, but no `pathTokens` capability in its registration.
    await c.addUser("old", "worker")
    const w = apiFor(c, "old")
    await w.json("POST", "/api/v1/worker/register", {
      json: { binaries: ["ffprobe"], paths: [], maxJobs: 1, version: "0.1.0", capabilities: {} },
    })
    const { verify } = await w.json<{ verify: string }>("GET", "/api/v1/worker/poll", { query: { wait: 0 } })
    await w.json("POST", "/api/v1/worker/verify", { json: { token: verify } })
    const offered: string[] = []
    let running = true
    // Its polls keep it online while the proxied job waits; none may offer it the job.
    const polling = (async () => {
      while (running) {
        const r = await w.json<{ jobs: { id: string }[] }>("GET", "/api/v1/worker/poll", { query: { wait: 0.2 } })
        offered.push(...r.jobs.map((j) => j.id))
      }
    })()
    const r = await c.run("ffprobe", ["-version"])
    running = false
    await polling
    expect(r.code).toBe(1)
    expect(r.err).toMatch(
      /^dffmpeg: job \w{26} failed: no online worker can run it \(needs ffprobe, path tokens \(a worker as new as its caller\)\)$/m,
    )
    expect(offered).toEqual([])
  }, 60_000)
})
