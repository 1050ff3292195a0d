import { describe, expect, test } from "bun:test"
import { DEFAULT_ENV, envMatcher, mapReport, parseReport, pickEnv, reportFiles, templateProblem } from "./env.ts"

describe("pickEnv", () => {
  test("keeps exactly the listed names and prefixes, nothing else of the environment", () => {
    const env = {
      FFREPORT: "level=32",
      AV_LOG_FORCE_COLOR: "1",
      LC_ALL: "C.UTF-8",
      LC_TIME: "de_DE.UTF-8",
      LANG: "C",
      TZ: "Europe/Paris",
      LANGUAGE: "de",
      PATH: "/usr/bin",
      DFFMPEG_SECRET_TEST: "x",
      LCX: "no",
      UNSET: undefined,
    }
    expect(pickEnv(env, DEFAULT_ENV)).toEqual({
      AV_LOG_FORCE_COLOR: "1",
      FFREPORT: "level=32",
      LANG: "C",
      LC_ALL: "C.UTF-8",
      LC_TIME: "de_DE.UTF-8",
      TZ: "Europe/Paris",
    })
    expect(pickEnv(env, ["TZ"])).toEqual({ TZ: "Europe/Paris" })
    expect(pickEnv(env, [])).toEqual({})
  })

  test("a name that does not fit the strict pattern never matches, even under a prefix", () => {
    const ok = envMatcher(["LC_*", "A"])
    expect(ok("LC_ALL")).toBe(true)
    expect(ok("A")).toBe(true)
    expect(ok("LC_A-B")).toBe(false)
    expect(ok("LC_ÄB")).toBe(false)
    expect(ok("AB")).toBe(false)
  })
})

describe("parseReport reads FFREPORT as ffmpeg's init_report does", () => {
  const pairs = (env: string) => parseReport(env).map(({ key, value }) => [key, value])
  test.each([
    [
      "file=/m/r.log:level=32",
      [
        ["file", "/m/r.log"],
        ["level", "32"],
      ],
    ],
    [
      "level=32:file=/m/r.log",
      [
        ["level", "32"],
        ["file", "/m/r.log"],
      ],
    ],
    // Checked against ffmpeg 5.1: these name the files `a:b.log`, ` sp q.log ` and `x%%y.log`.
    [
      "file=a\\:b.log:level=32",
      [
        ["file", "a:b.log"],
        ["level", "32"],
      ],
    ],
    [
      "file=' sp q.log ' :level=32",
      [
        ["file", " sp q.log "],
        ["level", "32"],
      ],
    ],
    ["  file =  x.log  ", [["file", "x.log"]]],
    ["file=a\\ ", [["file", "a "]]],
    ["file='unterminated", [["file", "unterminated"]]],
    ["", []],
    // Not a pair: ffmpeg stops reading there.
    ["1", []],
    ["level=32:garbage:file=/etc/x", [["level", "32"]]],
    [
      "file=/a:file=/b",
      [
        ["file", "/a"],
        ["file", "/b"],
      ],
    ],
  ])("%p", (env, want) => {
    expect(pairs(env)).toEqual(want as string[][])
  })

  test("the report files: every file=, or ffmpeg's default name in the working directory", () => {
    expect(reportFiles("file=/a:file=/b")).toEqual(["/a", "/b"])
    expect(reportFiles("level=32")).toEqual(["%p-%t.log"])
    expect(reportFiles("")).toEqual(["%p-%t.log"])
  })
})

describe("mapReport", () => {
  const upper = (f: string) => (f.startsWith("/m/") ? `$M/${f.slice(3)}` : f)
  test("replaces each file= value and keeps every other byte", () => {
    expect(mapReport("file=/m/r.log:level=32", upper)).toBe("file=$M/r.log:level=32")
    expect(mapReport("level=32 : file = /m/r.log", upper)).toBe("level=32 : file = $M/r.log")
    expect(mapReport("level=32", upper)).toBe("level=32")
    expect(mapReport("file=rel.log:level=32", upper)).toBe("file=rel.log:level=32")
    // After what ffmpeg parses nothing is read, so nothing is translated either.
    expect(mapReport("level=32:junk:file=/m/x", upper)).toBe("level=32:junk:file=/m/x")
  })

  test("a mapped value with separators, quotes or blanks is escaped so ffmpeg reads it back exactly", () => {
    const to = "/w/a:b 'c'\\d "
    const mapped = mapReport("file=/m/x:level=32", () => to)
    expect(parseReport(mapped).map((p) => p.value)).toEqual([to, "32"])
  })
})

test("templateProblem refuses % sequences ffmpeg would drop (they could hide a '..')", () => {
  expect(templateProblem("/w/%p-%t.log")).toBeUndefined()
  expect(templateProblem("/w/100%%.log")).toBeUndefined()
  expect(templateProblem("/w/.%x./etc/passwd")).toBeDefined()
  expect(templateProblem("/w/r.log%")).toBeDefined()
  expect(templateProblem("/w/%%%x")).toBeDefined()
})
