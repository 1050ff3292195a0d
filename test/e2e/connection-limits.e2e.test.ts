import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { join } from "node:path"
import { apiFor } from "../helpers/api.ts"
import { waitFor } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { newJob } from "../helpers/fixtures.ts"
import { newId } from "../../src/shared/ids.ts"
import { createSqliteStore } from "../../src/store/sqlite/index.ts"

/**
 * Connection limits and bounded listings on the real coordinator (issue 9, F4/F5): each limit refuses
 * one connection more with a 429 JSON naming its key, and gives the slot back when a connection closes.
 */

let c: Cluster
beforeAll(async () => {
  c = await Cluster.start({ workers: 0, coordinatorConfig: { poll_wait_seconds: 60 } })
})
afterAll(async () => {
  await c?.stop()
})

interface Open {
  res: Response
  close: () => void
}

/** Opens `n` connections with `open` and checks each was accepted (headers in: its slot is held). */
async function openMany(n: number, open: (signal: AbortSignal) => Promise<Response>): Promise<Open[]> {
  const out: Open[] = []
  for (let i = 0; i < n; i++) {
    const ac = new AbortController()
    const res = await open(ac.signal)
    expect(res.status).toBe(200)
    out.push({ res, close: () => ac.abort() })
  }
  return out
}

async function refused(res: Response, key: RegExp) {
  expect(res.status).toBe(429)
  const body = (await res.json()) as { error: { code: string; message: string } }
  expect(body.error.code).toBe("E_TOO_MANY")
  expect(body.error.message).toMatch(key)
}

/** After one closed, a new connection is accepted again (the server notices the close soon after). */
async function reopens(open: (signal: AbortSignal) => Promise<Response>): Promise<Open> {
  return waitFor(
    async () => {
      const ac = new AbortController()
      const res = await open(ac.signal)
      if (res.status === 200) return { res, close: () => ac.abort() }
      expect(res.status).toBe(429)
      await res.body?.cancel()
      return undefined
    },
    { what: "a connection accepted after one closed" },
  )
}

describe("connection limits", () => {
  test("dashboard live events: the 9th from one address is refused; closing one lets the next in", async () => {
    const open = (signal: AbortSignal) => fetch(`${c.url}/dashboard/api/events`, { signal })
    const held = await openMany(8, open)
    await refused(
      await open(new AbortController().signal),
      /dashboard live connections from 127\.0\.0\.1.*limits\.max_dashboard_connections_per_ip/,
    )
    held[0].close()
    const again = await reopens(open)
    await refused(await open(new AbortController().signal), /max_dashboard_connections_per_ip/)
    for (const h of [...held.slice(1), again]) h.close()
    // Every slot comes back: eight can open again.
    const next = await reopens(open)
    const more = await openMany(7, open)
    for (const h of [next, ...more]) h.close()
  })

  test("HEAD on the API and the dashboard's data routes is 405 and holds no slot; the pages and /health keep HEAD", async () => {
    // Hono runs GET handlers for HEAD and drops the body: a HEAD on a live route used to keep its slot for good.
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${c.url}/dashboard/api/events`, { method: "HEAD" })
      expect(res.status).toBe(405)
    }
    expect((await fetch(`${c.url}/api/v1/jobs/01M8RQD4C2EWHFVWYCANR2VTE9/stream`, { method: "HEAD" })).status).toBe(405)
    expect((await fetch(`${c.url}/health`, { method: "HEAD" })).status).toBe(200)
    expect((await fetch(`${c.url}/`, { method: "HEAD" })).status).toBe(200)
    // Every live slot is still free.
    const held = await openMany(8, (signal) => fetch(`${c.url}/dashboard/api/events`, { signal }))
    for (const h of held) h.close()
  })

  test("a worker identity holds at most 2 long polls", async () => {
    await c.addUser("pollster", "worker")
    const w = apiFor(c, "pollster")
    await w.json("POST", "/api/v1/worker/register", {
      json: { binaries: ["ffmpeg"], paths: [], maxJobs: 1, version: "test" },
    })
    const { verify } = await w.json<{ verify: string }>("GET", "/api/v1/worker/poll")
    await w.json("POST", "/api/v1/worker/verify", { json: { token: verify } })
    // A poll answers only when it ends: hold two long ones, and probe with polls that end at once.
    const long = [0, 1].map(() => {
      const ac = new AbortController()
      const done = w
        .request("GET", "/api/v1/worker/poll", { query: { wait: 60 }, signal: ac.signal, timeoutMs: 120_000 })
        .catch(() => undefined)
      return { done, close: () => ac.abort() }
    })
    const probe = () => w.request("GET", "/api/v1/worker/poll", { query: { wait: 0 } })
    const full = await waitFor(
      async () => {
        const res = await probe()
        if (res.status === 429) return res
        expect(res.status).toBe(200)
        await res.body?.cancel()
        return undefined
      },
      { what: "the third poll refused" },
    )
    await refused(full, /worker pollster already has 2 long polls open \(limits\.max_polls_per_worker\)/)
    long[0].close()
    await long[0].done
    const free = await waitFor(
      async () => {
        const res = await probe()
        if (res.status === 200) return res
        await res.body?.cancel()
        return undefined
      },
      { what: "a poll accepted after one closed" },
    )
    expect(((await free.json()) as { jobs: unknown[] }).jobs).toEqual([])
    long[1].close()
    await long[1].done
  })

  test("a job has at most 8 output streams; one closed lets the next in", async () => {
    const api = apiFor(c, "client1")
    const job = await api.json<{ id: string }>("POST", "/api/v1/jobs", {
      json: { binary: "ffmpeg", args: ["-version"], paths: [], cwd: null, stdin: false },
    })
    const open = (signal: AbortSignal) => api.request("GET", `/api/v1/jobs/${job.id}/stream`, { signal })
    const held = await openMany(8, open)
    await refused(
      await open(new AbortController().signal),
      new RegExp(`job ${job.id} already has 8 output streams open \\(limits\\.max_streams_per_job\\)`),
    )
    held[3].close()
    const again = await reopens(open)
    for (const h of [...held, again]) h.close()
    await api.json("POST", `/api/v1/jobs/${job.id}/cancel`)
  })
})

describe("listings of large jobs", () => {
  test("admin jobs ls cuts a 7.5 MB job's arguments and flags it; jobs show has them whole", async () => {
    // Written straight into the database, as a job accepted before quotas existed would be.
    const store = createSqliteStore({ path: join(c.dir, "coordinator.db") })
    const args = Array.from({ length: 2500 }, (_, i) => `-metadata:s:${i}=${"y".repeat(3000)}`)
    const id = "01M8DFWEZE8JWRGH9VMVBQN62M"
    await store.createJob(
      {
        id,
        requester: "client1",
        binary: "ffmpeg",
        args,
        paths: [],
        cwd: null,
        stdin: false,
        attached: false,
        retries: 0,
      },
      Date.now(),
    )
    await store.close()
    const ls = await c.admin(["jobs", "ls", "--json", "--limit", "1000"])
    expect(ls.code).toBe(0)
    expect(ls.out.length).toBeLessThan(64 * 1024)
    const row = (JSON.parse(ls.out) as { id: string; truncated: boolean; args: string[]; argsChars: number }[]).find(
      (j) => j.id === id,
    )!
    expect(row.truncated).toBe(true)
    expect(row.argsChars).toBe(JSON.stringify(args).length)
    expect(row.args).toEqual(args.slice(0, row.args.length))
    const whole = await apiFor(c, "client1").json<{ args: string[] }>("GET", `/api/v1/jobs/${id}`)
    expect(whole.args).toEqual(args)
  })

  test("admin jobs ls and client jobs page past limits.max_page_size to their --limit", async () => {
    const store = createSqliteStore({ path: join(c.dir, "coordinator.db") })
    const made: string[] = []
    for (let i = 0; i < 230; i++) {
      const id = newId()
      made.push(id)
      await store.createJob(newJob(id, { requester: "client1", binary: "ffprobe" }), Date.now())
    }
    const total = (await store.listJobs({ limit: 10_000 })).length
    await store.close()
    expect(total).toBeGreaterThan(230)
    await c.enableAdmin()
    const remote = await c.remote(["jobs", "ls", "--json", "--limit", "1000"])
    expect(remote.code).toBe(0)
    const listed = (JSON.parse(remote.out) as { id: string }[]).map((j) => j.id)
    expect(listed.length).toBe(total)
    expect(listed.slice(0, 230)).toEqual([...made].reverse())
    const few = await c.remote(["jobs", "ls", "--json", "--limit", "210"])
    expect((JSON.parse(few.out) as unknown[]).length).toBe(210)
    const mine = await c.client("jobs", ["--json", "--limit", "1000"])
    expect(mine.code).toBe(0)
    expect((JSON.parse(mine.out) as { id: string }[]).filter((j) => made.includes(j.id)).length).toBe(230)
  })
})
