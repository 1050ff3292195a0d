import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { Database } from "bun:sqlite"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { waitFor } from "../helpers/bin.ts"
import { md5 } from "../helpers/media.ts"
import { Cluster } from "../helpers/cluster.ts"
import { relay } from "../helpers/mitm.ts"

/**
 * The streaming relay (issue 11 item 6): attached output flows worker → caller through a bounded window
 * of unacknowledged rows, a detached job keeps a capped prefix. The coordinator's database is read
 * directly (WAL: a second reader never blocks it) to check what it holds for the job.
 */

const WINDOW_MB = 8
const TAIL_KB = 64
const MiB = 1024 * 1024
// One upload (≤ 4 MiB of frames) may land in a window that is not yet full.
const HELD_MAX = WINDOW_MB * MiB + 4 * MiB + TAIL_KB * 1024

/** ~50 MB of raw video on stdout: 640×360 rgb24 frames (691,200 bytes each). */
const rawvideo = (frames: number) => [
  "-v",
  "error",
  "-f",
  "lavfi",
  "-i",
  `testsrc=size=640x360:rate=25`,
  "-frames:v",
  String(frames),
  "-f",
  "rawvideo",
  "-pix_fmt",
  "rgb24",
  "pipe:1",
]

let c: Cluster
let db: Database
beforeAll(async () => {
  c = await Cluster.start({
    workers: 1,
    coordinatorConfig: { relay: { window_mb: WINDOW_MB, stderr_tail_kb: TAIL_KB, detached_output_mb: 1 } },
  })
  db = new Database(join(c.dir, "coordinator.db"), { readonly: true })
})
afterAll(async () => {
  db?.close()
  await c?.stop()
})

/**
 * Bytes the coordinator holds for the job, by stream (1 stdout, 2 stderr): stored in its rows, or held in
 * its memory (a held row's `held` is its payload's size).
 */
function held(job: string): { stdout: number; stderr: number } {
  const rows = db
    .query("SELECT stream, coalesce(sum(length(data) + held), 0) AS n FROM job_output WHERE job_id = ? GROUP BY stream")
    .all(job) as { stream: number; n: number }[]
  return {
    stdout: rows.find((r) => r.stream === 1)?.n ?? 0,
    stderr: rows.find((r) => r.stream === 2)?.n ?? 0,
  }
}
const total = (h: { stdout: number; stderr: number }) => h.stdout + h.stderr

async function runningJobId(): Promise<string> {
  return waitFor(
    async () => {
      const jobs = await c.jobs()
      return jobs.find((j) => j.status === "running")?.id
    },
    { what: "a running job" },
  )
}

/** Reads a process's stdout as it comes, `onChunk` seeing the running total. */
async function collect(stream: ReadableStream<Uint8Array>, onChunk?: (got: number) => Promise<void> | void) {
  const parts: Uint8Array[] = []
  let got = 0
  for await (const chunk of stream) {
    parts.push(chunk)
    got += chunk.length
    await onChunk?.(got)
  }
  return Buffer.concat(parts)
}

describe("attached output through the relay", () => {
  test("a ~50 MB binary pipe arrives md5-equal; the coordinator never holds more than the window, and nothing once acknowledged", async () => {
    const args = rawvideo(72)
    const local = await c.local("ffmpeg", args)
    expect(local.stdout.length).toBe(72 * 691_200)
    const p = c.spawnProxy("ffmpeg", args)
    p.stdin.end()
    let job: string | undefined
    let peak = 0
    const out = await collect(p.stdout, () => {
      job ??= (db.query("SELECT id FROM jobs WHERE status = 'running'").get() as { id: string } | null)?.id
      if (job) peak = Math.max(peak, total(held(job)))
    })
    expect(await p.exited).toBe(0)
    expect(await new Response(p.stderr).text()).toBe("")
    expect(out.length).toBe(local.stdout.length)
    expect(md5(out)).toBe(md5(local.stdout))
    expect(job).toBeDefined()
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(HELD_MAX)
    // The caller's last acknowledgement came after the outcome: no stdout is left for the retention period.
    expect(held(job!).stdout).toBe(0)
    expect((await c.job(job!)).status).toBe("completed")
  }, 60_000)

  test("a caller that stops reading back-pressures the worker within the window; once it reads again nothing is lost", async () => {
    const args = rawvideo(72)
    const local = await c.local("ffmpeg", args)
    const p = c.spawnProxy("ffmpeg", args)
    p.stdin.end()
    const reader = p.stdout.getReader()
    const first = await reader.read()
    const job = await runningJobId()
    // Not reading: the proxy blocks on its stdout, stops acknowledging, and the window fills (up to
    // where the next upload, at most 4 MiB, would pass it).
    await waitFor(() => total(held(job)) >= (WINDOW_MB - 4) * MiB, { what: "a full window", timeoutMs: 20_000 })
    // While it stays full the worker is held back: the job runs on, its stored output stays bounded.
    const samples: number[] = []
    await waitFor(
      () => {
        samples.push(total(held(job)))
        return samples.length >= 10
      },
      { intervalMs: 100 },
    )
    expect(Math.max(...samples)).toBeLessThanOrEqual(HELD_MAX)
    expect((await c.job(job)).status).toBe("running")
    const parts: Uint8Array[] = [first.value!]
    for (;;) {
      const r = await reader.read()
      if (r.done) break
      parts.push(r.value)
    }
    expect(await p.exited).toBe(0)
    const out = Buffer.concat(parts)
    expect(out.length).toBe(local.stdout.length)
    expect(md5(out)).toBe(md5(local.stdout))
  }, 60_000)

  test("a caller killed while its window is full: the job still ends (canceled) and its worker is free", async () => {
    const p = c.spawnProxy("ffmpeg", rawvideo(72))
    p.stdin.end()
    const job = await runningJobId()
    await waitFor(() => total(held(job)) >= (WINDOW_MB - 4) * MiB, { what: "a full window", timeoutMs: 20_000 })
    p.kill("SIGKILL")
    await p.exited
    // The worker's uploads no longer wait for acknowledgements nobody will send: its exit is stored.
    await waitFor(async () => (await c.job(job)).status === "canceled", { what: "the job's end", timeoutMs: 20_000 })
    expect(total(held(job))).toBeLessThanOrEqual(HELD_MAX)
    const after = await c.run("ffmpeg", rawvideo(2))
    expect(after.code).toBe(0)
    expect(after.stdout.length).toBe(2 * 691_200)
  }, 60_000)

  test("a coordinator killed mid-stream: the caller resumes after what it took, md5 still equal", async () => {
    const args = rawvideo(72)
    const local = await c.local("ffmpeg", args)
    const p = c.spawnProxy("ffmpeg", args)
    p.stdin.end()
    let restarted: Promise<unknown> | undefined
    const out = await collect(p.stdout, async (got) => {
      // A third of the way in, while the window holds unacknowledged bytes.
      if (!restarted && got > local.stdout.length / 3) restarted = c.restartCoordinator("SIGKILL")
    })
    await restarted
    expect(await p.exited).toBe(0)
    expect(await new Response(p.stderr).text()).toBe("")
    expect(out.length).toBe(local.stdout.length)
    expect(md5(out)).toBe(md5(local.stdout))
  }, 60_000)
})

describe("held output and a coordinator restart", () => {
  test("a coordinator killed while it holds output its caller has certainly not received: the worker sends it again, md5 equal", async () => {
    // What can sit in the two loopback socket buffers between the coordinator and a caller that is not
    // reading; rows held beyond that were certainly never delivered, so only the worker can bring them back.
    const maxOf = (f: string) => Number(readFileSync(`/proc/sys/net/ipv4/${f}`, "utf8").trim().split(/\s+/)[2])
    const buffers = maxOf("tcp_rmem") + maxOf("tcp_wmem")
    const undelivered = 16 * MiB
    const windowMb = Math.ceil((buffers + undelivered) / MiB) + 8
    const frames = Math.ceil(((windowMb + 32) * MiB) / 691_200)
    // The memory budget is sized with the window, whatever these buffers are on this machine.
    const cc = await Cluster.start({
      workers: 1,
      coordinatorConfig: { relay: { window_mb: windowMb, memory_mb: windowMb + 16 } },
    })
    const cdb = new Database(join(cc.dir, "coordinator.db"), { readonly: true })
    /** Bytes of the job's rows whose payload only the coordinator's memory has. */
    const inMemory = (job: string) =>
      (cdb.query("SELECT coalesce(sum(held), 0) AS n FROM job_output WHERE job_id = ?").get(job) as { n: number }).n
    try {
      const args = rawvideo(frames)
      const local = await cc.local("ffmpeg", args)
      const p = cc.spawnProxy("ffmpeg", args)
      p.stdin.end()
      const out = collect(p.stdout)
      const job = await waitFor(
        () => (cdb.query("SELECT id FROM jobs WHERE status = 'running'").get() as { id: string } | null)?.id,
        { what: "a running job" },
      )
      // The caller stops: no more reads, no more acknowledgements; the window fills with held rows.
      p.kill("SIGSTOP")
      await waitFor(() => inMemory(job) >= buffers + undelivered, {
        what: "held rows past the buffers",
        timeoutMs: 30_000,
      })
      await cc.restartCoordinator("SIGKILL")
      p.kill("SIGCONT")
      expect(await p.exited).toBe(0)
      expect(await new Response(p.stderr).text()).toBe("")
      const got = await out
      expect(got.length).toBe(local.stdout.length)
      expect(md5(got)).toBe(md5(local.stdout))
      // The bytes after what the caller had came from the worker's kept bodies, not from anywhere else.
      expect(cc.coordinator.log()).toContain("held output lost in a restart; the worker sends it again")
      expect((await cc.job(job)).status).toBe("completed")
    } finally {
      cdb.close()
      await cc.stop()
    }
  }, 90_000)
})

describe("a dropped caller connection", () => {
  test("the caller's stream cut mid-output: it re-opens after what it wrote, md5 equal", async () => {
    // A relay between the parts that cuts the caller's first stream after 20 MB.
    let target = 0
    let cuts = 0
    const opened: string[] = []
    const relayServer = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      idleTimeout: 0,
      async fetch(req) {
        const { res, headers } = await relay(req, target)
        const url = new URL(req.url)
        const stream = url.search.includes("attach=1") || url.pathname.endsWith("/stream")
        if (!stream || !res.body) return new Response(res.body, { status: res.status, headers })
        opened.push(`${req.method} ${url.pathname}${url.search}`)
        if (cuts++ > 0) return new Response(res.body, { status: res.status, headers })
        const reader = res.body.getReader()
        let sent = 0
        const cut = new ReadableStream<Uint8Array>({
          async pull(ctl) {
            const r = await reader.read()
            if (r.done) return ctl.close()
            sent += r.value.length
            if (sent > 20e6) {
              void reader.cancel()
              return ctl.error(new Error("cut"))
            }
            ctl.enqueue(r.value)
          },
        })
        return new Response(cut, { status: res.status, headers })
      },
    })
    const cc = await Cluster.start({
      workers: 1,
      link: (port) => {
        target = port
        return { port: relayServer.port }
      },
    })
    try {
      const args = rawvideo(72)
      const local = await cc.local("ffmpeg", args)
      const r = await cc.run("ffmpeg", args)
      expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: "" })
      expect(r.stdout.length).toBe(local.stdout.length)
      expect(md5(r.stdout)).toBe(md5(local.stdout))
      expect(opened.length).toBeGreaterThanOrEqual(2)
      expect(opened[1]).toMatch(/\/stream\?after=[1-9]/)
    } finally {
      await cc.stop()
      relayServer.stop(true)
    }
  }, 60_000)
})

describe("detached output", () => {
  test("over relay.detached_output_mb: the job succeeds, the marker says how much was dropped, attach and logs show it", async () => {
    const args = rawvideo(5) // 3.4 MB against a 1 MiB cap
    const sub = await c.client("submit", ["--detach", "--", ...args])
    expect(sub.code).toBe(0)
    const job = sub.out.trim()
    await waitFor(async () => (await c.job(job)).status === "completed", { what: "the job's end", timeoutMs: 20_000 })
    const dropped = 5 * 691_200 - 1 * MiB
    const marker = `dffmpeg: output truncated: ${dropped} bytes of stdout dropped past relay.detached_output_mb (${MiB} bytes)\n`
    const attached = await c.client("attach", [job])
    expect(attached.code).toBe(0)
    expect(attached.stdout.length).toBe(MiB)
    expect(attached.err).toBe(marker)
    const local = await c.local("ffmpeg", args)
    // What was kept is the output's exact beginning.
    expect(md5(attached.stdout)).toBe(md5(local.stdout.subarray(0, MiB)))
    await c.enableAdmin()
    const logs = await c.remote(["jobs", "logs", job])
    expect(logs.code).toBe(0)
    expect(logs.out).toContain(marker)
    expect(total(held(job))).toBeLessThanOrEqual(MiB + marker.length)
  }, 60_000)
})
