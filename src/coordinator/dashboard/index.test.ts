import { afterEach, describe, expect, test } from "bun:test"
import { createConsola } from "consola/core"
import * as v from "valibot"
import { waitFor } from "../../../test/helpers/bin.ts"
import { newJob as fixtureJob, memoryStore } from "../../../test/helpers/fixtures.ts"
import { generateKey } from "../../shared/auth/hmac.ts"
import { CoordinatorConfig } from "../../shared/config/server-schema.ts"
import { newId } from "../../shared/ids.ts"
import type { Job, Role, Worker } from "../../shared/protocol/schemas.ts"
import type { Store } from "../../store/index.ts"
import type { NewJob } from "../../store/types.ts"
import { createApp } from "../api/app.ts"
import { Hub, topic } from "../hub.ts"
import { createJanitor, timings } from "../janitor.ts"
import { createMetrics } from "../metrics.ts"
import { wireWakeups } from "../wakeups.ts"
import { CSP } from "./index.ts"
import type { JobUpdate } from "./live.ts"
import type { DashboardState, JobDetail } from "./views.ts"

const STALE_MS = 30_000

interface Harness {
  store: Store
  hub: Hub
  logs: string[]
  /** Moves the coordinator's clock. */
  advance(ms: number): void
  request(path: string, init?: RequestInit & { ip?: string }): Promise<Response>
  addUser(name: string, role: Role): Promise<string>
  login(name: string, key: string): Promise<Response>
  /** Signs in an admin and returns the Cookie header for later requests. */
  admin(name?: string): Promise<string>
}

const stores: Store[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
})

/** The whole coordinator app in-process, over an in-memory store wired to the hub as in production. */
async function harness(config: Record<string, unknown> = {}): Promise<Harness> {
  const raw = await memoryStore()
  stores.push(raw)
  const hub = new Hub()
  const store = raw
  const cfg = v.parse(CoordinatorConfig, config)
  const logs: string[] = []
  const log = createConsola({ level: 4, reporters: [{ log: (o) => void logs.push(JSON.stringify(o.args)) }] })
  let offset = 0
  const now = () => Date.now() + offset
  // The hub hears of every change as in production; the scheduler is left out so that the jobs a test
  // puts in the store stay where it put them.
  wireWakeups(store, { notifier: hub })
  const janitor = createJanitor({ store, log, now, timings: timings(cfg), startedAt: now() })
  const app = createApp({
    store,
    hub,
    janitor,
    config: cfg,
    log,
    now,
    staleMs: STALE_MS,
    ready: () => true,
    metrics: createMetrics(),
    startedAt: now(),
  })
  const request = (path: string, init: RequestInit & { ip?: string } = {}) => {
    // A Bun server as Hono sees it: the peer's address and a per-request idle timeout.
    const server = { requestIP: () => ({ address: init.ip ?? "127.0.0.1", family: "IPv4", port: 40000 }), timeout() {} }
    return Promise.resolve(app.fetch(new Request(`http://dash.test${path}`, init), { server } as never))
  }
  const login = (name: string, key: string) =>
    request("/dashboard/login", {
      method: "POST",
      headers: { "X-Dffmpeg-Dashboard": "1", "Content-Type": "application/json" },
      body: JSON.stringify({ name, key }),
    })
  const h: Harness = {
    store,
    hub,
    logs,
    advance: (ms) => void (offset += ms),
    request,
    async addUser(name, role) {
      const key = generateKey()
      await store.addUser(name, role, key, now())
      return key
    },
    login,
    async admin(name = "boss") {
      const key = await h.addUser(name, "admin")
      const res = await login(name, key)
      expect(res.status).toBe(200)
      return cookieOf(res)
    },
  }
  return h
}

const json = async <T>(res: Response) => (await res.json()) as T
const errorOf = (res: Response) => json<{ error: { code: string; message: string } }>(res)

function cookieOf(res: Response): string {
  return (res.headers.get("set-cookie") ?? "").split(";")[0]
}

const post = (cookie: string | undefined, body?: unknown, extra: Record<string, string> = {}): RequestInit => ({
  method: "POST",
  headers: {
    "X-Dffmpeg-Dashboard": "1",
    "Content-Type": "application/json",
    ...(cookie ? { Cookie: cookie } : {}),
    ...extra,
  },
  body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
})

const newJob = (over: Partial<NewJob> = {}): NewJob =>
  fixtureJob(newId(), { requester: "client1", args: ["-i", "in.mkv", "out.mp4"], ...over })

async function addWorker(store: Store, id: string, at = Date.now()) {
  await store.upsertWorker(
    id,
    { draining: false, binaries: ["ffmpeg"], paths: ["Media"], maxJobs: 2, version: "1.0.0", capabilities: {} },
    "token-" + id,
    at,
  )
  await store.verifyWorker(id, "token-" + id, at)
}

/** A job running on worker `w1` (epoch 1). */
async function runningJob(store: Store, over: Partial<NewJob> = {}) {
  await addWorker(store, "w1")
  const job = await store.createJob(newJob(over), Date.now())
  await store.assign(job.id, "w1", Date.now())
  const started = await store.start(job.id, "w1", 1, Date.now())
  expect(started?.status).toBe("running")
  return started!
}

const enc = (s: string) => new TextEncoder().encode(s)

describe("page and files", () => {
  test("the page is served with a strict CSP and no inline script or style", async () => {
    const h = await harness()
    const res = await h.request("/")
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toStartWith("text/html")
    expect({
      csp: res.headers.get("content-security-policy"),
      nosniff: res.headers.get("x-content-type-options"),
      referrer: res.headers.get("referrer-policy"),
      frame: res.headers.get("x-frame-options"),
    }).toEqual({ csp: CSP, nosniff: "nosniff", referrer: "no-referrer", frame: "DENY" })
    expect(CSP).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    )
    const html = await res.text()
    expect(html).toContain('src="assets/app.js"')
    expect(html).toContain('href="assets/app.css"')
    expect(html).not.toMatch(/style=|<style|<script>|<script(?![^>]*\bsrc=)|\son[a-z]+=/i)
  })

  test("files have their content types, and unknown ones are 404 JSON", async () => {
    const h = await harness()
    const types = await Promise.all(
      ["app.js", "app.css", "favicon.svg"].map(async (f) =>
        (await h.request(`/assets/${f}`)).headers.get("content-type"),
      ),
    )
    expect(types).toEqual(["text/javascript; charset=utf-8", "text/css; charset=utf-8", "image/svg+xml"])
    for (const f of ["nope.js", "__proto__", "constructor", "..%2Fapp.ts"]) {
      const res = await h.request(`/assets/${f}`)
      expect(res.status).toBe(404)
      expect((await errorOf(res)).error.code).toBe("E_NOT_FOUND")
      expect(res.headers.get("content-security-policy")).toBe(CSP)
    }
  })

  test("every dashboard route is refused outside allowed_dashboard_ips, the rest of the app is not touched", async () => {
    const h = await harness()
    for (const path of [
      "/",
      "/assets/app.js",
      "/dashboard/api/state",
      "/dashboard/api/session",
      "/dashboard/api/events",
    ]) {
      const res = await h.request(path, { ip: "8.8.8.8" })
      expect(res.status).toBe(403)
      expect((await errorOf(res)).error.message).toContain("allowed_dashboard_ips")
      expect(res.headers.get("content-security-policy")).toBe(CSP)
    }
    const login = await h.request("/dashboard/login", { ...post(undefined, { name: "x", key: "y" }), ip: "8.8.8.8" })
    expect(login.status).toBe(403)
    // A forwarded address is only believed from a trusted proxy (loopback by default).
    expect((await h.request("/", { ip: "127.0.0.1", headers: { "X-Forwarded-For": "8.8.8.8" } })).status).toBe(403)
    expect((await h.request("/", { ip: "10.1.2.3", headers: { "X-Forwarded-For": "8.8.8.8" } })).status).toBe(200)
    const health = await h.request("/health", { ip: "8.8.8.8" })
    expect(health.status).toBe(200)
    expect(health.headers.get("content-security-policy")).toBeNull()
    const unknown = await h.request("/no/such/route", { ip: "8.8.8.8" })
    expect(unknown.status).toBe(404)
  })

  test("a disabled dashboard answers 404 JSON on all its routes", async () => {
    const h = await harness({ web_dashboard_enabled: false })
    for (const path of ["/", "/assets/app.js", "/dashboard/api/state", "/dashboard/api/events"]) {
      const res = await h.request(path)
      expect(res.status).toBe(404)
      expect((await errorOf(res)).error.message).toContain("dashboard is disabled")
    }
  })

  test("under path_base the page is at /base/, and /base redirects there so relative URLs resolve", async () => {
    const h = await harness({ path_base: "/dffmpeg" })
    const bare = await h.request("/dffmpeg?x=1")
    expect(bare.status).toBe(308)
    expect(bare.headers.get("location")).toBe("dffmpeg/?x=1")
    expect(new URL(bare.headers.get("location")!, "http://dash.test/dffmpeg?x=1").pathname).toBe("/dffmpeg/")
    expect((await h.request("/dffmpeg/")).status).toBe(200)
    expect((await h.request("/dffmpeg/assets/app.js")).status).toBe(200)
    expect((await h.request("/dffmpeg/dashboard/api/state")).status).toBe(200)
    expect((await h.request("/")).status).toBe(404)
    expect((await h.request("/assets/app.js")).status).toBe(404)
    const key = await h.addUser("boss", "admin")
    const res = await h.request("/dffmpeg/dashboard/login", post(undefined, { name: "boss", key }))
    expect(res.headers.get("set-cookie")).toContain("Path=/dffmpeg;")
  })
})

describe("data", () => {
  test("the state lists workers with their load, active and recent jobs, stats and the version", async () => {
    const h = await harness()
    const job = await runningJob(h.store)
    await h.store.createJob(newJob({ args: ["-i", "queued.mkv", "x.mp4"] }), Date.now())
    const done = await h.store.createJob(newJob(), Date.now())
    await h.store.requestCancel(done.id, "test", Date.now())
    await addWorker(h.store, "gone-long-ago", Date.now() - 25 * 3600_000)
    await h.store.reapWorkers(Date.now() - 3600_000)
    await addWorker(h.store, "gone-recently", Date.now() - 60_000)
    await h.store.reapWorkers(Date.now() - 30_000)
    const res = await h.request("/dashboard/api/state")
    expect(res.status).toBe(200)
    const s = (await res.json()) as DashboardState
    expect(s.workers.map((w) => [w.id, w.status, w.health, w.load, w.slots])).toEqual([
      ["gone-recently", "offline", "offline", 0, 2],
      ["w1", "online", "ok", 1, 2],
    ])
    expect(s.workers[1]).toMatchObject({
      binaries: ["ffmpeg"],
      paths: ["Media"],
      version: "1.0.0",
      drainRequested: false,
    })
    expect(s.jobs.active.map((j) => j.status).sort()).toEqual(["queued", "running"])
    expect(s.jobs.active.find((j) => j.id === job.id)).toMatchObject({
      workerId: "w1",
      command: "-i in.mkv out.mp4",
      binary: "ffmpeg",
      progress: null,
    })
    expect(s.jobs.recent).toEqual([expect.objectContaining({ id: done.id, status: "canceled", error: "test" })])
    expect(s.stats.jobs).toMatchObject({ queued: 1, running: 1, canceled: 1 })
    expect(typeof s.version).toBe("string")
    expect(Math.abs(s.now - Date.now())).toBeLessThan(5000)
  })

  test("a job's page data has its timeline and a log tail with ffmpeg's \\r status lines collapsed", async () => {
    const h = await harness()
    const job = await runningJob(h.store)
    const out = [
      {
        seq: 1,
        stream: "stderr" as const,
        data: enc("Input #0, lavfi\nframe=   1 fps=0.0\rframe=  10 fps=9.9\r\ncaf"),
      },
      { seq: 2, stream: "stdout" as const, data: enc("binary") },
      // "é" split between two chunks, then a byte that is not UTF-8 at all.
      { seq: 3, stream: "stderr" as const, data: new Uint8Array([0xc3]) },
      { seq: 4, stream: "stderr" as const, data: new Uint8Array([0xa9, 0x0a, 0xff, 0x0a]) },
      { seq: 5, stream: "stderr" as const, data: enc("frame=  20 fps=10\r") },
    ]
    expect((await h.store.appendOutput(job.id, "w1", 1, out, undefined, Date.now())).ok).toBe(true)
    const res = await h.request(`/dashboard/api/jobs/${job.id}`)
    expect(res.status).toBe(200)
    const d = (await res.json()) as JobDetail
    expect(d.log).toEqual({
      lines: "Input #0, lavfi\nframe=  10 fps=9.9\ncafé\n\ufffd\n",
      partial: "frame=  20 fps=10",
    })
    expect(d.job).toMatchObject({ id: job.id, status: "running", args: ["-i", "in.mkv", "out.mp4"], canceling: false })
    expect(d.events.map((e) => e.status)).toEqual(["queued", "assigned", "running"])
  })

  test("bad ids and unknown jobs are 404, malformed bodies 400, never 500", async () => {
    const h = await harness()
    const cookie = await h.admin()
    const unknown = newId()
    const cases: [string, RequestInit, number][] = [
      ["/dashboard/api/jobs/nope", {}, 404],
      ["/dashboard/api/jobs/" + "x".repeat(500), {}, 404],
      [`/dashboard/api/jobs/${unknown}`, {}, 404],
      ["/dashboard/api/events?job=nope", {}, 404],
      [`/dashboard/api/events?job=${unknown}`, {}, 404],
      [`/dashboard/api/jobs/${unknown}/cancel`, post(cookie), 404],
      ["/dashboard/api/jobs/nope/cancel", post(cookie), 404],
      ["/dashboard/api/workers/nobody/drain", post(cookie, { on: true }), 404],
      ["/dashboard/api/workers/bad%20id/drain", post(cookie, { on: true }), 404],
      ["/dashboard/login", post(undefined, "{"), 400],
      ["/dashboard/login", post(undefined, "\xff"), 400],
      ["/dashboard/login", post(undefined, { name: 1, key: "k" }), 400],
      ["/dashboard/login", post(undefined, { name: "a", key: "k", extra: 1 }), 400],
      ["/dashboard/login", post(undefined, "x".repeat(10_000)), 413],
      ["/dashboard/api/nothing", {}, 404],
    ]
    await addWorker(h.store, "w1")
    cases.push(
      ["/dashboard/api/workers/w1/drain", post(cookie, { on: "yes" }), 400],
      ["/dashboard/api/workers/w1/drain", post(cookie, "[]"), 400],
    )
    for (const [path, init, status] of cases) {
      const res = await h.request(path, init)
      expect({ path, status: res.status }).toEqual({ path, status })
      expect((await errorOf(res)).error.code).toBeString()
    }
  })
})

describe("sign-in", () => {
  test("an admin's name and key give an HttpOnly, SameSite=Strict session cookie", async () => {
    const h = await harness({ dashboard_session_hours: 2 })
    const key = await h.addUser("boss", "admin")
    const res = await h.login("boss", ` ${key}\n`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ user: "boss", expiresAt: expect.any(Number) })
    const cookie = res.headers.get("set-cookie")!
    expect(cookie).toMatch(
      /^dffmpeg_session=boss\.\d+\.[A-Za-z0-9_-]{43}; Max-Age=7200; Path=\/; HttpOnly; SameSite=Strict$/,
    )
    const session = await (await h.request("/dashboard/api/session", { headers: { Cookie: cookieOf(res) } })).json()
    expect(session).toEqual({ user: "boss", expiresAt: expect.any(Number), loginRequired: false })
    expect(h.logs.join("\n")).not.toContain(key)
  })

  test("a wrong key and an unknown name get the same answer; a non-admin is refused; the key is never logged", async () => {
    const h = await harness()
    const key = await h.addUser("boss", "admin")
    const clientKey = await h.addUser("alice", "client")
    const wrong = await h.login("boss", generateKey())
    const nobody = await h.login("nobody", key)
    expect([wrong.status, nobody.status]).toEqual([401, 401])
    expect(await wrong.json()).toEqual(await nobody.json())
    expect(wrong.headers.get("set-cookie")).toBeNull()
    const client = await h.login("alice", clientKey)
    expect(client.status).toBe(403)
    expect(client.headers.get("set-cookie")).toBeNull()
    const logs = h.logs.join("\n")
    expect(logs).toContain("dashboard sign-in refused")
    expect(logs).not.toContain(key)
    expect(logs).not.toContain(clientKey)
  })

  test("failed sign-ins are throttled per address and per name with a growing Retry-After; a success resets them", async () => {
    const h = await harness()
    const key = await h.addUser("boss", "admin")
    const attempt = (name: string, k: string, ip: string) =>
      h.request("/dashboard/login", { ...post(undefined, { name, key: k }), ip })
    for (let i = 0; i < 5; i++) expect((await attempt("boss", generateKey(), "10.0.0.1")).status).toBe(401)
    const refused = await attempt("boss", key, "10.0.0.1")
    expect(refused.status).toBe(429)
    expect(refused.headers.get("retry-after")).toBe("1")
    expect(await json<unknown>(refused)).toEqual({
      error: {
        code: "E_THROTTLED",
        message: "too many failed sign-ins from this address or for this name; try again in 1 s",
        details: { retryAfter: 1 },
      },
    })
    expect(refused.headers.get("set-cookie")).toBeNull()
    // The name is throttled from another address too, and the address for another name.
    expect((await attempt("boss", key, "10.0.0.2")).status).toBe(429)
    expect((await attempt("cam", key, "10.0.0.1")).status).toBe(429)
    expect((await attempt("cam", key, "10.0.0.2")).status).toBe(401)
    h.advance(1000)
    expect((await attempt("boss", generateKey(), "10.0.0.1")).status).toBe(401)
    expect((await attempt("boss", key, "10.0.0.1")).headers.get("retry-after")).toBe("2")
    h.advance(2000)
    expect((await attempt("boss", key, "10.0.0.1")).status).toBe(200)
    expect((await attempt("boss", generateKey(), "10.0.0.1")).status).toBe(401)
    expect((await attempt("boss", key, "10.0.0.1")).status).toBe(200)
    expect(h.logs.join("\n")).toContain("dashboard sign-in throttled")
  })

  test("a session ends when the key is rotated, the user removed, or it expires; a forged one never works", async () => {
    const h = await harness({ dashboard_require_login: true, dashboard_session_hours: 1 })
    const state = (cookie: string) => h.request("/dashboard/api/state", { headers: { Cookie: cookie } })
    const cookie = await h.admin("boss")
    expect((await state(cookie)).status).toBe(200)
    await h.store.setUserKey("boss", generateKey())
    expect((await state(cookie)).status).toBe(401)

    const again = await h.admin("root")
    const [name, expiry, sig] = again.split("=")[1].split(".")
    expect((await state(`dffmpeg_session=${name}.${Number(expiry) + 3600}.${sig}`)).status).toBe(401)
    expect((await state(`dffmpeg_session=boss.${expiry}.${sig}`)).status).toBe(401)
    expect((await state(`dffmpeg_session=${name}.${expiry}.${"A".repeat(43)}`)).status).toBe(401)
    expect((await state("dffmpeg_session=garbage")).status).toBe(401)
    expect((await state(again)).status).toBe(200)
    h.advance(3600_000)
    expect((await state(again)).status).toBe(401)
    h.advance(-3600_000)
    await h.store.removeUser("root")
    expect((await state(again)).status).toBe(401)
  })

  test("the cookie is Secure when a trusted proxy says the request came over https", async () => {
    const h = await harness({ allowed_dashboard_ips: ["0.0.0.0/0"] })
    const key = await h.addUser("boss", "admin")
    const login = (ip: string) =>
      h.request("/dashboard/login", { ...post(undefined, { name: "boss", key }, { "X-Forwarded-Proto": "https" }), ip })
    expect((await login("127.0.0.1")).headers.get("set-cookie")).toContain("; Secure")
    expect((await login("10.9.9.9")).headers.get("set-cookie")).not.toContain("Secure")
  })

  test("with dashboard_require_login the data and the stream need a session, the page and files do not", async () => {
    const h = await harness({ dashboard_require_login: true })
    const job = await h.store.createJob(newJob(), Date.now())
    for (const path of [
      "/dashboard/api/state",
      `/dashboard/api/jobs/${job.id}`,
      "/dashboard/api/events",
      `/dashboard/api/events?job=${job.id}`,
    ]) {
      const res = await h.request(path)
      expect({ path, status: res.status }).toEqual({ path, status: 401 })
      expect((await errorOf(res)).error.code).toBe("E_AUTH")
    }
    for (const path of ["/", "/assets/app.js", "/assets/app.css"]) expect((await h.request(path)).status).toBe(200)
    expect(await (await h.request("/dashboard/api/session")).json()).toEqual({
      user: null,
      expiresAt: null,
      loginRequired: true,
    })
    const cookie = await h.admin()
    expect((await h.request(`/dashboard/api/jobs/${job.id}`, { headers: { Cookie: cookie } })).status).toBe(200)
    const out = await h.request("/dashboard/logout", post(cookie))
    expect(out.headers.get("set-cookie")).toMatch(/^dffmpeg_session=; Max-Age=0; Path=\//)
  })
})

describe("actions", () => {
  test("are refused without the dashboard header, from another origin, or without a session", async () => {
    const h = await harness()
    const cookie = await h.admin()
    const job = await h.store.createJob(newJob(), Date.now())
    const path = `/dashboard/api/jobs/${job.id}/cancel`
    const noHeader = await h.request(path, { method: "POST", headers: { Cookie: cookie } })
    expect(noHeader.status).toBe(403)
    expect((await errorOf(noHeader)).error.message).toContain("X-Dffmpeg-Dashboard")
    expect((await h.request(path, post(cookie, undefined, { Origin: "https://evil.example" }))).status).toBe(403)
    expect((await h.request(path, post(cookie, undefined, { Origin: "null" }))).status).toBe(403)
    expect((await h.request(path, post(cookie, undefined, { "Sec-Fetch-Site": "cross-site" }))).status).toBe(403)
    expect((await h.request("/dashboard/login", { method: "POST", body: "{}" })).status).toBe(403)
    expect((await h.request(path, post(undefined))).status).toBe(401)
    expect((await h.store.getJob(job.id))?.status).toBe("queued")
    // The page's own requests: same origin, header set.
    const ok = await h.request(
      path,
      post(cookie, undefined, { Origin: "http://dash.test", "Sec-Fetch-Site": "same-origin" }),
    )
    expect(ok.status).toBe(200)
  })

  test("cancel stops a queued job at once, asks a running job's worker to stop it, and is 409 once the job ended", async () => {
    const h = await harness()
    const cookie = await h.admin("boss")
    const queued = await h.store.createJob(newJob(), Date.now())
    const res = await h.request(`/dashboard/api/jobs/${queued.id}/cancel`, post(cookie))
    expect(res.status).toBe(200)
    expect((await json<{ job: Job & { canceling: boolean } }>(res)).job).toMatchObject({
      status: "canceled",
      error: "canceled by boss from the dashboard",
    })
    const again = await h.request(`/dashboard/api/jobs/${queued.id}/cancel`, post(cookie))
    expect(again.status).toBe(409)

    const running = await runningJob(h.store)
    const woken = h.hub.wait(topic.worker("w1"), 10_000).then(() => true)
    const stop = await h.request(`/dashboard/api/jobs/${running.id}/cancel`, post(cookie))
    expect(stop.status).toBe(202)
    expect((await json<{ job: Job & { canceling: boolean } }>(stop)).job).toMatchObject({
      status: "running",
      canceling: true,
    })
    expect(await Promise.race([woken, Bun.sleep(2000).then(() => false)])).toBe(true)
    const events = await h.store.events(running.id)
    expect(events.at(-1)).toMatchObject({ status: "canceling", reason: "canceled by boss from the dashboard" })
    expect(h.logs.join("\n")).toContain("job cancel requested")
  })

  test("drain and undrain a worker", async () => {
    const h = await harness()
    const cookie = await h.admin()
    await addWorker(h.store, "w1")
    const on = await h.request("/dashboard/api/workers/w1/drain", post(cookie, { on: true }))
    expect(on.status).toBe(200)
    expect((await json<{ worker: Worker }>(on)).worker).toMatchObject({
      id: "w1",
      status: "draining",
      drainRequested: true,
    })
    const state = (await (await h.request("/dashboard/api/state")).json()) as DashboardState
    expect(state.workers[0]).toMatchObject({ status: "draining", drainRequested: true })
    const off = await h.request("/dashboard/api/workers/w1/drain", post(cookie, { on: false }))
    expect((await json<{ worker: Worker }>(off)).worker).toMatchObject({ status: "online", drainRequested: false })
    expect((await h.request("/dashboard/api/workers/w1/drain", post(undefined, { on: true }))).status).toBe(401)
  })
})

/** Reads Server-Sent Events from a response body. */
function sseReader(res: Response) {
  const reader = res.body!.getReader()
  const dec = new TextDecoder()
  let buf = ""
  const blocks: string[] = []
  const nextBlock = async (): Promise<string> => {
    for (;;) {
      if (blocks.length) return blocks.shift()!
      const { value, done } = await reader.read()
      if (done) throw new Error("event stream ended")
      buf += dec.decode(value, { stream: true })
      let i: number
      while ((i = buf.indexOf("\n\n")) !== -1) {
        blocks.push(buf.slice(0, i))
        buf = buf.slice(i + 2)
      }
    }
  }
  return {
    /** The next event named `name` (others are skipped). */
    async next<T>(name: string): Promise<T> {
      for (;;) {
        const block = await nextBlock()
        const lines = block.split("\n")
        if (lines.find((l) => l.startsWith("event: "))?.slice(7) !== name) continue
        return JSON.parse(
          lines
            .filter((l) => l.startsWith("data: "))
            .map((l) => l.slice(6))
            .join("\n"),
        ) as T
      }
    },
    raw: nextBlock,
    close: () => reader.cancel(),
  }
}

describe("console", () => {
  /** A job of client1 run on w1 and ended: exit 0 (completed) or 1 (failed), with `stderr` stored. */
  async function ended(h: Harness, over: Partial<NewJob>, code: number, stderr = "") {
    if (!(await h.store.getWorker("w1"))) await addWorker(h.store, "w1")
    const job = await h.store.createJob(newJob({ stdin: false, ...over }), Date.now())
    const a = await h.store.assign(job.id, "w1", Date.now())
    await h.store.start(job.id, "w1", a!.epoch, Date.now())
    const chunks = stderr ? [{ seq: 1, stream: "stderr" as const, data: new TextEncoder().encode(stderr) }] : []
    await h.store.appendOutput(job.id, "w1", a!.epoch, chunks, { code, signal: null }, Date.now())
    return job
  }

  test("a sign-in link signs in once: cookie and a redirect to the page, then 410; the token is never logged", async () => {
    const h = await harness({ path_base: "/ff" })
    await h.addUser("boss", "admin")
    const { createSignInLink } = await import("./session.ts")
    const token = await createSignInLink(h.store, "boss", 60_000, Date.now())
    const first = await h.request(`/ff/dashboard/link?token=${token}`)
    expect(first.status).toBe(303)
    expect(first.headers.get("location")).toBe("../")
    const cookie = cookieOf(first)
    expect(cookie).toStartWith("dffmpeg_session=boss.")
    expect(first.headers.get("set-cookie")).toContain("Path=/ff")
    expect(await json(await h.request("/ff/dashboard/api/session", { headers: { Cookie: cookie } }))).toMatchObject({
      user: "boss",
    })
    const second = await h.request(`/ff/dashboard/link?token=${token}`)
    expect(second.status).toBe(410)
    expect(second.headers.get("content-type")).toContain("text/html")
    expect(await second.text()).toContain("already used, has expired or is not valid")
    expect(second.headers.get("set-cookie")).toBeNull()
    expect(h.logs.join("\n")).not.toContain(token)
  })

  test("an expired link, or one whose user is no longer an admin, is refused", async () => {
    const h = await harness()
    await h.addUser("boss", "admin")
    const { createSignInLink } = await import("./session.ts")
    const late = await createSignInLink(h.store, "boss", 60_000, Date.now())
    h.advance(60_001)
    expect((await h.request(`/dashboard/link?token=${late}`)).status).toBe(410)
    const gone = await createSignInLink(h.store, "boss", 60_000, Date.now() + 60_001)
    await h.store.removeUser("boss")
    expect((await h.request(`/dashboard/link?token=${gone}`)).status).toBe(410)
  })

  test("refused links are throttled per address: a flood from one address does not lock out another", async () => {
    const h = await harness()
    await h.addUser("boss", "admin")
    const bad = `/dashboard/link?token=${"A".repeat(43)}`
    for (let i = 0; i < 5; i++) expect((await h.request(bad, { ip: "10.0.0.9" })).status).toBe(410)
    const held = await h.request(bad, { ip: "10.0.0.9" })
    expect(held.status).toBe(429)
    expect(Number(held.headers.get("retry-after"))).toBeGreaterThan(0)
    const { createSignInLink } = await import("./session.ts")
    const token = await createSignInLink(h.store, "boss", 60_000, Date.now())
    expect((await h.request(`/dashboard/link?token=${token}`, { ip: "10.0.0.10" })).status).toBe(303)
  })

  test("finished jobs page by keyset with search and filters; failed ones carry their last stderr lines", async () => {
    const h = await harness()
    const a = await ended(h, { args: ["-i", "$Media/alpha.mkv", "out.mp4"] }, 0)
    const b = await ended(h, { args: ["-i", "$Media/beta.mkv", "out.mp4"] }, 1, "one\ntwo\n\nthree\nfour\nfive\n")
    const c = await ended(h, { args: ["-i", "$Media/gamma.mkv", "out.mp4"], requester: "other" }, 0)
    await h.store.createJob(newJob(), Date.now())
    type Page = { jobs: { id: string; stderr?: string[] }[]; next: string | null }
    const page = async (q: string) => json<Page>(await h.request(`/dashboard/api/finished?${q}`))
    const first = await page("limit=2")
    expect(first.jobs.map((j) => j.id)).toEqual([c.id, b.id])
    expect(first.next).toBe(b.id)
    expect(first.jobs[1].stderr).toEqual(["three", "four", "five"])
    expect(first.jobs[0].stderr).toBeUndefined()
    const last = await page(`limit=2&before=${first.next}`)
    expect(last).toEqual({ jobs: [expect.objectContaining({ id: a.id })], next: null })
    expect((await page("q=BETA")).jobs.map((j) => j.id)).toEqual([b.id])
    expect((await page("status=completed")).jobs.map((j) => j.id)).toEqual([c.id, a.id])
    expect((await page("requester=other&worker=w1")).jobs.map((j) => j.id)).toEqual([c.id])
    for (const q of [
      "limit=0",
      "limit=201",
      "limit=2.5",
      "status=queued",
      "worker=a%20b",
      `q=${"x".repeat(201)}`,
      "before=zz",
    ]) {
      const res = await h.request(`/dashboard/api/finished?${q}`)
      expect({ q, status: res.status, code: (await errorOf(res)).error.code }).toEqual({
        q,
        status: 400,
        code: "E_INVALID",
      })
    }
  })

  test("throughput: 24 hours, oldest first, counted by outcome", async () => {
    const h = await harness()
    await ended(h, {}, 0)
    await ended(h, {}, 1)
    const { hours } = await json<{ hours: { at: number; completed: number; failed: number; canceled: number }[] }>(
      await h.request("/dashboard/api/throughput"),
    )
    expect(hours.length).toBe(24)
    expect(hours[23].at).toBe(Math.floor(Date.now() / 3600_000) * 3600_000)
    expect(hours[23]).toMatchObject({ completed: 1, failed: 1, canceled: 0 })
    expect(hours.slice(0, 23).every((x) => x.completed + x.failed + x.canceled === 0)).toBe(true)
  })

  test("the log download is the stored stderr byte for byte, as an attachment", async () => {
    const h = await harness()
    const text = "frame=1\rframe=2\r\nérror: ünicode\n\u0000raw"
    const job = await ended(h, {}, 1, text)
    const res = await h.request(`/dashboard/api/jobs/${job.id}/log`)
    expect(res.status).toBe(200)
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="dffmpeg-${job.id}-stderr.log"`)
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(new TextEncoder().encode(text))
    expect((await h.request(`/dashboard/api/jobs/${newId()}/log`)).status).toBe(404)
  })

  test("retry: an admin action; a failed detached job is queued again as a new job, any other is 409", async () => {
    const h = await harness()
    const cookie = await h.admin()
    const failed = await ended(h, { priority: "batch" }, 1, "no\n")
    const done = await ended(h, {}, 0)
    const attached = await ended(h, { attached: true }, 1)
    expect((await h.request(`/dashboard/api/jobs/${failed.id}/retry`, post(undefined))).status).toBe(401)
    const res = await h.request(`/dashboard/api/jobs/${failed.id}/retry`, post(cookie))
    expect(res.status).toBe(201)
    const { job } = await json<{ job: Job }>(res)
    expect(job).toMatchObject({ status: "queued", args: failed.args, requester: "client1", priority: "batch" })
    expect(job.id).not.toBe(failed.id)
    expect((await h.store.events(job.id))[0].reason).toBe(`retry of ${failed.id} (by boss from the dashboard)`)
    for (const [id, why] of [
      [done.id, "only a failed job can be, and it is completed"],
      [attached.id, "it was attached (only a detached job can be submitted again)"],
      [job.id, "only a failed job can be, and it is queued"],
    ]) {
      const r = await h.request(`/dashboard/api/jobs/${id}/retry`, post(cookie))
      expect({ status: r.status, error: (await errorOf(r)).error }).toEqual({
        status: 409,
        error: expect.objectContaining({ code: "E_CONFLICT", message: `job ${id} cannot be retried: ${why}` }),
      })
    }
    expect(h.logs.some((l) => l.includes("job retried"))).toBe(true)
  })
})

describe("live events", () => {
  test("a state at once, another after a change, and no waiter left once the browser goes away", async () => {
    const h = await harness()
    const before = h.hub.size
    const res = await h.request("/dashboard/api/events")
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toStartWith("text/event-stream")
    expect(res.headers.get("content-security-policy")).toBe(CSP)
    const sse = sseReader(res)
    const first = await sse.raw()
    expect(first).toContain("event: state")
    expect(first).toContain("retry: 2000")
    await waitFor(() => h.hub.size > before, { what: "the stream to wait for changes" })
    const job = await h.store.createJob(newJob(), Date.now())
    const next = await sse.next<DashboardState>("state")
    expect(next.jobs.active.map((j) => j.id)).toEqual([job.id])
    await sse.close()
    await waitFor(() => h.hub.size === before, { what: "the stream's waiter to go" })
  })

  test("bursts of changes are coalesced", async () => {
    const h = await harness()
    const sse = sseReader(await h.request("/dashboard/api/events"))
    await sse.next("state")
    await waitFor(() => h.hub.size > 0)
    const t0 = performance.now()
    for (let i = 0; i < 20; i++) await h.store.createJob(newJob(), Date.now())
    let seen = 0
    while (seen < 20) {
      seen = (await sse.next<DashboardState>("state")).jobs.active.length
      if (seen < 20) expect(performance.now() - t0).toBeLessThan(2000)
    }
    await sse.close()
    await waitFor(() => h.hub.size === 0)
  })

  test("?job= adds job events carrying only the new log text", async () => {
    const h = await harness()
    const job = await runningJob(h.store)
    await h.store.appendOutput(
      job.id,
      "w1",
      1,
      [{ seq: 1, stream: "stderr", data: enc("line one\nframe=1\r") }],
      undefined,
      Date.now(),
    )
    const sse = sseReader(await h.request(`/dashboard/api/events?job=${job.id}`))
    const first = await sse.next<JobUpdate & JobDetail>("job")
    expect(first.log).toEqual({ lines: "line one\n", partial: "frame=1", reset: true })
    expect(first.events.map((e) => e.status)).toEqual(["queued", "assigned", "running"])
    await h.store.appendOutput(
      job.id,
      "w1",
      1,
      [{ seq: 2, stream: "stderr", data: enc("frame=2\r\nline two\n") }],
      undefined,
      Date.now(),
      { timeMs: 1000, durationMs: 4000, percent: 25, speed: 1.5, fps: 25, frame: 25, etaMs: 2000 },
    )
    const second = await sse.next<JobUpdate & JobDetail>("job")
    expect(second.log).toEqual({ lines: "frame=2\nline two\n", partial: "", reset: false })
    expect(second.job.progress).toMatchObject({ percent: 25, speed: 1.5 })
    await h.store.appendOutput(job.id, "w1", 1, [], { code: 0, signal: null }, Date.now())
    const last = await sse.next<JobUpdate & JobDetail>("job")
    expect(last.job.status).toBe("completed")
    expect(last.log.lines).toBe("")
    expect(last.events.at(-1)?.status).toBe("completed")
    await sse.close()
    await waitFor(() => h.hub.size === 0)
  })

  test("with sign-in required, an open stream ends once its session no longer holds", async () => {
    const h = await harness({ dashboard_require_login: true })
    const cookie = await h.admin("boss")
    const sse = sseReader(await h.request("/dashboard/api/events", { headers: { Cookie: cookie } }))
    await sse.next("state")
    await h.store.setUserKey("boss", generateKey())
    // Any change starts a round, and the round checks the session first.
    await h.store.createJob(newJob(), Date.now())
    await expect(sse.next("state")).rejects.toThrow("event stream ended")
    await waitFor(() => h.hub.size === 0)
  })
})

describe("/health", () => {
  test("pings the database: 200 with its engine while it answers, 503 with its error once it does not", async () => {
    const h = await harness()
    const up = await h.request("/health")
    expect(up.status).toBe(200)
    const body = await json<{ status: string; components: { database: Record<string, unknown> } }>(up)
    expect(body.status).toBe("ok")
    expect(body.components.database).toMatchObject({ engine: "sqlite", status: "ok", latencyMs: expect.any(Number) })
    await h.store.close()
    const down = await h.request("/health")
    expect(down.status).toBe(503)
    const after = await json<{ status: string; components: { database: Record<string, unknown> } }>(down)
    expect(after.status).toBe("unavailable")
    expect(after.components.database).toMatchObject({ engine: "sqlite", status: "error", error: expect.any(String) })
    expect(h.logs.some((l) => l.includes("health check: database unavailable"))).toBe(true)
  })
})
