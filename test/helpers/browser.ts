import { copyFileSync, mkdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core"
import { ROOT } from "./bin.ts"

/** Debian's chromium (scripts/setup.sh installs it); playwright-core drives it, no browser download. */
export const CHROMIUM = "/usr/bin/chromium"
/** Screenshots of test runs (gitignored). */
export const ARTIFACTS = join(ROOT, "test", "artifacts")

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  })
}

export interface WatchedPage {
  page: Page
  context: BrowserContext
  /** Console errors, uncaught exceptions and Content-Security-Policy violations, in order. */
  problems: string[]
  /** alert/confirm/prompt dialogs the page opened (each is dismissed at once). */
  dialogs: string[]
  close(): Promise<void>
}

/**
 * A page in a fresh context (own cookies and storage) that records everything that would show a broken
 * or attacked page: console errors, uncaught exceptions, CSP violations and JavaScript dialogs.
 */
export async function openPage(browser: Browser, opts: BrowserContextOptions = {}): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, colorScheme: "light", ...opts })
  // Injected by the browser itself, so the page's CSP does not apply to this listener.
  await context.addInitScript(
    `document.addEventListener("securitypolicyviolation", (e) => console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline")))`,
  )
  const page = await context.newPage()
  const problems: string[] = []
  const dialogs: string[] = []
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`)
  })
  page.on("pageerror", (e) => problems.push(`exception: ${e.message}`))
  page.on("dialog", (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`)
    void d.dismiss()
  })
  return { page, context, problems, dialogs, close: () => context.close() }
}

/**
 * Saves a screenshot under test/artifacts; with `copyTo` and `UPDATE_DOCS_IMAGES=1` in the environment
 * also at that path under the repo (the README's images), so ordinary runs leave tracked files alone.
 */
export async function screenshot(
  page: Page,
  name: string,
  opts: { fullPage?: boolean; copyTo?: string } = {},
): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true })
  const file = join(ARTIFACTS, name)
  await page.screenshot({ path: file, fullPage: opts.fullPage ?? false })
  if (opts.copyTo && process.env.UPDATE_DOCS_IMAGES === "1") {
    const dest = join(ROOT, opts.copyTo)
    mkdirSync(dirname(dest), { recursive: true })
    copyFileSync(file, dest)
  }
  return file
}

/** Widths of the page's content and of its viewport: a phone layout must not scroll sideways. */
export function horizontalOverflow(page: Page): Promise<{ content: number; viewport: number }> {
  // Strings rather than functions: the tests are type-checked without the DOM library.
  return page.evaluate<{ content: number; viewport: number }>(
    "({ content: document.documentElement.scrollWidth, viewport: window.innerWidth })",
  )
}
