import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import type { Browser, Page } from "playwright-core"
import type { Job } from "../../src/shared/protocol/schemas.ts"
import { apiFor } from "../helpers/api.ts"
import { waitFor } from "../helpers/bin.ts"
import { horizontalOverflow, launchBrowser, openPage, screenshot, type WatchedPage } from "../helpers/browser.ts"
import { Cluster } from "../helpers/cluster.ts"
import { makeMedia } from "../helpers/media.ts"

/**
 * The dashboard as a console, in a real headless Chromium against a real cluster (compiled coordinator
 * and one worker with one slot, real ffmpeg): sign-in by a one-time link, why a queued job waits,
 * drain and undrain, finished jobs searched, filtered and paged, the 24 h chart, a failed job's stderr
 * lines, the log download and the retry of a failed detached job.
 */

let browser: Browser
let c: Cluster
const pages: WatchedPage[] = []

async function open(opts: Parameters<typeof openPage>[1] = {}): Promise<WatchedPage> {
  const p = await openPage(browser, opts)
  pages.push(p)
  return p
}

/** A one-time link from `dffmpeg admin dashboard-link` on the coordinator's database (local mode). */
async function link(): Promise<string> {
  const r = await c.admin(["dashboard-link", "--user", "boss", "--json"])
  expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: "" })
  return (JSON.parse(r.out) as { url: string }).url
}

/** A page signed in as boss through a sign-in link. */
async function signedIn(opts: Parameters<typeof openPage>[1] = {}): Promise<WatchedPage> {
  const p = await open(opts)
  await p.page.goto(await link())
  await p.page.locator("#user", { hasText: "boss" }).waitFor()
  await p.page.locator("#live.conn-live").waitFor()
  return p
}

/** A detached job submitted over the API as client1 (no stdin, nobody following it). */
async function detached(args: string[], paths: string[] = []): Promise<Job> {
  return apiFor(c, "client1").json<Job>("POST", "/api/v1/jobs", {
    // Path tokens, as the proxy asks: the stored output names paths as `$Media/...`.
    json: { binary: "ffmpeg", args, paths, cwd: null, stdin: false, pathTokens: true },
  })
}

const quick = (name: string) => [
  "-hide_banner",
  "-f",
  "lavfi",
  "-i",
  "testsrc=duration=0.2:size=64x48:rate=10",
  "-y",
  `$Media/${name}`,
]
const missing = (name: string) => ["-hide_banner", "-i", `$Media/${name}`, "-f", "null", "-"]
/** Runs about `seconds` in real time and writes nothing: a job that holds the worker's one slot. */
const long = (seconds: number) => [
  "-hide_banner",
  "-nostats",
  "-re",
  "-f",
  "lavfi",
  "-i",
  `testsrc=duration=${seconds}:size=64x48:rate=10`,
  "-f",
  "null",
  "-",
]

const finished = (j: { status: string }) => ["completed", "failed", "canceled"].includes(j.status)
async function settled(ids: string[]) {
  return waitFor(
    async () => {
      const jobs = await c.jobs()
      return ids.every((id) => jobs.some((j) => j.id === id && finished(j))) ? jobs : undefined
    },
    { timeoutMs: 60_000, what: `jobs ${ids.join(", ")} to finish` },
  )
}

const activeRow = (page: Page, id: string) => page.locator(`#active-jobs tr[data-job-id="${id}"]`)
const finishedRows = (page: Page) => page.locator("#recent-jobs tbody tr")

beforeAll(async () => {
  ;[browser, c] = await Promise.all([
    launchBrowser(),
    Cluster.start({ workers: 1, maxJobs: 1, coordinatorConfig: { log_level: "debug" } }),
  ])
  await c.addUser("boss", "admin")
}, 30_000)

afterEach(async () => {
  await Promise.all(pages.splice(0).map((p) => p.close()))
})

afterAll(async () => {
  await Promise.all([browser?.close(), c?.stop()])
})

describe("dashboard console", () => {
  test("a one-time link from dashboard-link signs in once; its second use is refused with a page; no log shows it", async () => {
    // Remote mode, over the signed admin API: the link is for the identity that asked.
    await c.enableAdmin("root")
    const remote = await c.remote(["dashboard-link", "--ttl", "2m", "--json"])
    expect({ code: remote.code, err: remote.err }).toEqual({ code: 0, err: "" })
    const issued = JSON.parse(remote.out) as { url: string; user: string; expiresAt: number }
    expect(issued.user).toBe("root")
    const token = new URL(issued.url).searchParams.get("token")!
    expect(issued.url).toBe(`${c.url}/dashboard/link?token=${token}`)
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(issued.expiresAt - Date.now()).toBeGreaterThan(100_000)

    const { page, context, problems } = await open()
    const first = await page.goto(issued.url)
    expect(first?.status()).toBe(200)
    expect(page.url()).toBe(`${c.url}/`)
    await page.locator("#user", { hasText: "root" }).waitFor()
    const cookie = (await context.cookies()).find((k) => k.name === "dffmpeg_session")
    expect(cookie).toMatchObject({ path: "/", httpOnly: true, sameSite: "Strict" })

    const again = await open()
    const second = await again.page.goto(issued.url)
    expect(second?.status()).toBe(410)
    expect(await again.page.locator("#link-refused").textContent()).toContain("already used")
    expect((await again.context.cookies()).find((k) => k.name === "dffmpeg_session")).toBeUndefined()

    // Local mode on the coordinator's database prints a link to where the running coordinator listens.
    const local = await link()
    expect(local.startsWith(`http://127.0.0.1:${c.port}/dashboard/link?token=`)).toBe(true)
    expect((await fetch(local, { redirect: "manual" })).status).toBe(303)
    expect((await fetch(local, { redirect: "manual" })).status).toBe(410)
    // A malformed or unknown token is refused the same way.
    expect((await fetch(`${c.url}/dashboard/link?token=nope`, { redirect: "manual" })).status).toBe(410)
    // Bad --ttl: a usage error, nothing issued.
    const bad = await c.admin(["dashboard-link", "--user", "boss", "--ttl", "3d"])
    expect({ code: bad.code, err: bad.err.split("\n")[0] }).toEqual({
      code: 2,
      err: "dffmpeg: --ttl must be from 10s to 24h (e.g. 90s, 10m, 2h)",
    })

    const log = c.coordinator.stderrText.join("\n")
    expect(log).toContain("dashboard sign-in by link")
    for (const t of [token, new URL(local).searchParams.get("token")!]) expect(log).not.toContain(t)
    expect(problems).toEqual([])
    // The refused second use shows its 410 in the console; nothing else.
    expect(again.problems.filter((m) => !/status of 410/.test(m))).toEqual([])
  })

  test("a queued job says why it waits (all slots busy, then draining); drain and undrain from the page", async () => {
    const { page, problems } = await signedIn()
    const holder = await detached(long(40))
    await activeRow(page, holder.id).locator(".badge", { hasText: "running" }).waitFor({ timeout: 15_000 })
    const queued = await detached(quick("after-holder.mkv"), ["Media"])
    const progress = activeRow(page, queued.id).locator('td[data-label="Progress"] .small')
    await progress.filter({ hasText: "waiting: all 1 slot busy" }).waitFor()
    await screenshot(page, "console-waiting.png")

    const worker = page.locator('#workers tr[data-worker="worker1"]')
    await worker.locator("button", { hasText: "Drain" }).click()
    await worker.locator(".badge", { hasText: "draining (admin)" }).waitFor()
    await progress.filter({ hasText: "waiting: draining: no worker takes new jobs (worker1 draining)" }).waitFor()
    await worker.locator("button", { hasText: "Undrain" }).click()
    await worker.locator(".badge", { hasText: /^online$/ }).waitFor()
    await progress.filter({ hasText: "waiting: all 1 slot busy" }).waitFor()

    await apiFor(c, "root").json("POST", `/api/v1/jobs/${holder.id}/cancel`)
    const jobs = await settled([holder.id, queued.id])
    expect(jobs.find((j) => j.id === queued.id)?.status).toBe("completed")
    expect(jobs.find((j) => j.id === holder.id)?.status).toBe("canceled")
    expect(problems).toEqual([])
  }, 60_000)

  test("finished jobs: failed ones show their last stderr lines; search, filter and pages; the chart's totals", async () => {
    const made: Job[] = []
    for (let i = 1; i <= 9; i++) made.push(await detached(quick(`clip-${i}.mkv`), ["Media"]))
    for (let i = 1; i <= 3; i++) made.push(await detached(missing(`missing-${i}.mkv`), ["Media"]))
    const jobs = await settled(made.map((j) => j.id))
    const done = jobs.filter(finished).sort((a, b) => (a.id < b.id ? 1 : -1))
    for (const j of made.slice(0, 9)) expect(jobs.find((x) => x.id === j.id)?.status).toBe("completed")
    for (const j of made.slice(9)) expect(jobs.find((x) => x.id === j.id)?.status).toBe("failed")

    const { page, problems } = await open()
    await page.goto(c.url + "/")
    const failedRow = page.locator(`#recent-jobs tr[data-job-id="${made[11].id}"]`)
    await failedRow.waitFor()
    expect(await failedRow.locator(".stderr-tail").textContent()).toContain(
      "$Media/missing-3.mkv: No such file or directory",
    )
    expect(await page.locator(`#recent-jobs tr[data-job-id="${made[8].id}"] .stderr-tail`).isHidden()).toBe(true)

    // The chart: one bar group per hour, totals as the coordinator counts them.
    const count = (s: string) => done.filter((j) => j.status === s).length
    const totals = page.locator("#chart-totals")
    await totals.filter({ hasText: `${count("completed")} completed` }).waitFor()
    expect(await totals.getAttribute("data-completed")).toBe(String(count("completed")))
    expect(await totals.getAttribute("data-failed")).toBe(String(count("failed")))
    expect(await totals.getAttribute("data-canceled")).toBe(String(count("canceled")))
    expect(await page.locator("#chart svg g.hour").count()).toBe(24)
    const bars = await Promise.all(
      (await page.locator("#chart svg rect").all()).map(
        async (r) => [await r.getAttribute("class"), Number(await r.getAttribute("data-count"))] as const,
      ),
    )
    const sum = (kind: string) => bars.filter(([k]) => k === kind).reduce((n, [, x]) => n + x, 0)
    expect([sum("completed"), sum("failed"), sum("canceled")]).toEqual([
      count("completed"),
      count("failed"),
      count("canceled"),
    ])

    // Pages of 10, newest first, by keyset: every finished job exactly once.
    await page.locator("#f-size").selectOption("10")
    // One read of the whole list (the rows are replaced as pages change); a function, not a string:
    // a string is evaluated as an expression, not called with the elements.
    const ids = () =>
      finishedRows(page).evaluateAll((rs: { dataset: { jobId: string } }[]) => rs.map((r) => r.dataset.jobId))
    await waitFor(async () => (await ids()).length === 10, { what: "a page of 10" })
    const seen = [...(await ids())]
    expect(await page.locator("#f-newer").isDisabled()).toBe(true)
    while (!(await page.locator("#f-older").isDisabled())) {
      const before = (await ids())[0]
      await page.locator("#f-older").click()
      await waitFor(async () => (await ids())[0] !== before, { what: "the next page" })
      seen.push(...(await ids()))
    }
    expect(seen).toEqual(done.map((j) => j.id))
    await page.locator("#f-newer").click()
    await page.locator("#f-page", { hasText: `page ${Math.ceil(done.length / 10) - 1}` }).waitFor()

    // Search by file name, then by outcome, then by worker and requester.
    await page.locator("#f-size").selectOption("50")
    await page.locator("#f-q").fill("CLIP-7")
    await waitFor(async () => (await ids()).join() === made[6].id, { what: "the one clip-7 job" })
    await page.locator("#f-q").fill("")
    await page.locator("#f-status").selectOption("failed")
    const failed = done.filter((j) => j.status === "failed").map((j) => j.id)
    await waitFor(async () => (await ids()).join() === failed.join(), { what: "the failed jobs" })
    await page.locator("#f-q").fill("100%_")
    await page.locator("#recent-empty", { hasText: "No finished job matches." }).waitFor()
    await page.locator("#f-q").fill("")
    await page.locator("#f-status").selectOption("")
    await page.locator("#f-worker").fill("nobody-here")
    await page.locator("#recent-empty", { hasText: "No finished job matches." }).waitFor()
    await page.locator("#f-worker").fill("worker1")
    await page.locator("#f-requester").fill("client1")
    await waitFor(async () => (await ids()).join() === done.map((j) => j.id).join(), {
      what: "client1's jobs on worker1",
    })

    // The API's bounds: a page of at most 200, a search of at most 200 characters, known outcomes only.
    const refused = async (q: string) => {
      const res = await fetch(`${c.url}/dashboard/api/finished?${q}`)
      return [res.status, ((await res.json()) as { error: { code: string } }).error.code]
    }
    expect(await refused("limit=201")).toEqual([400, "E_INVALID"])
    expect(await refused(`q=${"x".repeat(201)}`)).toEqual([400, "E_INVALID"])
    expect(await refused("status=running")).toEqual([400, "E_INVALID"])
    expect(await refused("before=not-an-id")).toEqual([400, "E_INVALID"])
    expect(problems).toEqual([])
  }, 90_000)

  test("a failed job's log downloads as stored; retry submits it again as a new job that runs, both timelines linked", async () => {
    const failed = await detached(missing("comes-later.mkv"), ["Media"])
    await settled([failed.id])
    const { page, problems } = await signedIn({ acceptDownloads: true })
    await page.goto(`${c.url}/#/jobs/${failed.id}`)
    await page.locator(".job-head .badge", { hasText: "failed" }).waitFor()

    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#download-log").click()])
    expect(download.suggestedFilename()).toBe(`dffmpeg-${failed.id}-stderr.log`)
    const got = readFileSync((await download.path())!)
    const stored = await c.admin(["jobs", "logs", failed.id])
    expect(stored.code).toBe(0)
    expect(got.length).toBeGreaterThan(0)
    expect(Buffer.compare(got, Buffer.from(stored.stdout))).toBe(0)
    expect(got.toString()).toContain("$Media/comes-later.mkv: No such file or directory")

    // A completed job cannot be retried: 409 JSON, nothing created.
    const completed = (await c.jobs()).find((j) => j.status === "completed")!
    const no = await page.request.post(`${c.url}/dashboard/api/jobs/${completed.id}/retry`, {
      headers: { "X-Dffmpeg-Dashboard": "1" },
    })
    expect(no.status()).toBe(409)
    expect(((await no.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: "E_CONFLICT",
      message: `job ${completed.id} cannot be retried: only a failed job can be, and it is completed`,
    })

    // The input exists now: the retry runs and completes.
    makeMedia(["-f", "lavfi", "-i", "testsrc=duration=0.5:size=64x48:rate=10", join(c.storage, "comes-later.mkv")])
    await page.locator("#retry").click()
    await page.waitForURL((u) => /#\/jobs\/[0-9A-Z]{26}$/.test(u.hash) && !u.hash.endsWith(failed.id))
    const fresh = new URL(page.url()).hash.slice("#/jobs/".length)
    await page.locator(".job-head .badge", { hasText: "completed" }).waitFor({ timeout: 20_000 })
    await page.locator("#timeline", { hasText: `retry of ${failed.id} (by boss from the dashboard)` }).waitFor()
    await screenshot(page, "console-retried-job.png")
    await page.locator(`#timeline a[href="#/jobs/${failed.id}"]`).click()
    await page.locator("#timeline", { hasText: `retried as ${fresh} (by boss from the dashboard)` }).waitFor()
    const [before, after] = (await Promise.all([c.job(failed.id), c.job(fresh)])) as unknown as Job[]
    expect(after).toMatchObject({ args: before.args, requester: "client1", status: "completed", attached: false })

    // The same over the CLI: `admin jobs retry`, refused (exit 1, 409) for a job that is not failed.
    const again = await c.remote(["jobs", "retry", failed.id, "--json"])
    expect(again.code).toBe(0)
    const third = JSON.parse(again.out) as Job
    expect(third).toMatchObject({ status: "queued", args: before.args, requester: "client1" })
    await settled([third.id])
    const refused = await c.remote(["jobs", "retry", fresh])
    expect(refused.code).not.toBe(0)
    expect(refused.err).toContain(`job ${fresh} cannot be retried: only a failed job can be, and it is completed`)
    expect(problems.filter((m) => !/status of 409/.test(m))).toEqual([])
  }, 60_000)

  test("a worker's host load from its heartbeats is shown; a GPU's line too (the page fed that state)", async () => {
    const { page, problems } = await open()
    type State = { workers: { id: string; hostLoad: { cpuPercent: number; cpus: number } | null }[] }
    // The worker's heartbeats carry its host's load (no GPU on this machine): the page shows it.
    const state = await waitFor(
      async () => {
        const s = (await (await fetch(`${c.url}/dashboard/api/state`)).json()) as State
        return s.workers.find((w) => w.id === "worker1")?.hostLoad ? s : undefined
      },
      { timeoutMs: 20_000, intervalMs: 100, what: "a heartbeat with the host's load" },
    )
    await page.goto(c.url + "/")
    const host = page.locator('#workers tr[data-worker="worker1"] td[data-label="Host"]')
    await host.filter({ hasText: "CPU " }).waitFor()
    const real = (await host.textContent())!.split("\n")
    expect(real[0]).toMatch(
      new RegExp(`^CPU \\d+% · load \\d+\\.\\d\\d/${state.workers.find((x) => x.id === "worker1")!.hostLoad!.cpus}$`),
    )
    expect(real[1]).toMatch(/^mem \d+\.\d (K|M|G|T)iB \/ \d+(\.\d)? (K|M|G|T)iB$/)
    expect(real).toHaveLength(2)
    const w = state.workers.find((x) => x.id === "worker1")! as { hostLoad: unknown }
    w.hostLoad = {
      at: new Date().toISOString(),
      cpuPercent: 37.4,
      load1: 1.5,
      cpus: 8,
      memUsedBytes: 3 * 2 ** 30,
      memTotalBytes: 16 * 2 ** 30,
      gpus: [{ name: "NVIDIA T400", utilPercent: 41, memUsedBytes: 2 ** 30, memTotalBytes: 2 * 2 ** 30 }],
    }
    // The live stream answers this state: the page renders it as it would a real heartbeat's.
    await page.route("**/dashboard/api/events*", (r) =>
      r.fulfill({
        status: 200,
        contentType: "text/event-stream",
        body: `event: state\ndata: ${JSON.stringify(state)}\n\n`,
      }),
    )
    await page.goto(c.url + "/")
    await host.filter({ hasText: "CPU 37%" }).waitFor()
    expect((await host.textContent())!.split("\n")).toEqual([
      "CPU 37% · load 1.50/8",
      "mem 3.0 GiB / 16 GiB",
      "NVIDIA T400 41% · 1.0 GiB / 2.0 GiB",
    ])
    expect(problems).toEqual([])
  })

  test("screenshots: light and dark at desktop width, and a 390 px phone where nothing scrolls sideways", async () => {
    const failed = (await c.jobs()).find((j) => j.status === "failed")!
    for (const scheme of ["light", "dark"] as const) {
      const { page, problems } = await signedIn({ colorScheme: scheme, viewport: { width: 1366, height: 1400 } })
      await page.goto(c.url + "/")
      await finishedRows(page).first().waitFor()
      await page.locator("#chart svg").waitFor()
      // docs/img/dashboard.png and dashboard-job.png come from dashboard.e2e.test.ts (a job running).
      await screenshot(
        page,
        `console-${scheme}.png`,
        scheme === "light" ? { copyTo: "docs/img/dashboard-console.png" } : {},
      )
      await page.goto(`${c.url}/#/jobs/${failed.id}`)
      await page.locator("#retry").waitFor()
      await page.locator("#live.conn-live").waitFor()
      await screenshot(page, `console-job-${scheme}.png`)
      expect(problems).toEqual([])
    }
    const { page, problems } = await signedIn({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    })
    await page.goto(c.url + "/")
    await finishedRows(page).first().waitFor()
    await page.locator("#chart svg").waitFor()
    expect(await horizontalOverflow(page)).toEqual({ content: 390, viewport: 390 })
    await screenshot(page, "console-phone.png", { fullPage: true })
    await page.goto(`${c.url}/#/jobs/${failed.id}`)
    await page.locator("#retry").waitFor()
    expect(await horizontalOverflow(page)).toEqual({ content: 390, viewport: 390 })
    await screenshot(page, "console-phone-job.png", { fullPage: true })
    expect(problems).toEqual([])
  }, 60_000)
})
