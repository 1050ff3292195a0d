import { afterAll, describe, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DEFAULT_ENV } from "../shared/ffargs/env.ts"
import { createClientMapper } from "../shared/paths/mapping.ts"
import { callerEnv } from "./session.ts"

const root = mkdtempSync(join(tmpdir(), "dffmpeg-callerenv-"))
const media = join(root, "media")
const other = join(root, "other")
mkdirSync(media)
mkdirSync(other)
afterAll(() => rmSync(root, { recursive: true, force: true }))

/** callerEnv as a submission from `cwd` builds it: the arguments mapped first, then the environment. */
function submit(env: Record<string, string>, cwd = media, names = DEFAULT_ENV) {
  const mapper = createClientMapper({ paths: { Media: media, Logs: join(root, "logs") }, cwd })
  const mapped = mapper.mapArgs(["-i", `${media}/a.mkv`])
  return { env: callerEnv(env, names, mapper, mapped, cwd), paths: mapped.paths, cwd: mapped.cwd }
}

describe("callerEnv", () => {
  test("sends only the forward_env names: an unlisted variable never leaves the caller", () => {
    const env = { TZ: "UTC", AV_LOG_FORCE_COLOR: "1", DFFMPEG_SECRET_TEST: "x", HOME: "/root", LC_ALL: "C" }
    expect(submit(env).env).toEqual({ AV_LOG_FORCE_COLOR: "1", LC_ALL: "C", TZ: "UTC" })
    expect(submit(env, media, ["TZ"]).env).toEqual({ TZ: "UTC" })
  })

  test("FFREPORT's file= becomes a path variable like an argument, and its variable is declared", () => {
    const got = submit({ FFREPORT: `file=${root}/logs/r.log:level=32` })
    expect(got.env).toEqual({ FFREPORT: "file=$Logs/r.log:level=32" })
    expect(got.paths).toEqual(["Logs", "Media"])
    expect(submit({ FFREPORT: "level=32" }).env).toEqual({ FFREPORT: "level=32" })
    expect(submit({ FFREPORT: "file=r.log" }).env).toEqual({ FFREPORT: "file=r.log" })
  })

  test("a report file under no mapping is refused naming FFREPORT, like an argument", () => {
    expect(() => submit({ FFREPORT: `file=${other}/r.log:level=32` })).toThrow(
      `FFREPORT file=${other}/r.log: path ${other}/r.log is not under any configured path mapping`,
    )
  })

  test("a report ffmpeg would write into an unmapped working directory is refused, not lost", () => {
    for (const value of ["level=32", "", "file=r.log"])
      expect(() => submit({ FFREPORT: value }, other)).toThrow(/into the working directory .* under no path mapping/)
    expect(submit({ FFREPORT: `file=${media}/r.log` }, other).env).toEqual({ FFREPORT: "file=$Media/r.log" })
  })
})
