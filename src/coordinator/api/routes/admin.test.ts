import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { admin, alice, RouteHarness } from "../../../../test/helpers/routes.ts"
import { sha256Hex } from "../../../shared/auth/hmac.ts"

let h: RouteHarness
beforeEach(async () => {
  h = await RouteHarness.open()
})
afterEach(async () => {
  await h.close()
})

const A = "/api/v1/admin"
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error

describe("admin routes", () => {
  test("are refused to non-admin identities with 403 naming the role", async () => {
    for (const [method, path] of [
      ["GET", "/users"],
      ["POST", "/users"],
      ["POST", "/workers/w1/drain"],
      ["POST", "/janitor"],
      ["GET", "/jobs/01M8DFWF4PCGSZBYEVT8TNJN46/log"],
    ]) {
      const res = await h.request(alice, method, A + path, { name: "x", role: "client" })
      expect(res.status).toBe(403)
      expect(await errorOf(res)).toEqual({
        code: "E_FORBIDDEN",
        message: "this route is for admin identities; alice is a client",
      })
    }
    expect(await h.store.listUsers()).toEqual([])
    expect(h.janitorRuns).toBe(0)
  })
})

describe("users", () => {
  test("POST creates a user and returns its key once; GET lists and shows it without the key", async () => {
    const res = await h.request(admin, "POST", `${A}/users`, { name: "jellyfin", role: "client" })
    expect(res.status).toBe(201)
    const body = (await res.json()) as { user: unknown; key: string }
    expect(body).toEqual({
      user: { name: "jellyfin", role: "client", createdAt: h.clock },
      key: expect.stringMatching(/^[A-Za-z0-9+/]{43}=$/),
    })
    expect((await h.store.getCredential("jellyfin"))?.key).toBe(body.key)
    const ls = await (await h.request(admin, "GET", `${A}/users`)).text()
    expect(JSON.parse(ls)).toEqual([{ name: "jellyfin", role: "client", createdAt: h.clock }])
    expect(ls).not.toContain(body.key)
    expect(await (await h.request(admin, "GET", `${A}/users/jellyfin`)).json()).toEqual({
      name: "jellyfin",
      role: "client",
      createdAt: h.clock,
    })
  })

  test.each([
    [{ name: "bad/name", role: "client" }, /name must be 1-64 letters/],
    [{ name: "ok", role: "root" }, /role must be one of client, worker, admin/],
    [{ name: "ok" }, /the body must be \{"name": NAME, "role": "client"\|"worker"\|"admin"\}/],
    [{ name: "ok", role: "client", extra: 1 }, /invalid request body/],
    ["{not json", /not valid JSON/],
  ])("POST %p is refused with 400 and creates nobody", async (body, message) => {
    const res = await h.request(admin, "POST", `${A}/users`, body)
    expect(res.status).toBe(400)
    const err = (await res.json()) as { error: { code: string; message: string; details?: string[] } }
    expect(err.error.code).toBe("E_INVALID")
    expect([err.error.message, ...(err.error.details ?? [])].join("\n")).toMatch(message)
    expect(await h.store.listUsers()).toEqual([])
  })

  test("POST of an existing name is 409 and keeps the old key", async () => {
    await h.store.addUser("jellyfin", "client", "old", h.clock)
    const res = await h.request(admin, "POST", `${A}/users`, { name: "jellyfin", role: "admin" })
    expect(res.status).toBe(409)
    expect(await h.store.getCredential("jellyfin")).toMatchObject({ role: "client", key: "old" })
  })

  test("rotate-key replaces the key; unknown and impossible names are 404", async () => {
    await h.store.addUser("jellyfin", "client", "old", h.clock)
    const res = await h.request(admin, "POST", `${A}/users/jellyfin/rotate-key`)
    expect(res.status).toBe(200)
    const { key } = (await res.json()) as { key: string }
    expect(key).not.toBe("old")
    expect((await h.store.getCredential("jellyfin"))?.key).toBe(key)
    for (const name of ["nobody", "..", "a%20b"]) {
      const r = await h.request(admin, "POST", `${A}/users/${name}/rotate-key`)
      expect(r.status).toBe(404)
    }
    expect(await errorOf(await h.request(admin, "GET", `${A}/users/nobody`))).toEqual({
      code: "E_NOT_FOUND",
      message: "no user nobody",
    })
  })

  test("DELETE removes a user, refuses the caller's own identity with 409 and unknown ones with 404", async () => {
    await h.store.addUser("root", "admin", "k1", h.clock)
    await h.store.addUser("jellyfin", "client", "k2", h.clock)
    const res = await h.request(admin, "DELETE", `${A}/users/jellyfin`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ name: "jellyfin", role: "client", createdAt: h.clock })
    expect(await h.store.getUser("jellyfin")).toBeUndefined()
    const self = await h.request(admin, "DELETE", `${A}/users/root`)
    expect(self.status).toBe(409)
    expect((await errorOf(self)).message).toMatch(/cannot remove your own identity \(root\)/)
    expect(await h.store.getUser("root")).toBeDefined()
    expect((await h.request(admin, "DELETE", `${A}/users/jellyfin`)).status).toBe(404)
  })
})

describe("worker drain", () => {
  test("drain makes an online worker draining (sticky across re-registration); undrain brings it back and wakes the scheduler", async () => {
    await h.worker("w1")
    await h.job("01M8DFWF4PCGSZBYEVT8TNJN46")
    await h.store.assign("01M8DFWF4PCGSZBYEVT8TNJN46", "w1", h.clock)
    const res = await h.request(admin, "POST", `${A}/workers/w1/drain`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ id: "w1", status: "draining", drainRequested: true, load: 1 })
    await h.worker("w1")
    expect(await h.store.getWorker("w1")).toMatchObject({ status: "draining", drainRequested: true })
    const kicks = h.kicks
    const un = await h.request(admin, "POST", `${A}/workers/w1/undrain`)
    expect(await un.json()).toMatchObject({ id: "w1", status: "online", drainRequested: false })
    expect(h.kicks).toBeGreaterThan(kicks)
  })

  test("an unknown worker is 404 and nothing is created", async () => {
    const res = await h.request(admin, "POST", `${A}/workers/ghost/drain`)
    expect(res.status).toBe(404)
    expect(await errorOf(res)).toEqual({ code: "E_NOT_FOUND", message: "no worker ghost" })
    expect(await h.store.listWorkers()).toEqual([])
  })
})

describe("job log tail", () => {
  const ID = "01M8DFWF4PCGSZBYEVT8TNJN46"

  test("returns the last lines of stderr only, as a terminal shows them", async () => {
    await h.worker("w1")
    await h.job(ID)
    await h.run(ID, "w1", [
      { stream: "stderr", data: "line 1\nline 2\n" },
      { stream: "stdout", data: "binary\n" },
      { stream: "stderr", data: "frame=1\rframe=2\r\n" },
      { stream: "stderr", data: "done" },
    ])
    const MB = 1024 * 1024
    expect(await (await h.request(admin, "GET", `${A}/jobs/${ID}/log?tail=3`)).json()).toEqual({
      lines: ["line 2", "frame=2", "done"],
      truncated: false,
      maxBytes: MB,
    })
    expect(await (await h.request(admin, "GET", `${A}/jobs/${ID}/log`)).json()).toEqual({
      lines: ["line 1", "line 2", "frame=2", "done"],
      truncated: false,
      maxBytes: MB,
    })
  })

  test("reads at most limits.max_log_tail_bytes: a huge line comes back as its end, marked in the body and a header", async () => {
    await h.close()
    h = await RouteHarness.open({ limits: { max_log_tail_bytes: 4096 } })
    await h.worker("w1")
    await h.job(ID)
    const huge = "A".repeat(3 * 1024 * 1024) + "B".repeat(5000) + "\n"
    await h.run(ID, "w1", [
      { stream: "stderr", data: "first\n" },
      { stream: "stderr", data: huge.slice(0, 2 * 1024 * 1024) },
      { stream: "stderr", data: huge.slice(2 * 1024 * 1024) },
      { stream: "stderr", data: "last\n" },
    ])
    const res = await h.request(admin, "GET", `${A}/jobs/${ID}/log?tail=10`)
    expect(res.headers.get("x-dffmpeg-tail-truncated")).toBe("4096 bytes (limits.max_log_tail_bytes)")
    const body = (await res.json()) as { lines: string[]; truncated: boolean; maxBytes: number }
    expect({
      truncated: body.truncated,
      maxBytes: body.maxBytes,
      count: body.lines.length,
      last: body.lines[1],
    }).toEqual({ truncated: true, maxBytes: 4096, count: 2, last: "last" })
    expect(body.lines[0]).toBe("B".repeat(4096 - 6))
    // Lines that fit whole are not marked, even though older bytes were left unread.
    const whole = await h.request(admin, "GET", `${A}/jobs/${ID}/log?tail=1`)
    expect(whole.headers.get("x-dffmpeg-tail-truncated")).toBeNull()
    expect(await whole.json()).toEqual({ lines: ["last"], truncated: false, maxBytes: 4096 })
  })

  test.each([
    [`/jobs/${ID}/log?tail=0`, 400],
    [`/jobs/${ID}/log?tail=x`, 400],
    [`/jobs/${ID}/log?tail=1001`, 400],
    ["/jobs/NOTAULID/log", 404],
    [`/jobs/${ID}/log`, 404],
  ])("%s is %d", async (path, status) => {
    expect((await h.request(admin, "GET", A + path)).status).toBe(status)
  })
})

test("janitor runs one pass and answers with its report", async () => {
  const res = await h.request(admin, "POST", `${A}/janitor`)
  expect(res.status).toBe(200)
  expect(await res.json()).toMatchObject({ suppressed: false, lost: [], pruned: { jobs: 0, workers: 0 } })
  expect(h.janitorRuns).toBe(1)
})

describe("dashboard sign-in links", () => {
  test("POST /dashboard-link: a link for the signing admin, stored only as its hash, under dashboard_url or the address reached", async () => {
    const res = await h.request(admin, "POST", `${A}/dashboard-link`, { ttlSeconds: 120 })
    expect(res.status).toBe(201)
    const link = (await res.json()) as { url: string; user: string; expiresAt: number }
    expect(link).toEqual({
      url: expect.stringMatching(/^http:\/\/localhost\/dashboard\/link\?token=[A-Za-z0-9_-]{43}$/),
      user: admin.name,
      expiresAt: h.clock + 120_000,
    })
    const token = new URL(link.url).searchParams.get("token")!
    expect(await h.store.takeSignInLink(token, h.clock)).toBeUndefined()
    expect(await h.store.takeSignInLink(sha256Hex(token), h.clock)).toBe(admin.name)

    const proxied = await RouteHarness.open({ dashboard_url: "https://ff.example.org/dffmpeg" })
    try {
      const r = await proxied.request(admin, "POST", `${A}/dashboard-link`, {})
      expect(((await r.json()) as { url: string }).url).toStartWith(
        "https://ff.example.org/dffmpeg/dashboard/link?token=",
      )
    } finally {
      await proxied.close()
    }
  })

  test("over a broker (no address of its own) the link uses a running coordinator's registered address", async () => {
    await h.store.registerCoordinator(
      { id: "c1", host: "h", pid: 1, version: "x", url: "http://10.0.0.5:8000", startedAt: h.clock, seenAt: h.clock },
      0,
    )
    const res = await h.request(admin, "POST", `http://broker.invalid${A}/dashboard-link`, {})
    expect(((await res.json()) as { url: string }).url).toStartWith("http://10.0.0.5:8000/dashboard/link?token=")
  })

  test.each([[{ ttlSeconds: 5 }], [{ ttlSeconds: 86_401 }], [{ ttlSeconds: 1.5 }], [{ user: "x" }]])(
    "POST %p is refused with 400 and stores nothing",
    async (body) => {
      const res = await h.request(admin, "POST", `${A}/dashboard-link`, body)
      expect(res.status).toBe(400)
      expect((await errorOf(res)).code).toBe("E_INVALID")
    },
  )

  test("is for admins only", async () => {
    expect((await h.request(alice, "POST", `${A}/dashboard-link`, {})).status).toBe(403)
  })
})

describe("job retry", () => {
  test("a failed detached job is queued again as a new job; any other is 409; an unknown one 404", async () => {
    await h.job("01M8DFWF4PCGSZBYEVT8TNJN46", { stdin: false })
    await h.store.failJob("01M8DFWF4PCGSZBYEVT8TNJN46", "boom", h.clock)
    const res = await h.request(admin, "POST", `${A}/jobs/01M8DFWF4PCGSZBYEVT8TNJN46/retry`)
    expect(res.status).toBe(201)
    const job = (await res.json()) as { id: string; status: string }
    expect(job.status).toBe("queued")
    expect((await h.store.events(job.id))[0].reason).toBe(`retry of 01M8DFWF4PCGSZBYEVT8TNJN46 (by ${admin.name})`)
    const again = await h.request(admin, "POST", `${A}/jobs/${job.id}/retry`)
    expect(again.status).toBe(409)
    expect((await errorOf(again)).message).toBe(
      `job ${job.id} cannot be retried: only a failed job can be, and it is queued`,
    )
    expect((await h.request(admin, "POST", `${A}/jobs/01M8DFWF4PCGSZBYEVT8TNJN47/retry`)).status).toBe(404)
    expect((await h.request(alice, "POST", `${A}/jobs/${job.id}/retry`)).status).toBe(403)
  })
})
