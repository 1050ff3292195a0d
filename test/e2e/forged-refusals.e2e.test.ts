import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { apiFor } from "../helpers/api.ts"
import { Cluster } from "../helpers/cluster.ts"
import { relay } from "../helpers/mitm.ts"

/**
 * A man in the middle on plain HTTP cannot sign a reply, but it can answer with an unsigned 401 or 413,
 * which peers accept as refusals made before their identity was proven. For a worker such a refusal is
 * never real (its key is valid, its batches are under every cap): one must not kill a running job or
 * silently end the downlink that carries its cancel. The worker retries them like an outage.
 */
type Rule = { method: string; path: RegExp; status: number; left: number; hits: number }
const rules: Rule[] = []
let target = 0

const mitm = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  idleTimeout: 0,
  async fetch(req) {
    const url = new URL(req.url)
    const rule = rules.find((r) => r.left > 0 && r.method === req.method && r.path.test(url.pathname))
    if (rule && req.headers.get("x-dffmpeg-client-id") === "worker1") {
      rule.left--
      rule.hits++
      if (req.body) await req.arrayBuffer()
      return Response.json(
        { error: { code: rule.status === 401 ? "E_AUTH" : "E_TOO_LARGE", message: "forged" } },
        { status: rule.status },
      )
    }
    const { res, headers } = await relay(req, target)
    return new Response(res.body, { status: res.status, headers })
  },
})

let c: Cluster
beforeAll(async () => {
  c = await Cluster.start({ workers: 1, link: (port) => ((target = port), { port: mitm.port }) })
}, 60_000)

afterAll(async () => {
  await c?.stop()
  mitm.stop(true)
})

const WAV = ["-v", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-f", "wav", "pipe:1"]

describe("unsigned refusals forged between a worker and the coordinator", () => {
  test("a forged 413 on an output upload is retried: the job completes with every byte, exactly as locally", async () => {
    const rule: Rule = { method: "POST", path: /\/output$/, status: 413, left: 1, hits: 0 }
    rules.push(rule)
    const local = Bun.spawnSync(["ffmpeg", ...WAV], { stdout: "pipe", stderr: "pipe" })
    const r = await c.run("ffmpeg", WAV, { timeoutMs: 20_000 })
    expect(rule.hits).toBe(1)
    expect(r.code).toBe(0)
    expect(Buffer.from(r.stdout).equals(Buffer.from(local.stdout))).toBe(true)
  }, 30_000)

  test("a forged 401 on the job's downlink is retried: a later cancel still reaches the running job", async () => {
    const rule: Rule = { method: "GET", path: /\/input$/, status: 401, left: 1, hits: 0 }
    rules.push(rule)
    const api = apiFor(c, "client1")
    const long = ["-v", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440:duration=60", "-f", "null", "-"]
    const job = await api.json<{ id: string }>("POST", "/api/v1/jobs", {
      json: { binary: "ffmpeg", args: long, paths: [], cwd: null, stdin: false, attached: false },
    })
    await c.waitFor(async () => (await c.job(job.id)).status === "running", {
      timeoutMs: 15_000,
      what: "the job running",
    })
    // A job without stdin opens its downlink once the poll names it: at the cancel, which is refused once.
    const admin = await c.admin(["jobs", "cancel", job.id])
    expect(admin.code).toBe(0)
    await c.waitFor(async () => (await c.job(job.id)).status === "canceled", {
      timeoutMs: 15_000,
      what: "the job to end canceled",
    })
    expect(rule.hits).toBe(1)
  }, 40_000)
})
