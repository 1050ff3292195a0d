import { afterAll, describe, expect, test } from "bun:test"
import { statSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createWorkerMapper } from "../shared/paths/mapping.ts"
import { materialise, withSafeOff } from "./contents.ts"
import { createArgumentPolicy, PolicyError, type PolicyConfig } from "./policy.ts"
import { readHead } from "./policy-deps.ts"

const dir = mkdtempSync(join(tmpdir(), "dffmpeg-contents-"))
const media = join(dir, "media")
mkdirSync(join(media, "sub"), { recursive: true })
writeFileSync(join(dir, "secret.txt"), "CANARY")
writeFileSync(join(media, "a.ts"), "not really")
writeFileSync(join(media, "a.srt"), "1\n")
symlinkSync(join(dir, "secret.txt"), join(media, "link.ts"))
writeFileSync(join(media, "inner.m3u8"), "#EXTM3U\n#EXTINF:1,\n../secret.txt\n")
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const mapper = createWorkerMapper({ paths: { Media: media, Other: join(dir, "other") } })
const made: string[] = []
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true })
})

/** The job `args` (in $Var form) with `files`, materialised and checked by the policy as the runner does. */
async function run(args: string[], files: { arg: number; content: string }[], cfg: Partial<PolicyConfig> = {}) {
  const paths = ["Media"]
  const mapped = mapper.mapArgs(args, paths, "$Media")
  const copies = materialise({ binary: "ffmpeg", args, paths, files }, mapped.args, mapper)
  if (copies.dir) made.push(copies.dir)
  const policy = createArgumentPolicy({ allowNetwork: false, allowedHosts: [], ...cfg }, { read: readHead })
  const checked = await policy.check({
    binary: "ffmpeg",
    original: args,
    args: copies.args,
    cwd: mapped.cwd,
    roots: mapper.roots(paths),
    isPassthrough: mapper.isPassthrough,
    copies: copies.at,
  })
  return { copies, args: withSafeOff(checked.args, copies.lists) }
}

async function refusal(...a: Parameters<typeof run>): Promise<string> {
  try {
    await run(...a)
  } catch (err) {
    return (err as Error).message
  }
  throw new Error("not refused")
}

const concat = (list: string, safe = true) => [
  "-f",
  "concat",
  ...(safe ? ["-safe", "0"] : []),
  "-i",
  "$Media/list.txt",
  "-f",
  "null",
  "-",
]

describe("materialising a job's files", () => {
  test("the copies' folder is the worker's and 0755: the job's user may read the copies, never replace one", () => {
    const args = concat("list.txt")
    const files = [{ arg: 5, content: "file '$Media/a.ts'\n" }]
    const copies = materialise({ binary: "ffmpeg", args, paths: ["Media"], files }, args, mapper)
    made.push(copies.dir!)
    expect(statSync(copies.dir!).uid).toBe(process.getuid!())
    expect(statSync(copies.dir!).mode & 0o777).toBe(0o755)
  })

  test("a concat list: entries resolved to this worker's paths, the rest byte for byte, run with -safe 0", async () => {
    const content = "ffconcat version 1.0\r\n# note\nfile '$Media/a.ts'\nduration 2\nfile '$Media/sub/../a.ts'\n"
    const { copies, args } = await run(concat("list.txt"), [{ arg: 5, content }])
    expect(copies.dir && copies.dir.startsWith(tmpdir())).toBe(true)
    const copy = copies.args[5]!
    expect(copy).toBe(join(copies.dir!, "0", "list.txt"))
    expect(copies.roots).toEqual([{ name: "Media", forms: [join(copies.dir!, "0")] }])
    expect(statSync(copy).mode & 0o777).toBe(0o644)
    expect(statSync(join(copies.dir!, "0")).mode & 0o777).toBe(0o755)
    expect(readFileSync(copy, "utf8")).toBe(
      `ffconcat version 1.0\r\n# note\nfile '${media}/a.ts'\nduration 2\nfile '${media}/a.ts'\n`,
    )
    const i = args.indexOf(copy)
    expect(args.slice(i - 3, i + 1)).toEqual(["-safe", "0", "-i", copy])
  })

  test("a filter script: file options resolved, other text kept", async () => {
    const args = ["-i", "$Media/a.ts", "-filter_script:v", "$Media/g.txt", "-f", "null", "-"]
    const { copies } = await run(args, [{ arg: 3, content: "scale=2:2,subtitles=$Media/a.srt" }])
    expect(readFileSync(copies.args[3]!, "utf8")).toBe(`scale=2:2,subtitles=${media.replace(/[\\':]/g, "\\$&")}/a.srt`)
  })

  test("a copy in nested folders stays readable by the job's user under the worker's umask 077", () => {
    const old = process.umask(0o077)
    try {
      const args = ["-i", "$Media/a.ts", "-filter_script", "$Media/x/y/g.txt", "-f", "null", "-"]
      const copies = materialise(
        { binary: "ffmpeg", args, paths: ["Media"], files: [{ arg: 3, content: "null" }] },
        args,
        mapper,
      )
      made.push(copies.dir!)
      const copy = copies.args[3]!
      expect(copy).toBe(join(copies.dir!, "0", "x", "y", "g.txt"))
      expect(statSync(copy).mode & 0o777).toBe(0o644)
      for (const d of ["0", "0/x", "0/x/y"]) expect(statSync(join(copies.dir!, d)).mode & 0o777).toBe(0o755)
    } finally {
      process.umask(old)
    }
  })

  test("a copy the worker cannot write refuses the job without naming the worker's folders", () => {
    const long = "a".repeat(300)
    const args = ["-i", "$Media/a.ts", "-filter_script", `$Media/${long}/g.txt`, "-f", "null", "-"]
    let message = ""
    try {
      materialise({ binary: "ffmpeg", args, paths: ["Media"], files: [{ arg: 3, content: "null" }] }, args, mapper)
    } catch (err) {
      message = (err as Error).message
    }
    expect(message).toMatch(/^argument 4 ".*": the worker cannot write its copy \(ENAMETOOLONG\)$/)
    expect(message).not.toContain(tmpdir())
  })

  test("without files nothing is written and argv is unchanged", () => {
    const args = ["-i", "/x/a.ts"]
    expect(materialise({ binary: "ffmpeg", args, paths: [], files: [] }, args, mapper)).toEqual({
      args,
      at: new Set(),
      lists: [],
      roots: [],
    })
  })

  test.each([
    [
      "an entry escaping its root with ..",
      "file '$Media/../secret.txt'\n",
      /^line 1 of argument 6 "\$Media\/list\.txt" escapes \$Media/,
    ],
    [
      "an undeclared variable after rewrite",
      "file '$Other/../../etc/passwd'\n",
      /files\[0\] uses \$Other, which is not listed in paths/,
    ],
    [
      "a relative entry (not rewritten by a client)",
      "file a.ts\n",
      /line 1 of argument 6 "\$Media\/list\.txt": the entry is not a path variable/,
    ],
    ["an absolute worker path", "file '/etc/passwd'\n", /line 1 of argument 6 .*: the entry is not a path variable/],
    [
      "an absolute path behind a byte order mark",
      "\uFEFFfile '/etc/passwd'\n",
      /line 1 of argument 6 .*: the entry is not a path variable/,
    ],
  ])("refused: %s", async (_, content, want) => {
    const msg = await refusal(concat("list.txt"), [{ arg: 5, content }])
    expect(msg).toMatch(want)
    expect(msg).not.toContain(dir)
  })

  test("a file at a position that names no such file is refused", async () => {
    expect(
      await refusal(["-i", "$Media/a.ts", "-f", "null", "-"], [{ arg: 1, content: "file '$Media/a.ts'" }]),
    ).toMatch(/files\[0\]\.arg 1 is not a -f concat input/)
  })
})

test("withSafeOff puts -safe 0 before the copy's -i, before ffprobe's positional input, and before a -- in front of it", () => {
  const copy = "/tmp/dffmpeg-files-x/0/l.txt"
  expect(withSafeOff(["-f", "concat", "-i", copy, "out.mkv"], [copy])).toEqual([
    "-f",
    "concat",
    "-safe",
    "0",
    "-i",
    copy,
    "out.mkv",
  ])
  expect(withSafeOff(["-f", "concat", copy], [copy])).toEqual(["-f", "concat", "-safe", "0", copy])
  expect(withSafeOff(["-f", "concat", "--", copy], [copy])).toEqual(["-f", "concat", "-safe", "0", "--", copy])
})

describe("the policy on a worker's concat copy (-safe 0)", () => {
  test("a symlink entry out of the root is refused, naming the caller's argument and line only", async () => {
    const msg = await refusal(concat("list.txt"), [{ arg: 5, content: "file '$Media/a.ts'\nfile '$Media/link.ts'\n" }])
    expect(msg).toBe(
      `line 2 of argument 6 "$Media/list.txt" escapes $Media through a symlink; point the symlink inside the mapped directory`,
    )
  })

  test("an entry that is an HLS playlist escaping is refused", async () => {
    expect(await refusal(concat("list.txt"), [{ arg: 5, content: "file '$Media/inner.m3u8'\n" }])).toMatch(
      /names a file outside/,
    )
  })

  test("network entries follow allow_network and allowed_hosts", async () => {
    const files = [{ arg: 5, content: "file 'http://example.com/a.ts'\n" }]
    expect(await refusal(concat("list.txt"), files)).toMatch(/names a network protocol or host that is not allowed/)
    expect(await refusal(concat("list.txt"), files, { allowNetwork: true, allowedHosts: ["other.org"] })).toMatch(
      /not allowed/,
    )
    const ok = await run(concat("list.txt"), files, { allowNetwork: true, allowedHosts: ["example.com"] })
    expect(ok.args).toContain("-safe")
  })

  test("a protocol ffmpeg could misuse in an entry is refused", async () => {
    expect(await refusal(concat("list.txt"), [{ arg: 5, content: "file 'concatf:$Media/a.ts'\n" }])).toMatch(
      /names a protocol that is not allowed/,
    )
  })

  test("-safe 0 on an input the worker did not write is still refused", async () => {
    const policy = createArgumentPolicy({ allowNetwork: false, allowedHosts: [] }, { read: readHead })
    const args = concat("list.txt")
    writeFileSync(join(media, "list.txt"), "file a.ts\n")
    const mapped = mapper.mapArgs(args, ["Media"], "$Media")
    await expect(
      policy.check({
        binary: "ffmpeg",
        original: args,
        args: mapped.args,
        cwd: mapped.cwd,
        roots: mapper.roots(["Media"]),
        isPassthrough: mapper.isPassthrough,
      }),
    ).rejects.toThrow(PolicyError)
  })

  test("option safe 0 inside a copied list is refused (it would apply to a nested list)", async () => {
    const content = "file '$Media/a.ts'\noption safe 0\n"
    expect(await refusal(concat("list.txt"), [{ arg: 5, content }])).toMatch(/line 2 of "list.txt" sets an option/)
  })

  test("a copy's entries are checked as absolute paths by the policy itself", async () => {
    const copy = join(dir, "copy.txt")
    writeFileSync(copy, `file '${dir}/secret.txt'\nfile '${media}/a.ts'\n`)
    const args = ["-f", "concat", "-safe", "0", "-i", copy, "-f", "null", "-"]
    const policy = createArgumentPolicy({ allowNetwork: false, allowedHosts: [] }, { read: readHead })
    const job = {
      binary: "ffmpeg",
      original: concat("list.txt"),
      args,
      cwd: media,
      roots: mapper.roots(["Media"]),
      isPassthrough: mapper.isPassthrough,
      copies: new Set([5]),
    }
    await expect(policy.check(job)).rejects.toThrow(
      `argument 6 "$Media/list.txt": line 1 of "copy.txt" names a file outside the job's directories`,
    )
    writeFileSync(copy, `file '${media}/a.ts'\n`)
    expect((await policy.check(job)).args).toContain(copy)
  })
})
