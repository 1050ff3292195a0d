import { afterAll, beforeAll, expect, test } from "bun:test"
import { waitFor } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { freshDatabase } from "../helpers/databases.ts"
import { md5 } from "../helpers/media.ts"

/**
 * Two coordinator processes on one PostgreSQL database; the proxy and the workers list both (in
 * different orders) and fail over when one dies (docs/protocol.md, "Several coordinators").
 */

/** Raw video on stdout, produced at its frame rate (`-re`): 320×240 rgb24, 230,400 bytes a frame, 25 a second. */
const rawvideo = (frames: number) => [
  "-v",
  "error",
  "-re",
  "-f",
  "lavfi",
  "-i",
  "testsrc=size=320x240:rate=25",
  "-frames:v",
  String(frames),
  "-f",
  "rawvideo",
  "-pix_fmt",
  "rgb24",
  "pipe:1",
]
/** stdin through ffmpeg to stdout unchanged (raw PCM in, raw PCM out). */
const pcmCopy = ["-v", "error", "-f", "s16le", "-ar", "8000", "-ac", "1", "-i", "pipe:0", "-f", "s16le", "pipe:1"]

let c: Cluster

beforeAll(async () => {
  const db = await freshDatabase("postgres")
  c = await Cluster.start({
    coordinators: 2,
    workers: 2,
    maxJobs: 4,
    // Until wake-ups cross coordinators, a worker polling B hears of A's jobs at its poll's timeout.
    coordinatorConfig: { database: db.config, poll_wait_seconds: 1 },
    // The client and worker1 start at A (the one killed), worker2 at B; worker1 in the `urls:` form.
    links: ([a, b], who) =>
      who === "worker2"
        ? [{ port: b }, { port: a }]
        : who === "worker1"
          ? { urls: [`http://127.0.0.1:${a}`, `http://127.0.0.1:${b}`] }
          : [{ port: a }, { port: b }],
  })
}, 60_000)

afterAll(async () => {
  await c?.stop()
})

async function collect(stream: ReadableStream<Uint8Array>, onChunk?: (got: number) => void) {
  const parts: Uint8Array[] = []
  let got = 0
  for await (const chunk of stream) {
    parts.push(chunk)
    got += chunk.length
    onChunk?.(got)
  }
  return Buffer.concat(parts)
}

test("kill -9 of the first coordinator while jobs run: every job completes through the other, output byte-identical", async () => {
  const frames = 150 // 6 s each at -re
  const local = await c.local("ffmpeg", rawvideo(frames))
  expect(local.code).toBe(0)
  const pcm = new Uint8Array(3 * 1024 * 1024)
  for (let i = 0; i < pcm.length; i++) pcm[i] = (i * 2654435761) >>> 24
  const localPcm = await c.local("ffmpeg", pcmCopy, { stdin: pcm })
  expect(localPcm.code).toBe(0)

  let killed: Promise<unknown> | undefined
  const [a] = c.coordinators
  const killA = () => (killed ??= a!.proc.stop("SIGKILL"))
  const procs = Array.from({ length: 4 }, () => c.spawnProxy("ffmpeg", rawvideo(frames)))
  for (const p of procs) p.stdin.end()
  const outs = procs.map((p, i) =>
    collect(p.stdout, (got) => {
      // A third of the way into the first job: every job is running, output and uploads in flight.
      if (i === 0 && got > local.stdout.length / 3) void killA()
    }),
  )
  // A job fed through stdin: half before the kill, half after (its uploads go on through B).
  const piped = c.spawnProxy("ffmpeg", pcmCopy)
  const pipedOut = collect(piped.stdout)
  piped.stdin.write(pcm.subarray(0, pcm.length / 2))
  await piped.stdin.flush()
  await waitFor(() => killed !== undefined, { what: "the kill of coordinator A", timeoutMs: 30_000 })
  await killed
  piped.stdin.write(pcm.subarray(pcm.length / 2))
  await piped.stdin.end()

  const results = await Promise.all(outs)
  const codes = await Promise.all(procs.map((p) => p.exited))
  const errs = await Promise.all(procs.map((p) => new Response(p.stderr).text()))
  expect({ codes, errs }).toEqual({ codes: procs.map(() => 0), errs: procs.map(() => "") })
  for (const out of results) {
    expect(out.length).toBe(local.stdout.length)
    expect(md5(out)).toBe(md5(local.stdout))
  }
  expect(await piped.exited).toBe(0)
  const pOut = await pipedOut
  expect(pOut.length).toBe(localPcm.stdout.length)
  expect(md5(pOut)).toBe(md5(localPcm.stdout))

  // A failure's exit code is ffmpeg's own, through B alone.
  const missing = ["-v", "error", "-i", `${c.clientMedia}/no-such-file.mkv`, "-f", "null", "-"]
  const [remote, here] = await Promise.all([c.run("ffmpeg", missing), c.local("ffmpeg", missing)])
  expect(remote.code).toBe(here.code)
  expect(here.code).not.toBe(0)

  // Exactly once: one job per command, each ended once; the lost coordinator left none behind.
  const jobs = await c.jobs()
  expect(jobs.map((j) => j.status).sort()).toEqual([...Array(5).fill("completed"), "failed"])
}, 120_000)
