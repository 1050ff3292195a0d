import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { InvalidError } from "../shared/errors.ts"
import { FILE_BYTES_MAX } from "../shared/paths/contents.ts"
import { createClientMapper } from "../shared/paths/mapping.ts"
import { readRegularFile as readFile } from "../shared/read-file.ts"
import { jobFiles } from "./contents.ts"

// Roots that do not exist here: the mapper then maps them as written.
const ROOT = "/nonexistent-dffmpeg/media"
const CWD = `${ROOT}/work`

function files(args: string[], fs: Record<string, string | Uint8Array>, cwd = CWD) {
  const mapper = createClientMapper({ paths: { Media: ROOT, Fonts: "/nonexistent-dffmpeg/fonts" }, cwd })
  const mapped = mapper.mapArgs(args)
  const read = (path: string, max: number) => {
    const f = fs[path]
    if (f === undefined) return undefined
    const bytes = typeof f === "string" ? new TextEncoder().encode(f) : f
    return bytes.subarray(0, max)
  }
  return { files: jobFiles("ffmpeg", args, mapper, mapped, cwd, read), paths: mapped.paths }
}

function refusal(...a: Parameters<typeof files>): string {
  try {
    files(...a)
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidError)
    return (err as Error).message
  }
  throw new Error("not refused")
}

const concat = (list: string, safe = true) => [
  "-f",
  "concat",
  ...(safe ? ["-safe", "0"] : []),
  "-i",
  list,
  "-f",
  "null",
  "-",
]

describe("concat lists", () => {
  test("absolute and relative entries become $Var paths (relative ones against the list's folder)", () => {
    const list = `${ROOT}/lists/l.txt`
    const text = `ffconcat version 1.0\n# c\nfile '${ROOT}/a.ts'\nduration 1\nfile b.ts\nfile '../c d.ts'\nfile 'http://h/x.ts'\n`
    expect(files(concat(list), { [list]: text }).files).toEqual([
      {
        arg: 5,
        content:
          "ffconcat version 1.0\n# c\nfile '$Media/a.ts'\nduration 1\nfile '$Media/lists/b.ts'\nfile '$Media/c d.ts'\nfile 'http://h/x.ts'\n",
      },
    ])
  })

  test("a relative list is read from the caller's working directory; file: entries are relative to it", () => {
    const r = files(concat("l.txt"), { [`${CWD}/l.txt`]: "file 'file:x.ts'\n" })
    expect(r.files).toEqual([{ arg: 5, content: "file 'file:$Media/work/x.ts'\n" }])
  })

  test("a caller's literal $Other entry is a relative name like any other, never a variable", () => {
    const list = `${ROOT}/lists/l.txt`
    expect(files(concat(list), { [list]: "file '$Other/../../etc/passwd'\n" }).files[0]!.content).toBe(
      "file '$Media/etc/passwd'\n",
    )
  })

  test("an input without -f whose head is an ffconcat list is rewritten too", () => {
    const list = `${ROOT}/l.ffconcat`
    const r = files(["-i", list, "-f", "null", "-"], { [list]: "ffconcat version 1.0\nfile a.ts\n" })
    expect(r.files).toEqual([{ arg: 1, content: "ffconcat version 1.0\nfile '$Media/a.ts'\n" }])
  })

  test("a byte order mark and CRLF line ends reach the worker as they are (ffmpeg refuses the BOM's line)", () => {
    const list = `${ROOT}/l.txt`
    expect(files(concat(list), { [list]: "\uFEFFfile a.ts\r\nfile b.ts\r\n" }).files[0]!.content).toBe(
      "\uFEFFfile '$Media/a.ts'\r\nfile '$Media/b.ts'\r\n",
    )
  })

  test("a missing list, stdin and URLs are left to ffmpeg", () => {
    expect(files(concat(`${ROOT}/none.txt`), {}).files).toEqual([])
    expect(files(concat("-"), {}).files).toEqual([])
    expect(files(concat("http://h/l.txt"), {}).files).toEqual([])
  })

  test("an entry under no mapping is refused naming the argument and the line", () => {
    const list = `${ROOT}/l.txt`
    expect(refusal(concat(list), { [list]: "file a.ts\n\nfile '../../../etc/passwd'\n" })).toBe(
      `argument 6 (-i "${list}"), line 3: path /etc/passwd is not under any configured path mapping (client paths: Fonts, Media); add a mapping`,
    )
  })

  test("without -safe 0, a name ffmpeg's safe mode refuses is refused here too", () => {
    const list = `${ROOT}/l.txt`
    expect(refusal(concat(list, false), { [list]: "file ok.ts\nfile '/abs/a.ts'\n" })).toMatch(
      /^argument 4 \(-i ".*l\.txt"\), line 2: ffmpeg's concat demuxer refuses the file name "\/abs\/a\.ts" without -safe 0/,
    )
    expect(files(concat(list, false), { [list]: "file sub/ok.ts\n" }).files[0]!.content).toBe(
      "file '$Media/sub/ok.ts'\n",
    )
  })

  test("a list over 1 MiB, or not UTF-8, is refused", () => {
    const list = `${ROOT}/l.txt`
    expect(refusal(concat(list), { [list]: "#".repeat(FILE_BYTES_MAX + 1) })).toBe(
      `argument 6 (-i "${list}"): the concat list is larger than 1 MiB; too large to send with the job`,
    )
    expect(refusal(concat(list), { [list]: new Uint8Array([0x66, 0xff, 0x0a]) })).toMatch(/is not valid UTF-8$/)
  })

  test("more than 4 MiB of lists in one job is refused", () => {
    const args: string[] = []
    const fs: Record<string, string> = {}
    for (let i = 0; i < 5; i++) {
      args.push("-f", "concat", "-i", `${ROOT}/${i}.txt`)
      fs[`${ROOT}/${i}.txt`] = "#".repeat(FILE_BYTES_MAX)
    }
    expect(refusal([...args, "-f", "null", "-"], fs)).toMatch(/^argument 20 .*more than 16 files or 4 MiB/)
  })
})

describe("filter scripts", () => {
  test("file options become $Var paths and their variables are declared; a script without paths is not sent", () => {
    const g = `${ROOT}/g.txt`
    const args = ["-i", `${ROOT}/a.mkv`, "-filter_complex_script", g, "-filter_script:v", `${ROOT}/plain.txt`, "o.mkv"]
    const r = files(args, {
      [g]: `movie=/nonexistent-dffmpeg/fonts/x.png[w];[0][w]overlay`,
      [`${ROOT}/plain.txt`]: "scale=2:2",
    })
    expect(r.files).toEqual([{ arg: 3, content: "movie=$Fonts/x.png[w];[0][w]overlay" }])
    expect(r.paths).toEqual(["Fonts", "Media"])
  })

  test("a path under no mapping is refused naming the argument", () => {
    const g = `${ROOT}/g.txt`
    expect(refusal(["-i", "a.mkv", "-filter_script", g, "o.mkv"], { [g]: "subtitles=/elsewhere/a.srt" })).toBe(
      `argument 4 (-filter_script "${g}"): path /elsewhere/a.srt in filter subtitles is not under any configured path mapping (client paths: Fonts, Media); add a mapping or use a relative path`,
    )
  })
})

describe("reading the caller's files", () => {
  test("a regular file up to the limit; a FIFO (an input ffmpeg reads) or a folder is not read and never blocks", () => {
    const dir = mkdtempSync(join(tmpdir(), "dffmpeg-client-read-"))
    try {
      writeFileSync(join(dir, "l.txt"), "file a.ts\n")
      expect(new TextDecoder().decode(readFile(join(dir, "l.txt"), 4))).toBe("file")
      expect(Bun.spawnSync(["mkfifo", join(dir, "fifo")]).exitCode).toBe(0)
      expect(readFile(join(dir, "fifo"), 64)).toBeUndefined()
      expect(readFile(dir, 64)).toBeUndefined()
      expect(readFile(join(dir, "none"), 64)).toBeUndefined()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
