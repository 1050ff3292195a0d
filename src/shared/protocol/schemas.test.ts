import { describe, expect, test } from "bun:test"
import * as v from "valibot"
import { WorkerRegistration } from "./schemas.ts"

const reg = (over: Record<string, unknown> = {}) => ({
  binaries: ["ffmpeg"],
  paths: ["Movies"],
  maxJobs: 2,
  version: "0.1.0",
  ...over,
})
const issues = (input: unknown) => {
  const r = v.safeParse(WorkerRegistration, input)
  return r.success ? [] : r.issues.map((i) => i.message)
}

describe("WorkerRegistration", () => {
  test("what a worker sends is accepted", () => {
    const caps = {
      platform: "linux",
      arch: "x64",
      sandbox: "bwrap",
      runAs: "nobody (65534:65534)",
      gpus: 2,
      hw: true,
      x: null,
    }
    expect(issues(reg({ capabilities: caps }))).toEqual([])
    expect(issues(reg({ version: "1.2.3-rc.1+g0abc (debian bookworm) é" }))).toEqual([])
  })

  test.each([
    ["an escape sequence in the version", { version: "1\x1b[2J" }, /printable/],
    ["a forged line in the version", { version: "1\r\nFAKE LINE" }, /printable/],
    ["a bidi override in the version", { version: "1\u202eevil" }, /printable/],
    ["a BEL (window title) in the version", { version: "\x1b]0;t\x07" }, /printable/],
    ["an empty version", { version: "" }, /empty/],
    ["a long version", { version: "1".repeat(65) }, /at most 64/],
    ["markup in a capability value", { capabilities: { runAs: "\x1b[31mroot" } }, /printable/],
    ["a long capability value", { capabilities: { runAs: "a".repeat(257) } }, /at most 256/],
    ["a nested capability value", { capabilities: { sandbox: { mode: "\x1b[2J" } } }, /./],
    ["a capability name with controls", { capabilities: { "\x1b[2J": "x" } }, /capability names/],
    [
      "too many capabilities",
      { capabilities: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`c${i}`, i])) },
      /at most 32/,
    ],
  ])("%s is refused", (_name, over, message) => {
    const got = issues(reg(over))
    expect(got.length).toBeGreaterThan(0)
    expect(got.join("; ")).toMatch(message)
  })
})
