import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { connect } from "node:net"
import { waitFor } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { HEADER, signedFetch, signedHeaders } from "../helpers/signed.ts"

/**
 * Quotas and body limits of the compiled coordinator (issue 9, F5/F6): bodies are refused from their
 * headers before they are read, submissions are bounded in size and number, stdin per job and admin
 * log tails in bytes. Every refusal is a 4xx JSON; nothing here may make the coordinator answer 5xx.
 */

const API = "/api/v1"
const MIB = 1024 * 1024
const LIMITS = { max_args_bytes: 4096, max_queued_per_client: 3, max_stdin_bytes: 256 * 1024, max_log_tail_bytes: 1024 }

let c: Cluster
const statuses: number[] = []

beforeAll(async () => {
  c = await Cluster.start({ coordinatorConfig: { limits: LIMITS } })
  await c.addUser("client2", "client")
})
afterAll(async () => {
  await c?.stop()
})

type ErrorBody = { error: { code: string; message: string } }
const who = (name: string) => ({ client: name, key: c.key(name) })
const JSON_TYPE = { "content-type": "application/json" }
const submitBody = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ binary: "ffprobe", args: ["-version"], paths: [], cwd: null, stdin: false, ...over })

async function sf(o: Parameters<typeof signedFetch>[1]): Promise<Response> {
  const res = await signedFetch(c.url, o)
  statuses.push(res.status)
  return res
}

async function errorOf(res: Response, status: number, code: string): Promise<string> {
  expect(res.headers.get("content-type") ?? "").toContain("application/json")
  const body = (await res.json()) as ErrorBody
  expect({ status: res.status, code: body.error?.code }).toEqual({ status, code })
  return body.error.message
}

/**
 * Sends the request head (with `contentLength`) and only `sent` bytes of the body on a raw socket,
 * then waits for the answer without sending more: an answer proves the coordinator did not wait for
 * (or read) the rest of the body.
 */
function partialPost(
  path: string,
  headers: Record<string, string>,
  contentLength: number,
  sent: number,
): Promise<{ status: number; body: ErrorBody }> {
  return new Promise((resolve, reject) => {
    const s = connect(c.port, "127.0.0.1")
    let buf: Buffer = Buffer.alloc(0)
    s.on("error", reject)
    s.on("connect", () => {
      const head = [
        `POST ${path} HTTP/1.1`,
        "Host: 127.0.0.1",
        `Content-Length: ${contentLength}`,
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        "",
        "",
      ].join("\r\n")
      s.write(head)
      s.write(Buffer.alloc(sent, 0x20))
    })
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      const end = buf.indexOf("\r\n\r\n")
      if (end === -1) return
      const head = buf.subarray(0, end).toString()
      const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? -1)
      const body = buf.subarray(end + 4)
      if (length < 0 || body.length < length) return
      s.destroy()
      const status = Number(head.split(" ")[1])
      statuses.push(status)
      resolve({ status, body: JSON.parse(body.subarray(0, length).toString()) })
    })
  })
}

describe("bodies are refused from their headers", () => {
  test("a signed 10 MB submission with Content-Length gets 413 JSON naming the limit, not a dropped connection", async () => {
    const body = new Uint8Array(10_000_000).fill(0x20)
    const res = await sf({ ...who("client1"), method: "POST", path: `${API}/jobs`, body, headers: JSON_TYPE })
    expect(await errorOf(res, 413, "E_TOO_LARGE")).toMatch(
      /^request body of 10000000 bytes is over this route's limit of \d+ bytes \(set by limits\.max_args_bytes\)$/,
    )
  })

  test("a worker's 10 MB output upload gets 413 JSON naming limits.max_body_bytes", async () => {
    const body = new Uint8Array(10_000_000)
    const res = await sf({
      ...who("worker1"),
      method: "POST",
      path: `${API}/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/output`,
      query: "epoch=1",
      body,
    })
    expect(await errorOf(res, 413, "E_TOO_LARGE")).toBe(
      `request body of 10000000 bytes is over this route's limit of ${8 * MIB} bytes (set by limits.max_body_bytes)`,
    )
  })

  test("a chunked upload (no Content-Length) is counted as it streams and refused with 413 JSON once past the cap", async () => {
    const chunk = new Uint8Array(MIB)
    let sent = 0
    const body = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (sent >= 64 * MIB) return ctl.close()
        sent += chunk.length
        ctl.enqueue(chunk)
      },
    })
    const headers = signedHeaders({
      ...who("worker1"),
      method: "POST",
      path: `${API}/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/output`,
      query: "epoch=1",
      body: new Uint8Array(0),
    })
    const res = await fetch(`${c.url}${API}/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/output?epoch=1`, {
      method: "POST",
      headers,
      body,
      duplex: "half",
    } as RequestInit)
    statuses.push(res.status)
    expect(await errorOf(res, 413, "E_TOO_LARGE")).toBe(
      `request body is over this route's limit of ${8 * MIB} bytes (set by limits.max_body_bytes)`,
    )
    // Refused while the upload was far from done: the rest of the 64 MiB was never pulled.
    expect(sent).toBeLessThan(64 * MIB)
  })

  const eight = 8 * MIB
  test.each([
    ["unsigned", () => ({})],
    [
      "from an unknown identity",
      () => ({
        ...signedHeaders({ client: "nobody", key: c.key("client1"), method: "POST", path: `${API}/jobs`, body: "x" }),
      }),
    ],
    [
      "with a timestamp 5 minutes old",
      () =>
        signedHeaders({ ...who("client1"), method: "POST", path: `${API}/jobs`, body: "x", now: Date.now() - 300_000 }),
    ],
  ])(
    "an 8 MiB POST %s is answered 401 after 64 KiB of its body, without waiting for the rest",
    async (_what, headers) => {
      const res = await partialPost(`${API}/jobs`, { ...JSON_TYPE, ...headers() }, eight, 64 * 1024)
      expect({ status: res.status, code: res.body.error.code }).toEqual({ status: 401, code: "E_AUTH" })
    },
  )

  test("a valid identity declaring 8 MiB on a JSON route is answered 413 after 64 KiB, without waiting for the rest", async () => {
    const headers = signedHeaders({ ...who("client1"), method: "POST", path: `${API}/jobs`, body: "x" })
    const res = await partialPost(`${API}/jobs`, { ...JSON_TYPE, ...headers }, eight, 64 * 1024)
    expect({ status: res.status, code: res.body.error.code }).toEqual({ status: 413, code: "E_TOO_LARGE" })
  })
})

describe("submission quotas", () => {
  test("arguments over limits.max_args_bytes are 413 JSON, and the proxy prints one dffmpeg: line and exits 1", async () => {
    const long = ["-i", "x".repeat(4096)]
    const res = await sf({
      ...who("client1"),
      method: "POST",
      path: `${API}/jobs`,
      body: submitBody({ args: long }),
      headers: JSON_TYPE,
    })
    expect(await errorOf(res, 413, "E_TOO_LARGE")).toBe(
      "the job's arguments, cwd and path names take 4098 bytes; at most 4096 are accepted (limits.max_args_bytes)",
    )
    const r = await c.run("ffprobe", long)
    expect({ code: r.code, err: r.err }).toEqual({
      code: 1,
      err: "dffmpeg: the job's arguments, cwd and path names take 4098 bytes; at most 4096 are accepted (limits.max_args_bytes)\n",
    })
  })

  test("limits.max_queued_per_client: a 4th waiting job of one identity is 429 JSON; other identities are not affected", async () => {
    // With the only worker drained no worker serves, so client2's jobs stay queued (a job that no serving
    // worker could run would fail at once instead: docs/scheduling.md).
    expect((await c.admin(["workers", "drain", "worker1"])).code).toBe(0)
    const waiting = submitBody({ binary: "ffmpeg", args: ["-i", "$Nowhere/x.mkv"], paths: ["Nowhere"] })
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const res = await sf({
        ...who("client2"),
        method: "POST",
        path: `${API}/jobs`,
        body: waiting,
        headers: JSON_TYPE,
      })
      expect(res.status).toBe(201)
      ids.push(((await res.json()) as { id: string }).id)
    }
    const res = await sf({ ...who("client2"), method: "POST", path: `${API}/jobs`, body: waiting, headers: JSON_TYPE })
    expect(await errorOf(res, 429, "E_QUOTA")).toBe(
      "client2 already has 3 jobs waiting for a worker, the most one identity may queue (limits.max_queued_per_client = 3); submit again once some have started",
    )
    const ok = await sf({
      ...who("client1"),
      method: "POST",
      path: `${API}/jobs`,
      body: submitBody(),
      headers: JSON_TYPE,
    })
    expect(ok.status).toBe(201)
    // A canceled job frees its place at once.
    expect((await sf({ ...who("client2"), method: "POST", path: `${API}/jobs/${ids[0]}/cancel` })).status).toBe(200)
    expect(
      (await sf({ ...who("client2"), method: "POST", path: `${API}/jobs`, body: waiting, headers: JSON_TYPE })).status,
    ).toBe(201)
    expect((await c.admin(["workers", "undrain", "worker1"])).code).toBe(0)
  })
})

describe("stdin per job", () => {
  // Raw gray 16x16 frames from stdin: ffmpeg reads whatever it is given.
  const raw = ["-hide_banner", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "16x16", "-i", "-", "-f", "null", "-"]

  test("under limits.max_stdin_bytes the proxy forwards all of it", async () => {
    const r = await c.run("ffmpeg", raw, { stdin: new Uint8Array(256 * 100) })
    expect(r.code).toBe(0)
    expect(r.err).toMatch(/frame= *100 /)
  })

  test("over it, the proxy prints one dffmpeg: line, exits 1, and the job ends canceled", async () => {
    const before = new Set((await c.jobs()).map((j) => j.id))
    const r = await c.run("ffmpeg", raw, { stdin: new Uint8Array(4 * MIB) })
    const lines = r.err.split("\n").filter((l) => l.startsWith("dffmpeg:"))
    expect({ code: r.code, lines: lines.length }).toEqual({ code: 1, lines: 1 })
    expect(lines[0]).toMatch(
      /^dffmpeg: the standard input of job [0-9A-Z]{26} is over 262144 bytes \(limits\.max_stdin_bytes\); the job is canceled$/,
    )
    const id = lines[0].match(/job ([0-9A-Z]{26})/)![1]
    expect(before.has(id)).toBe(false)
    const job = await waitFor(
      async () => {
        const j = await c.job(id)
        return j.status === "canceled" ? j : undefined
      },
      { what: `job ${id} canceled`, timeoutMs: 20_000 },
    )
    expect(job.error).toBe("its standard input passed 262144 bytes (limits.max_stdin_bytes)")
  }, 30_000)
})

describe("admin log tail", () => {
  test("admin jobs show reads at most limits.max_log_tail_bytes of stderr and says the first line is cut", async () => {
    // ffmpeg echoes the (missing) input's 1,600-byte name in its one error line.
    const name = Array.from({ length: 8 }, (_, i) => String.fromCharCode(97 + i).repeat(200)).join("/")
    const submit = await c.client("submit", [
      "--detach",
      "--",
      "-hide_banner",
      "-i",
      `${c.clientMedia}/${name}.mkv`,
      "-f",
      "null",
      "-",
    ])
    expect({ code: submit.code, err: submit.err }).toEqual({ code: 0, err: "" })
    const id = submit.out.trim()
    await waitFor(
      async () => ((await c.job(id)).status === "failed" || (await c.job(id)).exitCode !== null ? true : undefined),
      { what: `job ${id} ended`, timeoutMs: 20_000 },
    )
    const shown = (await c.job(id)) as unknown as { stderrTail: string[]; stderrTailTruncated: boolean }
    expect(shown.stderrTailTruncated).toBe(true)
    expect(Buffer.byteLength(shown.stderrTail.join("\n"))).toBeLessThanOrEqual(1024)
    expect(shown.stderrTail.at(-1)).toMatch(/No such file or directory$/)
    const text = await c.admin(["jobs", "show", id])
    expect(text.out).toContain("(the first line is cut: log tails are limited in bytes, limits.max_log_tail_bytes)")
    // The signed route says so in its body and a header.
    await c.enableAdmin()
    const res = await sf({ ...who("admin1"), method: "GET", path: `${API}/admin/jobs/${id}/log`, query: "tail=10" })
    expect(res.headers.get("x-dffmpeg-tail-truncated")).toBe("1024 bytes (limits.max_log_tail_bytes)")
    expect(await res.json()).toMatchObject({ truncated: true, maxBytes: 1024 })
  }, 30_000)
})

test("no request in this file got a 5xx and the coordinator logged no internal error", async () => {
  expect((await fetch(`${c.url}/health`)).status).toBe(200)
  expect(statuses.filter((s) => s >= 500)).toEqual([])
  expect(statuses.length).toBeGreaterThan(10)
  const log = c.coordinator.log()
  expect(log).not.toContain("E_INTERNAL")
  expect(log).not.toContain("request failed")
})
