import { afterEach, describe, expect, test } from "bun:test"
import { Cluster } from "../helpers/cluster.ts"
import { SERVER_ENGINES, freshDatabase } from "../helpers/databases.ts"
import { signedFetch } from "../helpers/signed.ts"
import { TcpProxy } from "../helpers/tcp-proxy.ts"

// A coordinator whose database goes away (restarted, network cut) answers 503 with Retry-After, never 500;
// /health says the database is unreachable; once it is back the pool reconnects by itself, without a
// restart, and a job runs through the same worker. The database is cut by a TCP proxy in between.

let proxy: TcpProxy | undefined
afterEach(() => {
  proxy?.stop()
  proxy = undefined
})

/** Polls `fn` until it returns true, for at most `ms`. */
async function until(what: string, fn: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await fn()) return
    await Bun.sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

describe.each(SERVER_ENGINES.map((e) => [e]))("%s through a TCP proxy", (engine) => {
  test("cut: signed requests answer 503 + Retry-After and /health says unreachable; restored: served again", async () => {
    const db = await freshDatabase(engine)
    const u = new URL(db.url)
    proxy = TcpProxy.start({ host: u.hostname, port: Number(u.port) })
    u.hostname = "127.0.0.1"
    u.port = String(proxy.port)
    await using c = await Cluster.start({
      workers: 1,
      coordinatorConfig: { database: { engine, url: u.toString(), connect_timeout_seconds: 2 } },
    })
    const list = () =>
      signedFetch(c.url, {
        client: "client1",
        key: c.key("client1"),
        method: "GET",
        path: "/api/v1/jobs",
        query: "limit=1",
      })
    expect((await list()).status).toBe(200)
    const before = await c.run("ffprobe", ["-version"])
    expect(before.code).toBe(0)

    proxy.cut()
    // Every request that needs the database: 503 with Retry-After, an error body, never a 500.
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) {
      const res = await list()
      statuses.push(res.status)
      expect(res.status).toBe(503)
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0)
      const body = (await res.json()) as { error: { message: string } }
      expect(body.error.message).toContain("database is unreachable")
    }
    const health = await fetch(`${c.url}/health`)
    expect(health.status).toBe(503)
    const h = (await health.json()) as { status: string; components: { database: { status: string } } }
    expect(h.status).toBe("unavailable")
    expect(h.components.database.status).toBe("unreachable")

    proxy.restore()
    await until("a signed request served again", async () => (await list()).status === 200)
    expect((await fetch(`${c.url}/health`)).status).toBe(200)
    // The worker rode the outage out (503s are retryable): a job runs on it, the coordinator never restarted.
    const after = await c.run("ffprobe", ["-version"])
    expect(after.code).toBe(0)
    expect(c.logs()).not.toMatch(
      /E_INTERNAL|request failed outside the API|request failed(?!: the database is unreachable)/,
    )
  }, 90_000)
})
