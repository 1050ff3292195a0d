import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { connect, type Socket } from "node:net"
import { apiFor } from "../helpers/api.ts"
import { Cluster } from "../helpers/cluster.ts"

/**
 * Bodies read before their signature is verified share limits.max_unverified_body_bytes. A caller who
 * knows a worker's name (not its key) can fill it with slow uploads that declare 8 MiB and send one
 * byte: that may delay large uploads, never the small requests (heartbeats, polls, submissions) that
 * keep workers and their jobs alive.
 */
let c: Cluster
beforeAll(async () => {
  // Fast heartbeats: a worker whose heartbeats are not acknowledged for 1 s stops its jobs itself.
  c = await Cluster.start({ workers: 1, coordinatorConfig: { heartbeat_interval: 0.5, registration_interval: 1 } })
}, 60_000)
afterAll(async () => {
  await c?.stop()
})

/** Opens `n` uploads naming worker1 with a forged signature, declaring 8 MiB and sending one byte. */
function slowUploads(n: number): Socket[] {
  return Array.from({ length: n }, (_, i) => {
    const s = connect(c.port, "127.0.0.1")
    s.on("error", () => {})
    const ts = Math.floor(Date.now() / 1000)
    s.write(
      `POST /api/v1/jobs/01M8RQD4C2EWHFVWYCANR2VTE9/output?epoch=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-DFFmpeg-Client-Id: worker1\r\nX-DFFmpeg-Timestamp: ${ts}\r\nX-DFFmpeg-Nonce: slow-upload-nonce-${i}-${ts}\r\nX-DFFmpeg-Signature: ${"A".repeat(43)}=\r\nContent-Length: 8388608\r\n\r\nx`,
    )
    return s
  })
}

describe("slow unverified uploads", () => {
  test("filling the unverified-body budget stops neither heartbeats nor submissions: a running job completes", async () => {
    const api = apiFor(c, "client1")
    const args = ["-v", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-f", "null", "-"]
    const job = await api.json<{ id: string }>("POST", "/api/v1/jobs", {
      json: { binary: "ffmpeg", args, paths: [], cwd: null, stdin: false, attached: false },
    })
    await c.waitFor(async () => (await c.job(job.id)).status === "running", { what: "the job to start" })
    // 8 × 8 MiB declared: the whole default budget (64 MiB), held for the rest of the job.
    const socks = slowUploads(8)
    try {
      // A large upload now gets 503 unread (retried by real clients)...
      const more = slowUploads(1)[0]!
      const answer = await new Promise<string>((resolve) => more.on("data", (d) => resolve(d.toString())))
      more.destroy()
      expect(answer).toMatch(/^HTTP\/1\.1 503/)
      expect(answer).toContain("limits.max_unverified_body_bytes")
      // ...while small requests go through, and the job's worker keeps heartbeating to its end.
      const small = await api.request("POST", "/api/v1/jobs", {
        json: { binary: "ffprobe", args: ["-version"], paths: [], cwd: null, stdin: false, attached: false },
      })
      expect(small.status).toBe(201)
      await c.waitFor(async () => (await c.job(job.id)).status === "completed", {
        timeoutMs: 20_000,
        what: "the job to complete",
      })
      expect(c.workers[0]!.stderrText.some((l) => l.includes("self-fencing"))).toBe(false)
    } finally {
      for (const s of socks) s.destroy()
    }
  }, 40_000)
})
