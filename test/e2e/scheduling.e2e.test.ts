import { afterEach, describe, expect, test } from "bun:test"
import { join } from "node:path"
import { BIN, waitFor } from "../helpers/bin.ts"
import { Cluster, type ClusterOptions } from "../helpers/cluster.ts"
import { slowEncode } from "../helpers/media.ts"

/**
 * Issue 12's scheduling with the compiled binary as real processes: probes in their own lane, priorities
 * with one slot, a worker killed with kill -9 left alone, unplaceable probes and unrunnable jobs failing
 * fast with one `dffmpeg:` line. Timings are printed for the record, never asserted.
 */
const FAST = {
  heartbeat_interval: 0.5,
  registration_interval: 1,
  janitor: { interval: 0.25, jitter: 0.05, job_assignment_timeout: 2, job_pending_timeout: 20 },
}

let clusters: Cluster[] = []
async function cluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const c = await Cluster.start({ ...opts, coordinatorConfig: { ...FAST, ...opts.coordinatorConfig } })
  clusters.push(c)
  return c
}
afterEach(async () => {
  await Promise.all(clusters.map((c) => c.stop()))
  clusters = []
})

/** A short real encode to nothing. */
const quick = ["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=0.2", "-f", "null", "-"]

const running = (c: Cluster, n: number) =>
  waitFor(
    async () => {
      const jobs = (await c.jobs()).filter((j) => j.status === "running")
      return jobs.length >= n ? jobs : undefined
    },
    { timeoutMs: 20_000, what: `${n} running job(s)` },
  )

/** Submits a detached job as client1; returns its id. */
async function detached(c: Cluster, args: string[]): Promise<string> {
  const r = await c.exec([BIN, "client", "submit", "--config", c.clientConfig, "--detach", "--", ...args], {})
  if (r.code !== 0) throw new Error(`submit failed: ${r.err}`)
  return r.out.trim()
}

describe("lanes", () => {
  test("a probe completes while every transcode slot is busy", async () => {
    const c = await cluster({ maxJobs: 1 })
    const shim = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, `busy-${Date.now()}.mkv`))
    await running(c, 1)
    const t0 = performance.now()
    const probe = await c.run("ffprobe", ["-version"])
    const probeMs = performance.now() - t0
    const info = await c.run("ffmpeg", ["-hide_banner", "-encoders"])
    expect(probe.code).toBe(0)
    expect(probe.out).toBe((await c.local("ffprobe", ["-version"])).out)
    expect(info.code).toBe(0)
    expect(info.out).toBe((await c.local("ffmpeg", ["-hide_banner", "-encoders"])).out)
    // The transcode still holds the only slot: the probe did not wait for it.
    expect((await c.jobs()).filter((j) => j.status === "running")).toHaveLength(1)
    console.log(`ffprobe -version with the only transcode slot busy: ${probeMs.toFixed(0)} ms`)
    shim.kill("SIGINT")
    await shim.exited
  }, 60_000)

  test("a probe that no worker can take fails within probe_pending_timeout, as one dffmpeg: line", async () => {
    const c = await cluster({
      startWorkers: false,
      coordinatorConfig: { janitor: { ...FAST.janitor, probe_pending_timeout: 1 } },
    })
    const t0 = performance.now()
    const r = await c.run("ffprobe", ["-version"])
    const ms = performance.now() - t0
    expect(r.code).toBe(1)
    expect(r.out).toBe("")
    expect(r.err).toMatch(
      /^dffmpeg: job \w{26} failed: no online worker took the probe within 1 s \(janitor\.probe_pending_timeout\): no worker is online\n$/,
    )
    console.log(`probe with no worker: failed after ${ms.toFixed(0)} ms (probe_pending_timeout 1 s)`)
  }, 60_000)
})

describe("a job waiting for a busy worker", () => {
  test("says so on a terminal (script(1) gives the proxy one), and only there", async () => {
    const c = await cluster({ maxJobs: 1 })
    const blocker = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, `tty-${Date.now()}.mkv`))
    const [first] = await running(c, 1)
    const cmd = [join(c.binDir, "ffmpeg"), ...quick].map((a) => `'${a}'`).join(" ")
    const tty = c.exec(["script", "-qec", cmd, "/dev/null"], { env: { DFFMPEG_CLIENT_CONFIG: c.clientConfig } })
    await waitFor(async () => (await c.jobs()).some((j) => j.status === "queued"), { what: "the job to be queued" })
    const pipe = c.run("ffmpeg", quick)
    await waitFor(async () => (await c.jobs()).filter((j) => j.status === "queued").length === 2, {
      what: "both jobs to be queued",
    })
    expect((await c.admin(["jobs", "cancel", first.id])).code).toBe(0)
    const shown = await tty
    expect(shown.code).toBe(0)
    expect(shown.out).toContain("dffmpeg: waiting for a free slot: the worker that can run it is busy\r\n")
    const piped = await pipe
    expect(piped.code).toBe(0)
    expect(piped.err).toBe("")
    await blocker.exited
  }, 60_000)
})

describe("priorities", () => {
  test("with one slot, queued batch jobs run after a later interactive one; the waiting proxy prints nothing of its own", async () => {
    const c = await cluster({
      maxJobs: 1,
      coordinatorConfig: {
        scheduling: {
          priorities: { client1: "batch" },
          rules: [{ match: { args_contain: ["-f", "hls"] }, priority: "interactive" }],
        },
      },
    })
    const blocker = c.spawnProxy("ffmpeg", slowEncode(c.clientMedia, `block-${Date.now()}.mkv`))
    const [first] = await running(c, 1)
    const batch = [await detached(c, quick), await detached(c, quick)]
    const live = c.run("ffmpeg", [
      ...quick.slice(0, -3),
      "-c:v",
      "libx264",
      "-preset",
      "ultrafast",
      "-f",
      "hls",
      "-hls_time",
      "1",
      join(c.clientMedia, `live-${Date.now()}.m3u8`),
    ])
    // Queued behind the busy slot, after both batch jobs.
    const liveId = await waitFor(
      async () => (await c.jobs()).find((j) => j.status === "queued" && !batch.includes(j.id))?.id,
      { what: "the interactive job to be queued" },
    )
    const cancel = await c.admin(["jobs", "cancel", first.id])
    expect(cancel.code).toBe(0)
    const r = await live
    expect(r.code).toBe(0)
    expect(r.err).toBe("")
    const done = await waitFor(
      async () => {
        const jobs = await c.jobs()
        const all = [liveId, ...batch].map((id) => jobs.find((j) => j.id === id)!)
        return all.every((j) => j.status === "completed") ? all : undefined
      },
      { timeoutMs: 30_000, what: "every queued job to complete" },
    ).catch(async (err) => {
      console.log(JSON.stringify(await c.jobs(), null, 1), c.logs())
      throw err
    })
    const [interactive, ...batches] = done
    for (const b of batches) expect(interactive.startedAt!).toBeLessThan(b.startedAt!)
    await blocker.exited
  }, 90_000)
})

describe("fast failure", () => {
  test("a job that no online worker could ever run fails at once, naming what is missing", async () => {
    const c = await cluster({
      coordinatorConfig: {
        scheduling: { rules: [{ match: { args_contain: ["-c:v", "libx264"] }, labels: { gpu: "nvidia" } }] },
      },
    })
    const t0 = performance.now()
    const r = await c.run("ffmpeg", ["-f", "lavfi", "-i", "testsrc=duration=1", "-c:v", "libx264", "-f", "null", "-"])
    const ms = performance.now() - t0
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^dffmpeg: job \w{26} failed: no online worker has label gpu=nvidia\n$/)
    console.log(`a job no worker can run: failed after ${ms.toFixed(0)} ms`)
  }, 60_000)

  test("a worker killed with kill -9 gets a job at most once, then never again until it returns", async () => {
    // Reaping takes 22.5 s here (registration every 15 s): what keeps the dead worker out is its closed poll.
    const c = await cluster({
      workers: 2,
      coordinatorConfig: { registration_interval: 15, heartbeat_interval: 5 },
    })
    const dead = "worker1"
    c.workers[0].proc.kill("SIGKILL")
    const killedAt = Date.now()
    await c.workers[0].proc.exited
    // Submitted at once, within poll_gone_seconds of the drop: worker1 still counts, but one with an open
    // poll goes first; were it given the job, its assignment would time out and bar it (after the
    // coordinator's start-up grace), never to be given the job again.
    const early = await c.run("ffprobe", ["-version"])
    expect(early.code).toBe(0)
    const earlyMs = Date.now() - killedAt
    const closedAt = await waitFor(
      async () => {
        const r = await c.admin(["workers", "show", dead, "--json"])
        const w = JSON.parse(r.out) as { pollClosedAt?: number | null; status: string }
        expect(w.status).toBe("online")
        return w.pollClosedAt ?? undefined
      },
      { what: "the coordinator to see worker1's poll connection close" },
    )
    console.log(
      `kill -9: poll seen closed ${closedAt - killedAt} ms after the kill; the early probe took ${earlyMs} ms`,
    )
    // Past poll_gone_seconds (2 s) from then, by the coordinator's own clock (the same host's).
    await waitFor(() => Date.now() - closedAt > 2_100, { timeoutMs: 10_000, what: "poll_gone_seconds to pass" })
    for (let i = 0; i < 4; i++) expect((await c.run("ffprobe", ["-version"])).code).toBe(0)
    expect((await c.run("ffmpeg", quick)).code).toBe(0)
    const jobs = await c.jobs()
    const timelines = await Promise.all(jobs.map((j) => c.job(j.id)))
    // Once worker1's poll is gone, worker2 is the info commands' reference worker (the scheduler's
    // liveness): the first -version after that is asked of it, the next ones are answered from its cached
    // answer (no worker); none waits for, or is pinned to, the dead one.
    let cached = 0
    for (const t of timelines) {
      const toDead = t.events.filter((e) => e.status === "assigned" && e.workerId === dead)
      expect(toDead.length).toBeLessThanOrEqual(1)
      expect(t.status).toBe("completed")
      const answered = t.events.some((e) => e.reason?.startsWith("answered from the info cache: ffprobe"))
      if (answered) cached++
      expect(t.workerId).toBe(answered ? null : "worker2")
    }
    expect(cached).toBeGreaterThanOrEqual(3)
    // Only the early job can have been offered to the dead worker.
    const late = timelines.filter((t) => !t.events.some((e) => e.workerId === dead))
    expect(late.length).toBeGreaterThanOrEqual(timelines.length - 1)
    // Back: it polls again and, idle with the lower id, takes the next job.
    const t0 = Date.now()
    await c.startWorker(dead)
    console.log(`restarted worker registered after ${Date.now() - t0} ms`)
    const back = await waitFor(
      async () => {
        const r = await c.run("ffprobe", ["-version"])
        expect(r.code).toBe(0)
        const [newest] = await c.jobs()
        return newest.workerId === dead ? newest : undefined
      },
      { timeoutMs: 20_000, what: "a job on the returned worker" },
    )
    expect(back.status).toBe("completed")
  }, 90_000)
})
