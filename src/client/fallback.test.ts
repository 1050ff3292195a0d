import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as v from "valibot"
import { ClientConfig, type FallbackConfig } from "../shared/config/schema.ts"
import { AuthError, InvalidError, TrustError, UnavailableError } from "../shared/errors.ts"
import type { ApiClient } from "../shared/http/client.ts"
import { FallbackReport, NO_CAPABLE_WORKER } from "../shared/protocol/fallback.ts"
import { issueLines } from "../shared/protocol/schemas.ts"
import {
  appendLog,
  localCommand,
  logPath,
  outcomeFallback,
  pendingBytes,
  reportPending,
  submitFallback,
  type LogEntry,
} from "./fallback.ts"
import { tapStdin } from "./stdin-tap.ts"

const base = { client_id: "c1", hmac_key: "k" }
const parse = (fallback: unknown) => v.safeParse(ClientConfig, { ...base, fallback })
const cfg = (o: Record<string, unknown> = {}): FallbackConfig => {
  const r = parse({ when: ["coordinator_unreachable", "no_capable_worker", "queue_timeout"], ...o })
  if (!r.success) throw new Error(JSON.stringify(r.issues.map((i) => i.message)))
  return r.output.fallback!
}

describe("fallback config", () => {
  test("absent by default: no fallback", () => {
    const r = v.safeParse(ClientConfig, base)
    expect(r.success && r.output.fallback).toBeUndefined()
  })

  test("defaults: Debian's binaries, 30 s, a log next to the config, no rewrites", () => {
    expect(cfg()).toEqual({
      when: ["coordinator_unreachable", "no_capable_worker", "queue_timeout"],
      ffmpeg: "/usr/bin/ffmpeg",
      ffprobe: "/usr/bin/ffprobe",
      queue_timeout_seconds: 30,
      log_file: "fallback.jsonl",
      rewrite: [],
    })
    expect(logPath(cfg(), "/etc/dffmpeg")).toBe("/etc/dffmpeg/fallback.jsonl")
    expect(logPath(cfg({ log_file: "/var/log/x.jsonl" }), "/etc/dffmpeg")).toBe("/var/log/x.jsonl")
  })

  test.each([
    ["an empty when", { when: [] }],
    ["an unknown situation", { when: ["worker_slow"] }],
    ["a relative binary (it may be this proxy on PATH)", { when: ["queue_timeout"], ffmpeg: "ffmpeg" }],
    ["a queue timeout of 0", { when: ["queue_timeout"], queue_timeout_seconds: 0 }],
    ["an unknown rewrite", { when: ["queue_timeout"], rewrite: [{ rename: { a: "b" } }] }],
    ["a rewrite with two kinds", { when: ["queue_timeout"], rewrite: [{ replace: { a: "b" }, drop: ["-x"] }] }],
    ["a drop that starts with a value", { when: ["queue_timeout"], rewrite: [{ drop: ["cuda"] }] }],
    ["a drop_option that is no option", { when: ["queue_timeout"], rewrite: [{ drop_option: ["hwaccel"] }] }],
    ["an empty replace", { when: ["queue_timeout"], rewrite: [{ replace: {} }] }],
  ])("refuses %s", (_what, fallback) => {
    expect(parse(fallback).success).toBe(false)
  })
})

test("a wrong rewrite is named with what it should be", () => {
  const r = parse({ when: ["queue_timeout"], rewrite: [{ rename: { a: "b" } }, { drop_option: ["hwaccel"] }] })
  expect(r.success ? [] : issueLines(r.issues)).toEqual([
    "fallback.rewrite.0: must be exactly one of {replace: {FROM: TO}}, {drop: [ARGS]} or {drop_option: [OPTIONS]}",
    "fallback.rewrite.1.drop_option.0: must be an option name starting with '-' (e.g. -hwaccel)",
  ])
})

describe("when to fall back", () => {
  const all = cfg()
  const only = (...when: string[]) => cfg({ when })

  test("a submission the coordinator never answered, only when configured", () => {
    const down = new UnavailableError("cannot reach the coordinator at http://x: ECONNREFUSED")
    expect(submitFallback(all, down)).toBe("coordinator_unreachable")
    expect(submitFallback(all, Object.assign(new Error("reset"), { code: "ECONNRESET" }))).toBe(
      "coordinator_unreachable",
    )
    expect(submitFallback(only("queue_timeout"), down)).toBeUndefined()
    expect(submitFallback(undefined, down)).toBeUndefined()
  })

  test("never for a coordinator that answered no, or one that cannot be trusted", () => {
    for (const err of [new AuthError("bad key"), new InvalidError("bad args"), new TrustError("mitm")])
      expect(submitFallback(all, err)).toBeUndefined()
  })

  test("a job failed because no online worker could run it (the shared marker), and nothing else", () => {
    const failed = (error: string | null, code: number | null = null) => ({
      status: "failed" as const,
      code,
      signal: null,
      error,
    })
    expect(outcomeFallback(all, failed(`${NO_CAPABLE_WORKER} can run it (needs ffmpeg); waited 30 s`))).toBe(
      "no_capable_worker",
    )
    expect(outcomeFallback(all, failed("no online worker has encoder h264_nvenc"))).toBe("no_capable_worker")
    // It ran (an exit code): its worker's failure is the answer.
    expect(outcomeFallback(all, failed("no online worker can run it", 1))).toBeUndefined()
    expect(outcomeFallback(all, failed("worker w1 stopped responding"))).toBeUndefined()
    expect(outcomeFallback(all, failed(null))).toBeUndefined()
    expect(outcomeFallback(only("coordinator_unreachable"), failed("no online worker can run it"))).toBeUndefined()
    const canceled = { status: "canceled" as const, code: null, signal: null, error: "no online worker" }
    expect(outcomeFallback(all, canceled)).toBeUndefined()
  })

  test("the local command: the configured binary per tool, the caller's arguments rewritten", () => {
    const c = cfg({ ffmpeg: "/opt/ff/ffmpeg", rewrite: [{ replace: { h264_nvenc: "libx264" } }] })
    expect(localCommand(c, "ffmpeg", ["-i", "/media/a.mkv", "-c:v", "h264_nvenc", "/media/o.mp4"])).toEqual({
      tool: "ffmpeg",
      path: "/opt/ff/ffmpeg",
      args: ["-i", "/media/a.mkv", "-c:v", "libx264", "/media/o.mp4"],
    })
    expect(localCommand(c, "ffprobe", ["-i", "/media/a.mkv"]).path).toBe("/usr/bin/ffprobe")
  })
})

describe("the fallback ledger", () => {
  let dir: string
  let log: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "dffmpeg-fallback-"))
    log = join(dir, "fallback.jsonl")
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  const entry = (n: number): LogEntry => ({
    id: crypto.randomUUID(),
    time: new Date(1000 * n).toISOString(),
    at: 1000 * n,
    reason: "coordinator_unreachable",
    detail: "ECONNREFUSED",
    tool: "ffmpeg",
    binary: "/usr/bin/ffmpeg",
    args: ["-i", "a é.mkv"],
    argv: ["-i", "a é.mkv"],
    exit_code: n % 2,
  })

  /** A coordinator that takes reports (or refuses them while `down`), and what it got. */
  const coordinator = () => {
    const got: unknown[] = []
    const c = {
      down: false,
      got,
      api: {
        json: async (method: string, path: string, o: { json: unknown }) => {
          if (c.down) throw new UnavailableError("down")
          expect([method, path]).toEqual(["POST", "/api/v1/clients/fallbacks"])
          // What the coordinator's route would accept.
          expect(v.safeParse(FallbackReport, o.json).success).toBe(true)
          const records = (o.json as { records: unknown[] }).records
          got.push(...records)
          return { accepted: records.length, duplicates: 0 }
        },
      } as unknown as ApiClient,
    }
    return c
  }

  test("pending lines are reported once, in batches of at most 100, and the state remembers it", async () => {
    for (let i = 0; i < 150; i++) appendLog(log, entry(i))
    expect(pendingBytes(log)).toBeGreaterThan(0)
    const c = coordinator()
    expect(await reportPending(c.api, log, 1000)).toBe(150)
    expect(c.got.length).toBe(150)
    expect(c.got[1]).toEqual({
      id: expect.any(String),
      at: 1000,
      reason: "coordinator_unreachable",
      tool: "ffmpeg",
      code: 1,
    })
    expect(pendingBytes(log)).toBe(0)
    expect(JSON.parse(readFileSync(`${log}.state`, "utf8"))).toMatchObject({ reported: 150 })
    expect(await reportPending(c.api, log, 1000)).toBe(0)
    appendLog(log, entry(200))
    expect(await reportPending(c.api, log, 1000)).toBe(1)
    expect(c.got.length).toBe(151)
  })

  test("a coordinator that does not answer leaves everything pending for the next call", async () => {
    appendLog(log, entry(1))
    const c = coordinator()
    c.down = true
    expect(await reportPending(c.api, log, 1000)).toBe(0)
    expect(pendingBytes(log)).toBeGreaterThan(0)
    c.down = false
    expect(await reportPending(c.api, log, 1000)).toBe(1)
  })

  test("another process reporting (the lock) is left alone; a stale lock is taken over", async () => {
    appendLog(log, entry(1))
    writeFileSync(`${log}.lock`, "")
    const c = coordinator()
    expect(await reportPending(c.api, log, 1000)).toBe(0)
    const old = new Date(Date.now() - 60_000)
    const { utimesSync } = await import("node:fs")
    utimesSync(`${log}.lock`, old, old)
    expect(await reportPending(c.api, log, 1000)).toBe(1)
  })

  test("a rotated (shorter) log is read from its start; lines that are not records are skipped", async () => {
    for (let i = 0; i < 3; i++) appendLog(log, entry(i))
    const c = coordinator()
    await reportPending(c.api, log, 1000)
    writeFileSync(log, "not json\n")
    appendLog(log, entry(9))
    expect(await reportPending(c.api, log, 1000)).toBe(1)
    expect(c.got.length).toBe(4)
  })

  test("no log: nothing pending", () => {
    expect(pendingBytes(join(dir, "none.jsonl"))).toBe(0)
  })
})

describe("stdin kept for a local run", () => {
  const source = (chunks: string[]) => () =>
    (async function* () {
      for (const c of chunks) yield new TextEncoder().encode(c)
    })()
  const text = async (it: AsyncIterable<Uint8Array>) => {
    let s = ""
    for await (const c of it) s += new TextDecoder().decode(c)
    return s
  }

  test("what the remote side read, then the rest, in order", async () => {
    const tap = tapStdin(source(["a", "b", "c", "d"]), 100)
    const remote = tap.remote()[Symbol.asyncIterator]()
    expect(new TextDecoder().decode((await remote.next()).value)).toBe("a")
    expect(new TextDecoder().decode((await remote.next()).value)).toBe("b")
    expect(tap.started).toBe(true)
    expect(tap.hold()).toBe(true)
    expect(await text(tap.handOff())).toBe("abcd")
    expect((await remote.next()).done).toBe(true)
  })

  test("over the cap the input cannot be replayed: no hold", async () => {
    const tap = tapStdin(source(["aaaa", "bbbb"]), 5)
    const remote = tap.remote()[Symbol.asyncIterator]()
    await remote.next()
    expect(tap.hold()).toBe(true)
    tap.release()
    await remote.next()
    expect(tap.hold()).toBe(false)
  })

  test("a held remote side waits, and goes on after release", async () => {
    const tap = tapStdin(source(["a", "b"]), 100)
    const remote = tap.remote()[Symbol.asyncIterator]()
    expect(tap.hold()).toBe(true)
    const next = remote.next().then((r) => new TextDecoder().decode(r.value))
    // Still held: the read has not even been started (stdin is untouched).
    expect(await Promise.race([next, Promise.resolve("held")])).toBe("held")
    expect(tap.started).toBe(false)
    tap.release()
    expect(await next).toBe("a")
  })

  test("never read: not started (the local run inherits stdin)", () => {
    expect(tapStdin(source(["a"]), 10).started).toBe(false)
  })
})
