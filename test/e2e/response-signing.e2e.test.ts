import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { RESPONSE_HEADER } from "../../src/shared/auth/response.ts"
import { FrameDecoder, Kind, concatFrames, encodeFrame } from "../../src/shared/protocol/frames.ts"
import { apiFor } from "../helpers/api.ts"
import { Cluster } from "../helpers/cluster.ts"
import { relay } from "../helpers/mitm.ts"
import { sample } from "../helpers/media.ts"

/**
 * A man in the middle on plain HTTP: a loopback proxy between the coordinator and both the worker and
 * the client that changes replies. Every forged reply must be refused by its receiver.
 */
type Mode = "none" | "assignment" | "output" | "downlink" | "unsigned" | "cursor" | "forged401"
let mode: Mode = "none"
let target = 0
/** Replies the proxy changed, per mode (a test whose forgery never happened proves nothing). */
const forged: Record<Mode, number> = {
  none: 0,
  assignment: 0,
  output: 0,
  downlink: 0,
  unsigned: 0,
  cursor: 0,
  forged401: 0,
}
/** The unsigned 401 the proxy answers in `forged401` mode: escape sequences and a forged second line. */
const EVIL = "\x1b[31mred\x1b]0;pwned\x07\r\nfake line \u202eevil"

const FRAMES = "application/vnd.dffmpeg.frames"

/** Flips one payload byte of the first `kind` frame passing through; every other byte is relayed as is. */
function flipFirst(
  body: ReadableStream<Uint8Array>,
  kind: number,
  count: "output" | "downlink",
): ReadableStream<Uint8Array> {
  const d = new FrameDecoder()
  let done = false
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        const frames = d.push(chunk)
        ctl.enqueue(
          concatFrames(
            frames.map((f) => {
              if (!done && f.kind === kind && f.data.length) {
                done = true
                forged[count]++
                f.data[0]! ^= 0x20
              }
              return encodeFrame(f.kind, f.seq, f.data)
            }),
          ),
        )
      },
    }),
  )
}

const mitm = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  idleTimeout: 0,
  async fetch(req) {
    const url = new URL(req.url)
    const { res, headers: out } = await relay(req, target)
    const client = req.headers.get("x-dffmpeg-client-id")
    if (mode === "assignment" && url.pathname === "/api/v1/worker/poll") {
      const text = await res.text()
      // The worker is sent a different job than the coordinator assigned (here: another input file).
      if (text.includes("av.mkv")) {
        forged.assignment++
        return new Response(text.replaceAll("av.mkv", "xx.mkv"), { status: res.status, headers: out })
      }
      return new Response(text, { status: res.status, headers: out })
    }
    if (mode === "output" && client === "client1" && res.headers.get("content-type") === FRAMES && res.body) {
      return new Response(flipFirst(res.body, Kind.stdout, "output"), { status: res.status, headers: out })
    }
    if (mode === "downlink" && client === "worker1" && url.pathname.endsWith("/input") && res.body) {
      return new Response(flipFirst(res.body, Kind.stdin, "downlink"), { status: res.status, headers: out })
    }
    if (mode === "unsigned" && client === "client1" && url.pathname === "/api/v1/jobs" && req.method === "POST") {
      forged.unsigned++
      out.delete(RESPONSE_HEADER)
    }
    if (mode === "cursor" && client === "admin1" && url.pathname === "/api/v1/jobs" && out.has("x-next-before")) {
      // The next page's cursor moved further back: the listing would silently skip jobs.
      forged.cursor++
      out.set("x-next-before", "00000000000000000000000000")
    }
    if (mode === "forged401" && client === "client1" && url.pathname === "/api/v1/jobs" && req.method === "POST") {
      await res.body?.cancel()
      forged.forged401++
      return Response.json(
        { error: { code: "E_AUTH", message: EVIL + "x".repeat(2000), details: [EVIL] } },
        { status: 401 },
      )
    }
    return new Response(res.body, { status: res.status, headers: out })
  },
})

let c: Cluster
let spawned: string
const PROBE = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, startWorkers: false, link: (port) => ((target = port), { port: mitm.port }) })
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
  // The worker's ffprobe records every start, then runs the real one. It runs in the job's sandbox,
  // which can write only into the job's roots: the record goes into the storage (the job's $Media).
  spawned = join(c.storage, ".spawned.log")
  const spy = join(c.dir, "spy-ffprobe")
  writeFileSync(spy, `#!/bin/sh\necho "$@" >> ${spawned}\nexec ffprobe "$@"\n`)
  chmodSync(spy, 0o755)
  await c.startWorker("worker1", { binaries: { ffprobe: spy, ffmpeg: "ffmpeg" } })
}, 60_000)

afterAll(async () => {
  await c?.stop()
  mitm.stop(true)
})

describe("a man in the middle on plain HTTP", () => {
  test("a forged assignment is refused: no process is started, the worker says why; the true one then runs", async () => {
    const worker = c.workers[0]!
    mode = "assignment"
    const api = apiFor(c, "client1")
    const job = await api.json<{ id: string }>("POST", "/api/v1/jobs", {
      json: {
        binary: "ffprobe",
        args: [...PROBE, "$Media/av.mkv"],
        paths: ["Media"],
        cwd: null,
        stdin: false,
        attached: false,
      },
    })
    await worker.waitForLine(/coordinator not trusted; no work taken.*does not verify/)
    expect(forged.assignment).toBeGreaterThan(0)
    expect(existsSync(spawned)).toBe(false)
    expect((await c.job(job.id)).status).toBe("assigned")
    // Control: with the proxy honest again, the same assignment is taken and run, with its true argument.
    mode = "none"
    await c.waitFor(async () => (await c.job(job.id)).status === "completed", {
      timeoutMs: 20_000,
      what: "the job to complete",
    })
    expect(readFileSync(spawned, "utf8")).toContain("/av.mkv")
    expect(readFileSync(spawned, "utf8")).not.toContain("xx.mkv")
  }, 30_000)

  test("forged output is refused by the proxy: exit 1, one dffmpeg: line, not a byte of it written", async () => {
    mode = "output"
    const r = await c.run("ffprobe", [...PROBE, join(c.clientMedia, "av.mkv")])
    expect(forged.output).toBe(1)
    expect(r.code).toBe(1)
    expect(r.out).toBe("")
    expect(r.err.trim().split("\n")).toEqual([
      `dffmpeg: the coordinator at http://127.0.0.1:${mitm.port} sent a frame whose MAC does not verify (changed, dropped, reordered or from another stream); refusing it (something between us and the coordinator changed the reply)`,
    ])
  }, 30_000)

  test("forged output is refused by client attach too (exit 1, as for any failure of dffmpeg itself while following a job)", async () => {
    mode = "none"
    const api = apiFor(c, "client1")
    const job = await api.json<{ id: string }>("POST", "/api/v1/jobs", {
      json: {
        binary: "ffprobe",
        args: [...PROBE, "$Media/av.mkv"],
        paths: ["Media"],
        cwd: null,
        stdin: false,
        attached: false,
      },
    })
    await c.waitFor(async () => (await c.job(job.id)).status === "completed", {
      timeoutMs: 20_000,
      what: "the job to complete",
    })
    mode = "output"
    const before = forged.output
    const r = await c.client("attach", [job.id])
    expect(forged.output).toBe(before + 1)
    expect(r.code).toBe(1)
    expect(r.out).toBe("")
    expect(r.err.split("\n").filter((l) => l.startsWith("dffmpeg:"))).toEqual([
      expect.stringContaining("sent a frame whose MAC does not verify"),
    ])
  }, 30_000)

  test("a forged stdin frame on the worker's downlink is refused: the worker stops the job and says why", async () => {
    mode = "downlink"
    const pcm = new Uint8Array(16_000).map((_, i) => (i * 7) & 0xff)
    const r = await c.run(
      "ffmpeg",
      ["-v", "error", "-f", "s16le", "-ar", "8000", "-ac", "1", "-i", "-", "-f", "wav", "pipe:1"],
      { stdin: pcm, timeoutMs: 15_000 },
    )
    expect(forged.downlink).toBe(1)
    expect(r.code).toBe(1)
    expect(r.err.trim().split("\n")).toEqual([
      expect.stringMatching(
        /^dffmpeg: job \w+ failed: worker stopped the job: the coordinator at .* sent a frame whose MAC does not verify/,
      ),
    ])
    await c.workers[0]!.waitForLine(/job downlink not trusted; stopping the job.*does not verify/)
    const jobs = await c.jobs()
    const job = await c.job(jobs[0]!.id)
    expect(job.status).toBe("failed")
    expect(job.error).toContain("worker stopped the job: the coordinator at")
  }, 30_000)

  test("a reply stripped of its signature is refused", async () => {
    mode = "unsigned"
    const r = await c.run("ffprobe", [...PROBE, join(c.clientMedia, "av.mkv")])
    expect(forged.unsigned).toBeGreaterThan(0)
    expect(r.code).toBe(1)
    expect(r.out).toBe("")
    expect(r.err.trim().split("\n")).toEqual([
      `dffmpeg: the coordinator at http://127.0.0.1:${mitm.port} sent an unsigned reply (HTTP 200); refusing it (is something between us and the coordinator changing replies?)`,
    ])
  }, 30_000)

  test("a rewritten next-page cursor is refused: admin jobs ls fails rather than list part of the jobs", async () => {
    mode = "none"
    await c.enableAdmin()
    const all = await c.remote(["jobs", "ls", "--json"])
    expect(all.code).toBe(0)
    expect((JSON.parse(all.out) as unknown[]).length).toBeGreaterThan(1)
    mode = "cursor"
    const r = await c.remote(["jobs", "ls", "--limit", "1"])
    expect(forged.cursor).toBeGreaterThan(0)
    expect(r.code).toBe(5)
    expect(r.out).toBe("")
    expect(r.err.trim().split("\n")).toEqual([
      `dffmpeg: the coordinator at http://127.0.0.1:${mitm.port} sent a reply whose signature does not verify (HTTP 200); refusing it (something between us and the coordinator changed it)`,
    ])
  }, 30_000)

  test("a forged unsigned 401 cannot write escape sequences or a fake line to the proxy's stderr", async () => {
    mode = "forged401"
    const r = await c.run("ffprobe", [...PROBE, join(c.clientMedia, "av.mkv")])
    expect(forged.forged401).toBeGreaterThan(0)
    expect(r.code).toBe(1)
    expect(r.out).toBe("")
    expect(r.err).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/)
    const lines = r.err.trim().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toStartWith(
      "dffmpeg: the coordinator refused our credentials (\\x1b[31mred\\x1b]0;pwned\\x07\\r\\nfake line \\u202eevilxxx",
    )
    expect(lines[0]!.length).toBeLessThan(450)
  }, 30_000)

  test("control: through the same proxy, honest, the proxy's ffprobe works", async () => {
    mode = "none"
    const r = await c.run("ffprobe", [...PROBE, join(c.clientMedia, "av.mkv")])
    if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.err}\n${c.logs()}`)
    expect(JSON.parse(r.out).streams).toHaveLength(2)
  }, 30_000)
})
