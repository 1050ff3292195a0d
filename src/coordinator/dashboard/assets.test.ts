import { expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"

const dir = join(import.meta.dir, "assets")
const read = (name: string) => readFileSync(join(dir, name), "utf8")

test("the page's script never turns text into markup", () => {
  const js = read("app.js")
  // Data from workers and jobs (versions, capabilities, arguments, logs) must only ever be text.
  for (const sink of [
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "createContextualFragment",
    "DOMParser",
    "srcdoc",
    "eval(",
    "new Function",
    'setAttribute("style"',
    'setAttribute("on',
  ]) {
    expect({ sink, found: js.includes(sink) }).toEqual({ sink, found: false })
  }
})

test("the page has no inline script, inline style or event-handler attribute, and only relative URLs", () => {
  const html = read("index.html")
  expect(html).not.toMatch(/\sstyle\s*=|<style|\son[a-z]+\s*=/i)
  for (const m of html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/g)) {
    expect(m[0]).toMatch(/\ssrc="assets\//)
    expect(m[1].trim()).toBe("")
  }
  for (const m of html.matchAll(/\s(?:src|href)="([^"]*)"/g)) expect(m[1]).toMatch(/^(assets\/|#)/)
  // The script calls its own routes relatively too (the page may sit under a reverse proxy's prefix).
  expect(read("app.js")).not.toMatch(/["'`]\/(dashboard|assets)\//)
})
