import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import type { Browser } from "playwright-core"
import { apiFor } from "../helpers/api.ts"
import { waitFor } from "../helpers/bin.ts"
import { horizontalOverflow, launchBrowser, openPage, screenshot, type WatchedPage } from "../helpers/browser.ts"
import { Cluster } from "../helpers/cluster.ts"

/**
 * The dashboard in a real headless Chromium against a real cluster (compiled coordinator and worker,
 * real ffmpeg through the proxy): it renders without errors under its CSP, follows jobs live, treats
 * what workers send as text, fits a phone, and lets a signed-in admin cancel a job under a path prefix.
 */

/**
 * A real encode that takes about `seconds` (-re reads the synthetic input in real time). The output's
 * `-t` gives the worker the expected length, so its progress reports carry a percentage.
 */
const encode = (media: string, name: string, seconds: number) => [
  "-hide_banner",
  "-re",
  "-f",
  "lavfi",
  "-i",
  `testsrc=size=160x120:rate=10:duration=${seconds}`,
  "-t",
  String(seconds),
  "-c:v",
  "libx264",
  "-preset",
  "ultrafast",
  "-y",
  join(media, name),
]

// Worker versions are at most 64 characters, hence `__xss=2` rather than `window.__xss=2` in the handler.
const HOSTILE_VERSION = "<script>window.__xss=1</script><img src=x onerror=__xss=2>"
const HOSTILE_NOTE = "<b>bold</b><img src=x onerror=window.__xss=3>"

let browser: Browser
let c: Cluster
const pages: WatchedPage[] = []
/** The job run by the first test, shown by later ones. */
let jobId = ""

async function open(opts: Parameters<typeof openPage>[1] = {}): Promise<WatchedPage> {
  const p = await openPage(browser, opts)
  pages.push(p)
  return p
}

beforeAll(async () => {
  ;[browser, c] = await Promise.all([launchBrowser(), Cluster.start({ workers: 1 })])
}, 30_000)

// Each page holds a live (SSE) connection, and the coordinator allows a few per address
// (limits.max_dashboard_connections_per_ip): a test's pages are closed when it ends, as a person closes tabs.
afterEach(async () => {
  await Promise.all(pages.splice(0).map((p) => p.close()))
})

afterAll(async () => {
  await Promise.all([browser?.close(), c?.stop()])
})

const rowOf = (table: string, id: string) => `#${table} tr[data-job-id="${id}"]`

describe("dashboard", () => {
  test("a job submitted through the proxy appears and completes live, with no console error or CSP violation", async () => {
    const light = await open()
    const dark = await open({ colorScheme: "dark" })
    for (const p of [light, dark]) {
      await p.page.goto(c.url + "/")
      await p.page.locator('#workers tr[data-worker="worker1"]').waitFor()
      await p.page.locator("#live.conn-live").waitFor()
    }
    // The dark page follows the system preference without a stored choice.
    expect(await dark.page.evaluate("document.documentElement.dataset.theme")).toBe("dark")
    await light.page.evaluate("window.__loadedOnce = true")

    const run = c.run("ffmpeg", encode(c.clientMedia, "live.mp4", 4))
    const row = light.page.locator("#active-jobs tbody tr").first()
    await row.waitFor({ timeout: 15_000 })
    jobId = (await row.getAttribute("data-job-id"))!
    await light.page
      .locator(`${rowOf("active-jobs", jobId)} .badge`, { hasText: "running" })
      .waitFor({ timeout: 15_000 })
    await dark.page.locator(`${rowOf("active-jobs", jobId)} .badge`, { hasText: "running" }).waitFor()
    // Progress comes from the worker's parsing of ffmpeg's stats: wait for the first report if the
    // worker sends them, so that the picture shows a moving bar (the test does not depend on it).
    // (Polled from here: a predicate evaluated in the page would be eval, which the page's CSP forbids.)
    const bar = dark.page.locator(`${rowOf("active-jobs", jobId)} .bar`)
    await waitFor(async () => Number(await bar.getAttribute("aria-valuenow")) >= 30, {
      timeoutMs: 3000,
      what: "a progress report",
    }).catch(() => undefined)
    await screenshot(dark.page, "desktop-dark-running.png", { copyTo: "docs/img/dashboard.png" })

    await light.page
      .locator(`${rowOf("recent-jobs", jobId)} .badge`, { hasText: "completed" })
      .waitFor({ timeout: 20_000 })
    const done = await run
    expect({ code: done.code }).toEqual({ code: 0 })
    expect(await light.page.locator(`${rowOf("recent-jobs", jobId)} td[data-label="Outcome"]`).textContent()).toContain(
      "exit 0",
    )
    expect(await light.page.locator(rowOf("active-jobs", jobId)).count()).toBe(0)
    // Still the same document: everything above arrived over the event stream.
    expect(await light.page.evaluate("window.__loadedOnce")).toBe(true)
    await screenshot(light.page, "desktop-light.png")
    expect([...light.problems, ...dark.problems]).toEqual([])
  }, 45_000)

  test("a job page shows the command, the timeline and the log", async () => {
    const { page, problems } = await open({ colorScheme: "dark", viewport: { width: 1366, height: 1100 } })
    await page.goto(c.url + "/")
    await page.locator(`${rowOf("recent-jobs", jobId)} a`).click()
    expect(new URL(page.url()).hash).toBe(`#/jobs/${jobId}`)
    await page.locator("#timeline .badge", { hasText: "completed" }).waitFor()
    expect(await page.locator("#timeline .badge").allTextContents()).toEqual([
      "queued",
      "assigned",
      "running",
      "completed",
    ])
    expect(await page.locator("#job-args").textContent()).toContain("ffmpeg -hide_banner -re -f lavfi")
    await page.locator("#log", { hasText: "Output #0" }).waitFor()
    // ffmpeg's \r status updates are collapsed: no line holds two `frame=` reports.
    const log = (await page.locator("#log").textContent())!
    expect(log.split("\n").filter((l) => (l.match(/frame=/g) ?? []).length > 1)).toEqual([])
    await screenshot(page, "job-page.png", { copyTo: "docs/img/dashboard-job.png" })
    expect(problems).toEqual([])
  })

  test("an unknown job's page says so", async () => {
    const { page, problems } = await open()
    await page.goto(`${c.url}/#/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV`)
    await page.locator("h2", { hasText: "No such job" }).waitFor()
    await page.locator("#live.conn-live").waitFor()
    // The browser reports the 404 of the job's JSON in the console; nothing else may appear.
    expect(problems.filter((m) => !/status of 404/.test(m))).toEqual([])
  })

  test("the theme toggle switches to dark and the choice survives a reload", async () => {
    const { page, problems } = await open()
    await page.goto(c.url + "/")
    const theme = () =>
      page.evaluate<{ theme: string; bg: string }>(
        "({ theme: document.documentElement.dataset.theme, bg: getComputedStyle(document.body).backgroundColor })",
      )
    const before = await theme()
    expect(before.theme).toBe("light")
    await page.locator("#theme").click()
    const after = await theme()
    expect(after.theme).toBe("dark")
    expect(after.bg).not.toBe(before.bg)
    await page.reload()
    await page.locator('#workers tr[data-worker="worker1"]').waitFor()
    expect(await theme()).toEqual(after)
    await screenshot(page, "desktop-dark.png")
    await page.locator("#theme").click()
    await page.reload()
    expect((await theme()).theme).toBe("light")
    expect(problems).toEqual([])
  })

  test("what a hostile worker registers is shown as text and never runs", async () => {
    const { page, problems, dialogs } = await open()
    await page.goto(c.url + "/")
    await page.locator("#live.conn-live").waitFor()
    await c.addUser("evil", "worker")
    const res = await apiFor(c, "evil").json("POST", "/api/v1/worker/register", {
      json: {
        binaries: ["ffmpeg"],
        paths: [],
        maxJobs: 1,
        version: HOSTILE_VERSION,
        capabilities: { note: HOSTILE_NOTE },
      },
    })
    expect(res).toMatchObject({ worker: { id: "evil", version: HOSTILE_VERSION } })
    const row = page.locator('#workers tr[data-worker="evil"]')
    await row.waitFor()
    expect(await row.locator('td[data-label="Version"] .mono').textContent()).toBe(HOSTILE_VERSION)
    expect(await row.locator('td[data-label="Version"] .clip').textContent()).toBe(`note: ${HOSTILE_NOTE}`)
    expect(await page.locator("#workers script, #workers img, #workers b").count()).toBe(0)
    expect(await page.evaluate("window.__xss")).toBeUndefined()
    expect(dialogs).toEqual([])
    expect(problems).toEqual([])
  })

  test("a worker registered with sandbox: none shows an unconfined badge; a sandboxed one does not", async () => {
    const { page, problems } = await open()
    await page.goto(c.url + "/")
    await page.locator("#live.conn-live").waitFor()
    await c.addUser("loose", "worker")
    await apiFor(c, "loose").json("POST", "/api/v1/worker/register", {
      json: {
        binaries: ["ffmpeg"],
        paths: [],
        maxJobs: 1,
        version: "0.1.0",
        capabilities: { sandbox: "none", runAs: "root (0:0)" },
      },
    })
    const badge = (id: string) =>
      page.locator(`#workers tr[data-worker="${id}"] td[data-label="Status"] .badge`, { hasText: "unconfined" })
    await badge("loose").waitFor({ state: "visible" })
    expect(await badge("worker1").isVisible()).toBe(false)
    expect(
      await page.locator('#workers tr[data-worker="worker1"] td[data-label="Version"] .clip').textContent(),
    ).toContain("sandbox: bwrap")
    expect(problems).toEqual([])
  })

  test("on a 375 px phone nothing scrolls sideways", async () => {
    const { page, problems } = await open({
      viewport: { width: 375, height: 812 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      colorScheme: "dark",
    })
    await page.goto(c.url + "/")
    await page.locator(`${rowOf("recent-jobs", jobId)}`).waitFor()
    expect(await horizontalOverflow(page)).toEqual({ content: 375, viewport: 375 })
    await screenshot(page, "phone.png", { fullPage: true })
    await page.goto(`${c.url}/#/jobs/${jobId}`)
    await page.locator("#log", { hasText: "Output #0" }).waitFor()
    expect(await horizontalOverflow(page)).toEqual({ content: 375, viewport: 375 })
    await screenshot(page, "phone-job.png", { fullPage: true })
    expect(problems).toEqual([])
  })
})

describe("dashboard across a coordinator restart", () => {
  test("the page shows that it is reconnecting, then resumes by itself", async () => {
    const { page, problems } = await open()
    await page.goto(c.url + "/")
    await page.locator("#live.conn-live").waitFor()
    await page.evaluate("window.__loadedOnce = true")
    // Stopped for 1.5 s, then started again on the same port and database.
    const restart = c.restartCoordinator("SIGTERM", 1500)
    await page.locator("#live.conn-reconnecting", { hasText: "reconnecting…" }).waitFor()
    await restart
    await page.locator("#live.conn-live").waitFor({ timeout: 15_000 })
    await page.locator('#workers tr[data-worker="worker1"]').waitFor()
    expect(await page.evaluate("window.__loadedOnce")).toBe(true)
    // While the coordinator is down the browser reports the failed stream; nothing else may appear.
    expect(
      problems.filter((m) => !/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_INCOMPLETE_CHUNKED_ENCODING/.test(m)),
    ).toEqual([])
  }, 30_000)
})

describe("dashboard behind a path prefix with sign-in required", () => {
  test("an admin signs in and cancels a running job from its page", async () => {
    const base = "/dffmpeg"
    const p = await Cluster.start({
      startWorkers: false,
      coordinatorConfig: { path_base: base, dashboard_require_login: true },
    })
    let shim: ReturnType<Cluster["spawnProxy"]> | undefined
    try {
      // The helper's worker and client configs know the port only; here they also need the prefix.
      await p.startWorker("worker1", { coordinator: { port: p.port, path_base: base } })
      writeFileSync(
        p.clientConfig,
        JSON.stringify({
          client_id: "client1",
          hmac_key_file: "client1.key",
          coordinator: { port: p.port, path_base: base },
          paths: { Media: p.clientMedia },
        }),
      )
      const key = await p.addUser("boss", "admin")
      expect((await fetch(`${p.url}${base}/dashboard/api/state`)).status).toBe(401)

      const { page, context, problems } = await open()
      await page.goto(p.url + base)
      expect(new URL(page.url()).pathname).toBe(`${base}/`)
      await page.locator("#signin[open]").waitFor()
      await screenshot(page, "signin.png")
      await page.locator("#signin-name").fill("boss")
      await page.locator("#signin-key").fill("AAAA" + key.slice(4))
      await page.locator("#signin-submit").click()
      await page.locator("#signin-error", { hasText: "wrong name or key" }).waitFor()
      await page.locator("#signin-key").fill(key)
      await page.locator("#signin-submit").click()
      await page.locator("#live.conn-live").waitFor()
      await page.locator("#user", { hasText: "boss" }).waitFor()
      const cookie = (await context.cookies()).find((k) => k.name === "dffmpeg_session")
      expect(cookie).toMatchObject({ path: base, httpOnly: true, sameSite: "Strict", secure: false })

      shim = p.spawnProxy("ffmpeg", encode(p.clientMedia, "long.mp4", 60))
      const running = page.locator("#active-jobs tbody tr", { hasText: "running" }).first()
      await running.waitFor({ timeout: 15_000 })
      const id = (await running.getAttribute("data-job-id"))!
      await running.locator("a").click()
      await page.locator("#cancel").click()
      await page.locator("#cancel-yes").click()
      await waitFor(async () => (await p.jobs()).find((j) => j.id === id && j.status === "canceled"), {
        timeoutMs: 15_000,
        what: "the job to be canceled",
      })
      await page.locator(".job-head .badge", { hasText: "canceled" }).waitFor()
      await page.locator("#timeline", { hasText: "canceled by boss from the dashboard" }).waitFor()
      await shim.exited
      // The only errors allowed are the refused sign-in's 401 in the console.
      expect(problems.filter((m) => !/status of 401/.test(m))).toEqual([])
    } finally {
      shim?.kill("SIGKILL")
      await p.stop()
    }
  }, 45_000)
})
