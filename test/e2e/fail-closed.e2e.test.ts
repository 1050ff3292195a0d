import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { connect } from "node:net"
import { Cluster } from "../helpers/cluster.ts"
import { MALFORMED_FORWARDED_FOR } from "../helpers/forwarded.ts"

/**
 * The coordinator's allow-lists and dashboard sign-in against the compiled binary: a trusted proxy
 * (127.0.0.1, the default `trusted_proxies`) that forwards a malformed X-Forwarded-For gets 403 JSON
 * from the dashboard and /metrics, and repeated wrong sign-ins get 429 with Retry-After.
 */
let c: Cluster
beforeAll(async () => {
  c = await Cluster.start({ workers: 0 })
}, 30_000)
afterAll(async () => {
  await c?.stop()
})

/** One HTTP/1.1 request written byte for byte (fetch would normalise or refuse some of these headers); `latin1` header bytes. */
function rawRequest(path: string, headerLines: string[]): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect(c.port, "127.0.0.1")
    const chunks: Buffer[] = []
    sock.on("data", (d: Buffer) => chunks.push(d))
    sock.on("error", reject)
    sock.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1")
      const cut = text.indexOf("\r\n\r\n")
      resolve({ status: Number(text.slice(9, 12)), headers: text.slice(0, cut), body: text.slice(cut + 4) })
    })
    sock.end(
      Buffer.from(
        ["GET " + path + " HTTP/1.1", "Host: 127.0.0.1", "Connection: close", ...headerLines, "", ""].join("\r\n"),
        "latin1",
      ),
    )
  })
}

// What a real header can carry; control characters and non-ASCII are refused by the HTTP parser.
const sendable = MALFORMED_FORWARDED_FOR.filter(([, h]) => /^[\x20-\x7e\t]*$/.test(h))

describe("X-Forwarded-For from a trusted proxy", () => {
  test("a private client behind the proxy is let in, a public one is not, and no header means the proxy host itself", async () => {
    for (const path of ["/", "/metrics"]) {
      expect((await rawRequest(path, ["X-Forwarded-For: 10.0.0.5"])).status).toBe(200)
      expect((await rawRequest(path, ["X-Forwarded-For: 8.8.8.8, 10.0.0.5, 127.0.0.1"])).status).toBe(200)
      expect((await rawRequest(path, [])).status).toBe(200)
      const pub = await rawRequest(path, ["X-Forwarded-For: 10.0.0.5, 8.8.8.8"])
      expect(pub.status).toBe(403)
      expect(JSON.parse(pub.body)).toEqual({
        error: { code: "E_FORBIDDEN", message: expect.stringContaining("is not open to 8.8.8.8") },
      })
    }
  })

  test.each(sendable)("%s: the dashboard and /metrics answer 403 JSON", async (_what, header) => {
    for (const path of ["/", "/dashboard/api/state", "/metrics"]) {
      const res = await rawRequest(path, [`X-Forwarded-For: ${header}`])
      expect({ path, status: res.status }).toEqual({ path, status: 403 })
      expect(res.headers.toLowerCase()).toContain("content-type: application/json")
      expect(JSON.parse(res.body)).toEqual({
        error: { code: "E_FORBIDDEN", message: expect.stringContaining("is not open to this peer (X-Forwarded-For") },
      })
    }
  })

  test("two X-Forwarded-For headers are read as one list: a malformed one is still refused", async () => {
    expect((await rawRequest("/metrics", ["X-Forwarded-For: 10.0.0.5", "X-Forwarded-For: 8.8.8.8:4711"])).status).toBe(
      403,
    )
    expect((await rawRequest("/metrics", ["X-Forwarded-For: 10.0.0.5", "X-Forwarded-For: 10.0.0.6"])).status).toBe(200)
  })
})

describe("dashboard sign-in", () => {
  test("after 5 wrong keys the address and the name get 429 with Retry-After, and the refusal is logged", async () => {
    const key = await c.addUser("boss", "admin")
    const login = (name: string, k: string) =>
      fetch(`${c.url}/dashboard/login`, {
        method: "POST",
        headers: { "X-Dffmpeg-Dashboard": "1", "Content-Type": "application/json" },
        body: JSON.stringify({ name, key: k }),
      })
    const wrong = Buffer.alloc(32, 9).toString("base64")
    for (let i = 0; i < 5; i++) expect((await login("boss", wrong)).status).toBe(401)
    const res = await login("boss", key)
    expect(res.status).toBe(429)
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
    expect(await res.json()).toMatchObject({ error: { code: "E_THROTTLED" } })
    await c.coordinator.waitForLine(/dashboard sign-in throttled .*name=boss ip=127\.0\.0\.1 retryAfter=\d+/)
  })
})

describe("the coordinator log", () => {
  test("a client id with C1 control bytes (8-bit CSI, NEL) is logged escaped, never raw", async () => {
    // Header values may carry bytes 0x80-0xff (obs-text); read as latin1 they are the C1 controls.
    const res = await rawRequest("/api/v1/jobs", ["X-DFFmpeg-Client-Id: ev\x9b2J\x85il"])
    expect(res.status).toBe(401)
    const line = (await c.coordinator.waitForLine(/request refused .*client="ev/)).input
    expect(line).toContain('client="ev\\u009b2J\\u0085il"')
    expect(c.coordinator.log()).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/)
  })
})
