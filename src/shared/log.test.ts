import { describe, expect, test } from "bun:test"
import { formatLine } from "./log.ts"
import { escapeControls } from "./text.ts"

const date = new Date("2026-12-01T10:00:00.000Z")
const at = (args: unknown[], json = false) => formatLine({ args, date, type: "warn", tag: "coordinator:api" }, json)

/** Every character a log line must never carry raw. */
const UNSAFE = [
  ..."\u0000\u0001\u0007\b\t\n\u000b\f\r\u001b\u001f\u007f\u0080\u0085\u009b\u009f\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
]
const RAW = new RegExp(`[${UNSAFE.join("")}]`)
const hostile = `w1\u0000\u001b[31mred\r\nFAKE 2026-12-01 INFO  [coordinator:api] job done\u202eexe.mp4\u2028\u0085\u009b2J`

describe("escapeControls", () => {
  test.each([
    ["NUL", "a\u0000b", "a\\x00b"],
    ["ESC", "\u001b[2J", "\\x1b[2J"],
    ["CR LF and tab", "a\r\nb\tc", "a\\r\\nb\\tc"],
    ["DEL and C1", "\u007f\u0085\u009b", "\\x7f\\x85\\x9b"],
    ["bidi override and isolates", "\u202eabc\u2066\u2069", "\\u202eabc\\u2066\\u2069"],
    ["line and paragraph separators", "a\u2028b\u2029", "a\\u2028b\\u2029"],
    ["printable text and other scripts unchanged", "Größe 日本 ü ✓ /media/a b.mkv", "Größe 日本 ü ✓ /media/a b.mkv"],
  ])("%s", (_what, input, out) => {
    expect(escapeControls(input)).toBe(out)
  })

  test("every unsafe character is escaped", () => {
    for (const c of UNSAFE) expect(escapeControls(`x${c}y`)).not.toMatch(RAW)
  })
})

describe("formatLine", () => {
  test("the format is unchanged for ordinary strings", () => {
    expect(at(["job claimed", { job: "01JABC", worker: "w1", reason: "two words", n: 3 }])).toBe(
      '2026-12-01T10:00:00.000Z WARN  [coordinator:api] job claimed job=01JABC worker=w1 reason="two words" n=3',
    )
  })

  test("text: hostile strings in the message and in the extras stay on one printable line", () => {
    const out = at([
      `worker ${hostile} registered`,
      { worker: hostile, version: "\u001b]0;pwned\u0007", err: new Error(hostile), list: [hostile] },
    ])
    expect(out).not.toMatch(RAW)
    expect(out.split("\n")).toHaveLength(1)
    expect(out).toContain("worker w1\\x00\\x1b[31mred\\r\\nFAKE")
    expect(out).toContain('worker="w1\\u0000\\u001b[31mred\\r\\nFAKE')
    expect(out).toContain('version="\\u001b]0;pwned\\u0007"')
    expect(out).toContain("\\u202eexe.mp4\\u2028\\u0085\\u009b2J")
  })

  test("text: an unquoted value with a control character is quoted and escaped", () => {
    expect(at(["x", { id: "a\u001bb" }])).toEndWith('x id="a\\u001bb"')
    expect(at(["x", { id: "a\u202eb" }])).toEndWith('x id="a\\u202eb"')
  })

  test("text: an error's stack keeps its frames on one line", () => {
    const err = new Error("boom\nsecond")
    const out = at([err])
    expect(out).not.toMatch(RAW)
    expect(out).toContain("Error: boom\\nsecond\\n    at ")
  })

  test("json: one line, valid JSON, the values unchanged once parsed", () => {
    const out = at([`bad ${hostile}`, { worker: hostile, nested: { reason: hostile } }], true)
    expect(out).not.toMatch(RAW)
    expect(JSON.parse(out)).toEqual({
      time: date.toISOString(),
      level: "warn",
      tag: "coordinator:api",
      msg: `bad ${hostile}`,
      fields: { worker: hostile, nested: { reason: hostile } },
    })
  })

  test("json: the same keys on every line, whatever the call passed", () => {
    const bare = JSON.parse(formatLine({ args: ["plain"], date, type: "info", tag: "" }, true))
    expect(bare).toEqual({ time: date.toISOString(), level: "info", tag: null, msg: "plain", fields: {} })
    const withError = JSON.parse(at(["failed", { error: new Error("gone"), skipped: undefined }], true))
    expect(Object.keys(withError)).toEqual(["time", "level", "tag", "msg", "fields"])
    expect(withError.fields).toEqual({ error: "gone" })
  })
})
