import { describe, expect, test } from "bun:test"
import {
  checkJobFiles,
  concatEntries,
  contentArgs,
  entryTarget,
  FILE_BYTES_MAX,
  mapConcatList,
  quoteToken,
  safeFilename,
  safeOff,
} from "./contents.ts"

const upper = (text: string) => mapConcatList(text, (v) => v.toUpperCase())

describe("mapConcatList", () => {
  test("only file values change; comments, directives, blank lines and line ends stay byte for byte", () => {
    const text =
      "ffconcat version 1.0\r\n# file a.ts\n\n  file   a.ts  # trailing\r\nduration 2.5\ninpoint 1\noutpoint 2\n" +
      "option skip_frame nokey\nstream\nexact_stream_id 0x1\nfile_packet_meta k 'v v'\rfile b.ts"
    expect(upper(text)).toBe(
      "ffconcat version 1.0\r\n# file a.ts\n\n  file   'A.TS'  # trailing\r\nduration 2.5\ninpoint 1\noutpoint 2\n" +
        "option skip_frame nokey\nstream\nexact_stream_id 0x1\nfile_packet_meta k 'v v'\r" +
        "file 'B.TS'",
    )
  })

  test("values are read with av_get_token's quoting and written back single-quoted", () => {
    const text = "file 'it'\\''s here.ts'\nfile a\\ b.ts\nfile 'x'y'z'\nfile\t'tab'\n"
    expect(concatEntries(text)).toEqual([
      { value: "it's here.ts", line: 1 },
      { value: "a b.ts", line: 2 },
      { value: "xyz", line: 3 },
      { value: "tab", line: 4 },
    ])
    const out = mapConcatList(text, (v) => `/m/${v}`)
    expect(concatEntries(out).map((e) => e.value)).toEqual(["/m/it's here.ts", "/m/a b.ts", "/m/xyz", "/m/tab"])
    expect(out.split("\n")[0]).toBe(`file ${quoteToken("/m/it's here.ts")}`)
    expect(quoteToken("a'b")).toBe("'a'\\''b'")
  })

  test("a byte order mark stays where it is; the first line's entry is mapped like the others", () => {
    expect(upper("\uFEFFfile a.ts\nfile b.ts\n")).toBe("\uFEFFfile 'A.TS'\nfile 'B.TS'\n")
    // Only at the very start of the list.
    expect(upper("file a.ts\n\uFEFFfile b.ts\n")).toBe("file 'A.TS'\n\uFEFFfile b.ts\n")
  })

  test("a `file` with no value, a keyword that only starts with file, and an unchanged value are kept", () => {
    expect(mapConcatList("file\nfiles a\nfile_packet_metadata x\nfile  same\n", (v) => v)).toBe(
      "file\nfiles a\nfile_packet_metadata x\nfile  same\n",
    )
    expect(concatEntries("file\nfiles a\n")).toEqual([])
  })

  test("lines are counted as ffmpeg counts them (\\r\\n, \\r and \\n)", () => {
    expect(concatEntries("# a\r\nfile x\rfile y\n\nfile z").map((e) => e.line)).toEqual([2, 3, 5])
  })
})

describe("entries", () => {
  test("URLs of known protocols stay, file: is relative to the working directory, the rest to the list", () => {
    expect(entryTarget("http://h/a.ts")).toEqual({ url: "http://h/a.ts" })
    expect(entryTarget("subfile,,start,1,end,2,,:x")).toEqual({ url: "subfile,,start,1,end,2,,:x" })
    expect(entryTarget("file:a.ts")).toEqual({ path: "a.ts", prefix: "file:", fromList: false })
    expect(entryTarget("title:a.ts")).toEqual({ path: "title:a.ts", prefix: "", fromList: true })
    expect(entryTarget("/m/a.ts")).toEqual({ path: "/m/a.ts", prefix: "", fromList: true })
  })

  test("safe_filename and -safe's false spellings", () => {
    for (const ok of ["a.ts", "sub/a-b_c.ts", "a..b"]) expect(safeFilename(ok)).toBe(true)
    for (const bad of ["/m/a.ts", "../a.ts", ".hidden", "a b.ts", "http://h/a", "$Other/x", "sub//a"])
      expect(safeFilename(bad)).toBe(false)
    for (const off of ["0", "false", "no", "off", "disable"]) expect(safeOff(off)).toBe(true)
    for (const on of [undefined, "1", "true", "auto"]) expect(safeOff(on)).toBe(false)
  })
})

describe("contentArgs", () => {
  test("script values (any specifier), -f concat inputs and inputs whose head is an ffconcat list", () => {
    const args = ["-f", "concat", "-i", "l.txt", "-i", "x.ffc", "-i", "a.mkv", "-filter_script:v", "g.txt"]
    const heads: Record<number, string> = { 5: "\uFEFF ffconcat version 1.0\n", 7: "\x1aE" }
    expect(contentArgs("ffmpeg", [...args, "-filter_complex_script", "h.txt", "out.mkv"], (i) => heads[i])).toEqual([
      { index: 3, kind: "concat", option: "-i" },
      { index: 5, kind: "concat", option: "-i" },
      { index: 9, kind: "graph", option: "-filter_script:v" },
      { index: 11, kind: "graph", option: "-filter_complex_script" },
    ])
    // Another -f is never probed.
    expect(contentArgs("ffmpeg", ["-f", "mpegts", "-i", "x.ffc"], () => "ffconcat version 1.0")).toEqual([])
  })
})

describe("checkJobFiles (the coordinator's and the worker's check)", () => {
  const args = ["-f", "concat", "-safe", "0", "-i", "$Media/l.txt", "-filter_script", "$Media/g.txt", "$Media/o.mkv"]
  const check = (files: { arg: number; content: string }[], paths = ["Media"]) =>
    checkJobFiles("ffmpeg", args, paths, files)

  test("accepted: each at the position of such a file, variables declared", () => {
    expect(
      check([
        { arg: 5, content: "file '$Media/a.ts'\nfile 'http://h/b.ts'\n" },
        { arg: 7, content: "subtitles=$Media/a.srt" },
      ]),
    ).toEqual(
      new Map([
        [5, "concat"],
        [7, "graph"],
      ]),
    )
  })

  test.each([
    ["a position naming no such file", [{ arg: 8, content: "" }], /files\[0\]\.arg 8 is not a -f concat input/],
    ["a position out of argv", [{ arg: 9, content: "" }], /files\[0\]\.arg 9 is not an argument's position \(0 to 8\)/],
    ["a negative position", [{ arg: -1, content: "" }], /is not an argument's position/],
    [
      "the same position twice",
      [
        { arg: 5, content: "" },
        { arg: 5, content: "" },
      ],
      /files\[1\]\.arg 5 is given twice/,
    ],
    ["an undeclared variable in a list", [{ arg: 5, content: "file '$Other/../../etc/passwd'" }], /uses \$Other/],
    ["an undeclared variable in a script", [{ arg: 7, content: "movie=$Other/x.png" }], /files\[0\] uses \$Other/],
    // ffmpeg reads a script as a C string: "movie=$Media/l" only, where l may be a symlink out of the root.
    ["a NUL byte", [{ arg: 7, content: "movie=$Media/l\0x" }], /files\[0\] holds a NUL byte/],
    [
      "one file over 1 MiB",
      [{ arg: 5, content: "é".repeat(FILE_BYTES_MAX / 2 + 1) }],
      /has 1048578 bytes; at most 1048576/,
    ],
    [
      "more than 16 files",
      Array.from({ length: 17 }, (_, i) => ({ arg: i, content: "" })),
      /files: more than 16 files/,
    ],
  ])("refused: %s", (_, files, want) => {
    expect(() => check(files)).toThrow(want)
  })

  test("more than 4 MiB together is refused", () => {
    const many = ["-f", "concat", "-i", "a", "-f", "concat", "-i", "b", "-f", "concat", "-i", "c"]
    const big = "#".repeat(FILE_BYTES_MAX)
    expect(() =>
      checkJobFiles(
        "ffmpeg",
        [...many, "-f", "concat", "-i", "d", "-f", "concat", "-i", "e"],
        [],
        [
          { arg: 3, content: big },
          { arg: 7, content: big },
          { arg: 11, content: big },
          { arg: 15, content: big },
          { arg: 19, content: "#" },
        ],
      ),
    ).toThrow(/files have 4194305 bytes together; at most 4194304/)
  })
})
