import { afterAll, describe, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FakeTransport } from "../../test/helpers/fake-transport.ts"
import { DEFAULT_ENV } from "../shared/ffargs/env.ts"
import { createLogger } from "../shared/log.ts"
import { createWorkerMapper } from "../shared/paths/mapping.ts"
import { Kind } from "../shared/protocol/frames.ts"
import { acceptEnv, spawnEnv } from "./env.ts"
import { startRun } from "./runner.ts"

const root = mkdtempSync(join(tmpdir(), "dffmpeg-env-"))
const media = join(root, "media")
mkdirSync(join(media, "logs"), { recursive: true })
symlinkSync("/etc", join(media, "out"))
// A link to the root itself: "logs/up/../x" is the root's parent's x for the kernel, logs/x when read lexically.
symlinkSync(media, join(media, "logs", "up"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const mapper = createWorkerMapper({ paths: { M: media } })
const job = (env: Record<string, string>, cwd: string | null = "$M/logs") => ({ env, paths: ["M"], cwd })

describe("acceptEnv", () => {
  test("keeps the names allowed_env lists, drops and names the others", () => {
    const got = acceptEnv(
      job({ TZ: "UTC", LC_ALL: "C", AV_LOG_FORCE_COLOR: "1", DFFMPEG_SECRET_TEST: "x", LANGUAGE: "de" }),
      DEFAULT_ENV,
      mapper,
    )
    expect(got).toEqual({
      env: { TZ: "UTC", LC_ALL: "C", AV_LOG_FORCE_COLOR: "1" },
      dropped: ["DFFMPEG_SECRET_TEST", "LANGUAGE"],
    })
    expect(acceptEnv(job({ TZ: "UTC" }), ["LANG"], mapper)).toEqual({ env: {}, dropped: ["TZ"] })
    expect(acceptEnv({ paths: [], cwd: null }, DEFAULT_ENV, mapper)).toEqual({ env: {}, dropped: [] })
  })

  test("PATH, HOME, TMPDIR and LD_* are never taken from a caller, even when allowed", () => {
    const env = { PATH: "/x", HOME: "/x", TMPDIR: "/x", LD_PRELOAD: "/x/evil.so", LANG: "C" }
    expect(acceptEnv(job(env), ["PATH", "HOME", "TMPDIR", "LD_*", "LANG"], mapper)).toEqual({
      env: { LANG: "C" },
      dropped: ["PATH", "HOME", "TMPDIR", "LD_PRELOAD"],
    })
  })

  test("FFREPORT's file= is mapped to this worker's path; level= and the rest stay as they are", () => {
    const { env } = acceptEnv(job({ FFREPORT: "file=$M/logs/r.log:level=32" }), DEFAULT_ENV, mapper)
    expect(env.FFREPORT).toBe(`file=${media}/logs/r.log:level=32`)
    expect(acceptEnv(job({ FFREPORT: "level=32:file=r.log" }), DEFAULT_ENV, mapper).env.FFREPORT).toBe(
      "level=32:file=r.log",
    )
    expect(acceptEnv(job({ FFREPORT: "level=32" }), DEFAULT_ENV, mapper).env.FFREPORT).toBe("level=32")
  })

  test.each([
    ["file=/etc/r.log", /absolute path \/etc\/r.log .* is not allowed on this worker/],
    ["file=$Other/r.log", /\$Other .* is not declared by the job/],
    ["file=$M/../r.log", /escapes \$M/],
    ["file=$M/out/r.log", /escapes \$M through a symlink/],
    ["file=../../r.log", /leaves the job's directories/],
    ["file=up/../r.log", /leaves the job's directories/],
    ["file=$M/logs/.%x./r.log", /only use %p, %t and %%/],
  ])("FFREPORT=%p is refused like the equivalent path argument", (value, message) => {
    expect(() => acceptEnv(job({ FFREPORT: value }), DEFAULT_ENV, mapper)).toThrow(message)
  })

  test("a report written into a scratch working directory (relative file, or none named) is refused", () => {
    for (const value of ["level=32", "", "file=r.log"])
      expect(() => acceptEnv(job({ FFREPORT: value }, null), DEFAULT_ENV, mapper)).toThrow(
        /into the job's working directory, which is under no path variable/,
      )
    expect(acceptEnv(job({ FFREPORT: `file=$M/r.log` }, null), DEFAULT_ENV, mapper).env.FFREPORT).toBe(
      `file=${media}/r.log`,
    )
  })
})

test("spawnEnv puts the caller's variables over the confinement's environment, or the worker's own", () => {
  expect(spawnEnv({ PATH: "/usr/bin", HOME: "/tmp" }, {})).toEqual({ PATH: "/usr/bin", HOME: "/tmp" })
  expect(spawnEnv(undefined, {})).toBeUndefined()
  expect(spawnEnv({ PATH: "/usr/bin", TZ: "UTC" }, { TZ: "Asia/Tokyo" })).toEqual({
    PATH: "/usr/bin",
    TZ: "Asia/Tokyo",
  })
  expect(spawnEnv(undefined, { TZ: "UTC" }, { PATH: "/bin" })).toEqual({ PATH: "/bin", TZ: "UTC" })
})

test("the process a job runs sees the allowed caller variables and none of the others", async () => {
  const t = new FakeTransport()
  const script = 'printf "%s|%s|%s" "${TZ-unset}" "${DFFMPEG_SECRET_TEST-unset}" "${FFREPORT-unset}"'
  const env = { TZ: "Asia/Tokyo", DFFMPEG_SECRET_TEST: "x", FFREPORT: "file=$M/r.log" }
  const a = {
    ...job(env),
    id: "01M8DFWF4PCGSZBYEVT8TN9999",
    epoch: 1,
    binary: "ffmpeg",
    args: ["-c", script],
    stdin: false,
  }
  const run = startRun(a, {
    transport: t,
    log: createLogger({ level: "error" }),
    mapper,
    binaries: new Map([["ffmpeg", "/bin/sh"]]),
    confinement: {
      mode: "none",
      argv: (_job, command) => command,
      env: () => ({ PATH: "/usr/bin:/bin" }),
      capabilities: { sandbox: "none", runAs: "test" },
    },
    termAfterMs: 1000,
    killAfterMs: 2000,
  })
  await run.done
  expect(t.text(a.id, Kind.stdout)).toBe(`Asia/Tokyo|unset|file=${media}/r.log`)
  expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
})
