import { afterEach, describe, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { leftInScratch, lostFilesError } from "./scratch.ts"

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), "dffmpeg-scratch-test-"))
  dirs.push(d)
  return d
}

describe("what a job left in its scratch working directory", () => {
  test("an empty directory leaves nothing", () => {
    expect(leftInScratch(scratch())).toEqual([])
  })

  test("files are listed relative to it, sorted, nested ones by their path; directories themselves are not", () => {
    const d = scratch()
    writeFileSync(join(d, "out.mkv"), "x")
    writeFileSync(join(d, "a.ttf"), "x")
    mkdirSync(join(d, "sub", "deep"), { recursive: true })
    writeFileSync(join(d, "sub", "deep", "seg0.ts"), "x")
    mkdirSync(join(d, "empty"))
    expect(leftInScratch(d)).toEqual(["a.ttf", "out.mkv", "sub/deep/seg0.ts"])
  })
})

describe("the error the caller reads", () => {
  test("names the files and says why they are lost and what to do", () => {
    const e = lostFilesError("ffmpeg", ["out.mkv"])
    expect(e).toBe(
      'ffmpeg wrote "out.mkv" into its working directory, which is under no path mapping, so the caller cannot ' +
        "see it: run from a mapped directory or give absolute paths",
    )
    expect(e).not.toContain("\n")
  })

  test("lists at most ten, then how many more", () => {
    const names = Array.from({ length: 13 }, (_, i) => `f${String(i).padStart(2, "0")}.ttf`)
    const e = lostFilesError("ffmpeg", names)
    expect(e).toContain('"f09.ttf" and 3 more into')
    expect(e).not.toContain("f10.ttf")
    expect(e).toContain("cannot see them")
  })

  test("long or odd names stay within the exit report's 4096 characters, on one line", () => {
    const e = lostFilesError(
      "ffmpeg",
      Array.from({ length: 12 }, (_, i) => `${"\n".repeat(250)}${i}`),
    )
    expect(e.length).toBeLessThanOrEqual(4096)
    expect(e).not.toContain("\n")
  })
})
