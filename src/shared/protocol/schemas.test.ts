import { describe, expect, test } from "bun:test"
import * as v from "valibot"
import { WorkerRegistration } from "./schemas.ts"
import { Assignment, HeartbeatReply, HeartbeatRequest, PollReply, RegisterReply } from "./worker.ts"

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

describe("worker protocol messages", () => {
  const job = {
    id: "01M8DFWF4PCGSZBYEVT8TNJN46",
    epoch: 2,
    binary: "ffmpeg",
    args: ["-i", "$Movies/a.mkv"],
    paths: ["Movies"],
    cwd: null,
    stdin: false,
  }

  test("an assignment needs a ULID job id, a non-negative integer epoch and every field", () => {
    expect(v.is(Assignment, job)).toBe(true)
    expect(v.is(Assignment, { ...job, id: "not-a-job" })).toBe(false)
    expect(v.is(Assignment, { ...job, epoch: 1.5 })).toBe(false)
    const { stdin: _, ...noStdin } = job
    expect(v.is(Assignment, noStdin)).toBe(false)
    expect(v.is(PollReply, { jobs: [job], verify: "token" })).toBe(true)
    expect(v.is(PollReply, { jobs: [{ ...job, epoch: -1 }] })).toBe(false)
  })

  test("replies tolerate fields a newer coordinator adds and drop them; requests are strict", () => {
    const reply = { pollWaitSeconds: 25, heartbeatSeconds: 5, registrationSeconds: 15, coordinatorVersion: "9" }
    expect(v.parse(RegisterReply, reply)).toEqual({ pollWaitSeconds: 25, heartbeatSeconds: 5, registrationSeconds: 15 })
    expect(v.parse(HeartbeatReply, { stale: [{ id: job.id, epoch: 1, why: "x" }], reregister: false })).toEqual({
      stale: [{ id: job.id, epoch: 1 }],
      reregister: false,
    })
    expect(v.is(HeartbeatRequest, { jobs: [{ id: job.id, epoch: 1 }] })).toBe(true)
    expect(v.is(HeartbeatRequest, { jobs: [{ id: job.id, epoch: 1, extra: 1 }] })).toBe(false)
    expect(v.is(HeartbeatRequest, { jobs: Array.from({ length: 4097 }, () => ({ id: job.id, epoch: 1 })) })).toBe(false)
  })
})
