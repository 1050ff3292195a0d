import { test, expect, describe, beforeAll, afterAll } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { thrown } from "../../../test/helpers/errors.ts"
import { createClientMapper, createWorkerMapper } from "./mapping.ts"

let tmp = ""
// Client layout: movies, movies-4k (boundary), media + media/tv (nested roots), movies-link -> movies.
let C = { movies: "", movies4k: "", media: "", tv: "", moviesLink: "", elsewhere: "" }
// Worker layout: movies with an inner symlink to outside (secret) and one staying inside.
let W = { movies: "", secret: "", moviesLink: "" }

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "dffmpeg-paths-"))
  C = {
    movies: join(tmp, "c/movies"),
    movies4k: join(tmp, "c/movies-4k"),
    media: join(tmp, "c/media"),
    tv: join(tmp, "c/media/tv"),
    moviesLink: join(tmp, "c/movies-link"),
    elsewhere: join(tmp, "c/elsewhere"),
  }
  W = { movies: join(tmp, "w/movies"), secret: join(tmp, "w/secret"), moviesLink: join(tmp, "w/movies-link") }
  for (const d of [C.movies, join(C.movies, "sub"), C.movies4k, C.tv, C.elsewhere, join(W.movies, "sub"), W.secret]) {
    mkdirSync(d, { recursive: true })
  }
  writeFileSync(join(C.movies, "a.mkv"), "")
  writeFileSync(join(C.elsewhere, "in.mkv"), "")
  writeFileSync(join(W.secret, "key"), "")
  symlinkSync(C.movies, C.moviesLink)
  symlinkSync(W.movies, W.moviesLink)
  symlinkSync(W.secret, join(W.movies, "escape"))
  symlinkSync(join(W.movies, "sub"), join(W.movies, "inner"))
})

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true })
})

describe("client mapper", () => {
  const client = (paths: Record<string, string>, cwd = "/", passthrough?: string[]) =>
    createClientMapper({ paths, passthrough, cwd })

  test("maps args by longest root first and collects path variables", () => {
    const m = client({ Media: C.media, TV: C.tv, Movies: C.movies })
    const cases: [string, string][] = [
      [join(C.tv, "show/ep1.mkv"), "$TV/show/ep1.mkv"],
      [join(C.media, "other.mkv"), "$Media/other.mkv"],
      [C.tv, "$TV"],
      [C.movies + "/", "$Movies"],
      [join(C.movies, "sub/../a.mkv"), "$Movies/a.mkv"],
      [join(C.movies, "new/dir/out.mkv"), "$Movies/new/dir/out.mkv"],
      [join(C.movies, "seg%03d.ts"), "$Movies/seg%03d.ts"],
      ["file:" + join(C.movies, "a.mkv"), "file:$Movies/a.mkv"],
    ]
    for (const [input, want] of cases) expect(m.mapArgs([input]).args).toEqual([want])
    const r = m.mapArgs(["-i", join(C.tv, "x.mkv"), join(C.movies, "y.mkv"), join(C.tv, "z.mkv")])
    expect(r.paths).toEqual(["Movies", "TV"])
  })

  test("leaves non-path arguments untouched", () => {
    const m = client({ Movies: C.movies })
    const args = [
      "-c:v",
      "libx264",
      "-",
      "pipe:1",
      "rel/out.mkv",
      "http://host/a.mkv",
      "-vf",
      "scale=1280:-2,fps=30",
      "",
    ]
    expect(m.mapArgs(args)).toEqual({ args, paths: [], cwd: null })
  })

  test("escapes a literal leading $", () => {
    const m = client({ Movies: C.movies })
    expect(m.mapArgs(["$5", "file:$x", "$$y", "a$b"]).args).toEqual(["$$5", "file:$$x", "$$$y", "a$b"])
  })

  test("respects the / boundary", () => {
    const m = client({ Movies: C.movies })
    const err = thrown(() => m.mapArgs([join(C.movies4k, "x.mkv")]))
    expect(err.message).toContain("is not under any configured path mapping (client paths: Movies)")
    expect(thrown(() => client({ Movies: "/mnt/movies" }).mapArgs(["/mnt/movies-4k/x"])).message).toContain(
      "/mnt/movies-4k/x",
    )
    expect(client({ Movies: "/mnt/movies" }).mapArgs(["/mnt/movies/x"]).args).toEqual(["$Movies/x"])
  })

  test("accepts a trailing-slash root and a root of /", () => {
    expect(client({ Movies: C.movies + "/" }).mapArgs([join(C.movies, "a.mkv")]).args).toEqual(["$Movies/a.mkv"])
    expect(client({ Root: "/" }).mapArgs(["/x/y.mkv", "/"]).args).toEqual(["$Root/x/y.mkv", "$Root"])
  })

  test("matches through a symlinked root from either side", () => {
    const viaLink = client({ Movies: C.moviesLink })
    expect(viaLink.mapArgs([join(C.moviesLink, "a.mkv"), join(C.movies, "a.mkv")]).args).toEqual([
      "$Movies/a.mkv",
      "$Movies/a.mkv",
    ])
    const viaReal = client({ Movies: C.movies })
    expect(viaReal.mapArgs([join(C.moviesLink, "out.mkv")]).args).toEqual(["$Movies/out.mkv"])
  })

  test("passes /dev/null and configured passthrough paths through", () => {
    expect(client({ Movies: C.movies }).mapArgs(["-f", "null", "/dev/null", "file:/dev/null"]).args).toEqual([
      "-f",
      "null",
      "/dev/null",
      "file:/dev/null",
    ])
    expect(client({ Root: "/" }).mapArgs(["/dev/null"]).args).toEqual(["/dev/null"])
    const custom = client({}, "/", [C.elsewhere + "/"])
    expect(custom.mapArgs([C.elsewhere]).args).toEqual([C.elsewhere])
    expect(thrown(() => custom.mapArgs(["/dev/null"])).message).toContain("/dev/null")
  })

  test("refuses unmapped absolute paths, naming the configured variables", () => {
    const err = thrown(() => client({ TV: C.tv, Movies: C.movies }).mapArgs(["-i", "/nowhere/x.mkv"]))
    expect(err.message).toBe(
      "path /nowhere/x.mkv is not under any configured path mapping (client paths: Movies, TV); add a mapping or use a relative path",
    )
    expect(err.details).toEqual({ argument: 2 })
    expect(thrown(() => client({}).mapArgs(["/x"])).message).toContain("(client paths: none)")
  })

  test("refuses arguments that are not valid UTF-8", () => {
    const err = thrown(() => client({ Movies: C.movies }).mapArgs(["-i", "bad\uFFFDname.mkv"]))
    expect(err.message).toStartWith("argument 2 is not valid UTF-8")
  })

  test("maps a working directory under a mapping", () => {
    const r = client({ Movies: C.movies }, join(C.movies, "sub")).mapArgs(["-i", "../a.mkv", "out.mkv"])
    expect(r).toEqual({ args: ["-i", "../a.mkv", "out.mkv"], paths: ["Movies"], cwd: "$Movies/sub" })
    expect(client({ Movies: C.movies }, C.moviesLink).mapArgs([]).cwd).toBe("$Movies")
  })

  test("an unmapped working directory refuses existing relative files only", () => {
    const m = client({ Movies: C.movies }, C.elsewhere)
    expect(m.mapArgs(["-y", "out.mkv", "-c:v", "libx264", "pipe:1"])).toEqual({
      args: ["-y", "out.mkv", "-c:v", "libx264", "pipe:1"],
      paths: [],
      cwd: null,
    })
    const err = thrown(() => m.mapArgs(["-i", "in.mkv", "out.mkv"]))
    expect(err.message).toStartWith(
      `relative path in.mkv needs the working directory ${C.elsewhere} to be under a path mapping`,
    )
    expect(thrown(() => m.mapArgs(["-i", "file:in.mkv"])).message).toContain("relative path in.mkv")
  })

  test("refuses invalid variable names", () => {
    expect(thrown(() => client({ "bad-name": C.movies })).message).toContain('"bad-name"')
  })
})

describe("worker mapper", () => {
  const worker = (paths: Record<string, string>, passthrough?: string[]) => createWorkerMapper({ paths, passthrough })

  test("maps path variables to worker roots", () => {
    const m = worker({ Movies: W.movies + "/", Out: "/" })
    const cases: [string, string][] = [
      ["$Movies", W.movies],
      ["$Movies/a.mkv", join(W.movies, "a.mkv")],
      ["file:$Movies/a.mkv", "file:" + join(W.movies, "a.mkv")],
      ["$Movies/new/seg%03d.ts", join(W.movies, "new/seg%03d.ts")],
      ["$Movies/sub/../b.mkv", join(W.movies, "b.mkv")],
      ["$Movies/inner/c.mkv", join(W.movies, "inner/c.mkv")],
      ["$Out/x", "/x"],
      ["$Out", "/"],
    ]
    for (const [input, want] of cases) expect(m.mapArgs([input], ["Movies", "Out"], null).args).toEqual([want])
  })

  test("unescapes $$ and leaves other arguments alone", () => {
    const m = worker({ Movies: W.movies })
    const args = [
      "$$5",
      "file:$$x",
      "$$$y",
      "-c:v",
      "libx264",
      "-",
      "pipe:1",
      "rel.mkv",
      "a$b",
      "/dev/null",
      "file:/dev/null",
    ]
    expect(m.mapArgs(args, [], null).args).toEqual([
      "$5",
      "file:$x",
      "$$y",
      "-c:v",
      "libx264",
      "-",
      "pipe:1",
      "rel.mkv",
      "a$b",
      "/dev/null",
      "file:/dev/null",
    ])
  })

  test("refusals", () => {
    const m = worker({ Movies: W.movies, TV: "/srv/tv" })
    const cases: [string[], string[], string][] = [
      [["$Music/a"], ["Music"], "path variable $Music in argument 1 is not configured on this worker"],
      [["-i", "$TV/a"], ["Movies"], "path variable $TV in argument 2 is not declared by the job"],
      [["$Movies/../secret/key"], ["Movies"], "argument 1 escapes $Movies;"],
      [["$Movies/sub/../../x"], ["Movies"], "argument 1 escapes $Movies;"],
      [["$Movies/escape/key"], ["Movies"], "argument 1 escapes $Movies through a symlink"],
      [["file:$Movies/escape"], ["Movies"], "argument 1 escapes $Movies through a symlink"],
      [
        ["/etc/passwd"],
        [],
        "absolute path /etc/passwd in argument 1 is not allowed on this worker (use a path variable)",
      ],
      [["file:/etc/passwd"], [], "absolute path /etc/passwd"],
      // hlsenc writes the key file there.
      [["-hls_enc_key_url", "/etc/cron.d/x", "o.m3u8"], [], "absolute path /etc/cron.d/x in argument 2"],
      [["$5"], [], 'argument 1 starts with "$" but is not a path variable'],
      [["$Movies.mkv"], ["Movies"], 'argument 1 starts with "$" but is not a path variable'],
    ]
    for (const [args, jobPaths, message] of cases) {
      expect(thrown(() => m.mapArgs(args, jobPaths, null)).message).toContain(message)
    }
  })

  test("confines through a symlinked root", () => {
    const m = worker({ Movies: W.moviesLink })
    expect(m.mapArgs(["$Movies/inner/a.mkv"], ["Movies"], null).args).toEqual([join(W.moviesLink, "inner/a.mkv")])
    expect(thrown(() => m.mapArgs(["$Movies/escape/key"], ["Movies"], null)).message).toContain("through a symlink")
  })

  test("honours configured passthrough paths", () => {
    const m = worker({}, ["/dev/null", "/dev/zero/"])
    expect(m.mapArgs(["/dev/zero"], [], null).args).toEqual(["/dev/zero"])
    expect(thrown(() => worker({}, []).mapArgs(["/dev/null"], [], null)).message).toContain("/dev/null")
  })

  test("working directory", () => {
    const m = worker({ Movies: W.movies })
    expect(m.mapArgs([], ["Movies"], null).cwd).toBeNull()
    expect(m.mapArgs([], ["Movies"], "$Movies").cwd).toBe(W.movies)
    expect(m.mapArgs([], ["Movies"], "$Movies/sub").cwd).toBe(join(W.movies, "sub"))
    expect(thrown(() => m.mapArgs([], ["Movies"], "$Movies/..")).message).toContain(
      "the working directory escapes $Movies",
    )
    expect(thrown(() => m.mapArgs([], ["Movies"], "/tmp")).message).toContain(
      "working directory /tmp is not a path variable",
    )
    expect(thrown(() => m.mapArgs([], ["Movies"], "$$Movies")).message).toContain("is not a path variable")
    expect(thrown(() => m.mapArgs([], [], "$Movies")).message).toContain("not declared by the job")
  })
})

describe("round trip", () => {
  test("client root A maps to worker root B", () => {
    const a = createClientMapper({ paths: { V: C.movies }, passthrough: ["/dev/null"], cwd: join(C.movies, "sub") })
    const b = createWorkerMapper({ paths: { V: W.movies }, passthrough: ["/dev/null"] })
    const sent = a.mapArgs([
      "-i",
      join(C.movies, "x/y.mkv"),
      "-c:v",
      "libx264",
      "-metadata",
      "$5",
      "-f",
      "null",
      "/dev/null",
    ])
    expect(sent.args).toEqual(["-i", "$V/x/y.mkv", "-c:v", "libx264", "-metadata", "$$5", "-f", "null", "/dev/null"])
    expect(sent.paths).toEqual(["V"])
    const got = b.mapArgs(sent.args, sent.paths, sent.cwd)
    expect(got.args).toEqual([
      "-i",
      join(W.movies, "x/y.mkv"),
      "-c:v",
      "libx264",
      "-metadata",
      "$5",
      "-f",
      "null",
      "/dev/null",
    ])
    expect(got.cwd).toBe(join(W.movies, "sub"))
  })
})

describe("paths inside filtergraphs", () => {
  test("client maps file options to path variables, worker back to its root, re-escaped", () => {
    const a = createClientMapper({ paths: { V: C.movies, TV: C.tv }, cwd: "/" })
    const b = createWorkerMapper({ paths: { V: join(W.movies, "sub"), TV: W.movies } })
    const sent = a.mapArgs([
      "-i",
      join(C.movies, "a.mkv"),
      "-vf",
      `subtitles=f='${join(C.movies, "a.mkv")}':si=0,drawtext=text='$5, ok':fontfile=/usr/share/fonts/x.ttf`,
      "-filter_complex:v",
      `movie=${join(C.tv, "logo.png")}[wm];[0:v][wm]overlay`,
      "-f",
      "null",
      "/dev/null",
    ])
    expect(sent.args[3]).toBe("subtitles=f=$V/a.mkv:si=0,drawtext=text='$5, ok':fontfile=/usr/share/fonts/x.ttf")
    expect(sent.args[5]).toBe("movie=$TV/logo.png[wm];[0:v][wm]overlay")
    expect(sent.paths).toEqual(["TV", "V"])
    const got = b.mapArgs(sent.args, sent.paths, sent.cwd)
    expect(got.args[3]).toBe(
      `subtitles=f=${join(W.movies, "sub/a.mkv")}:si=0,drawtext=text='$5, ok':fontfile=/usr/share/fonts/x.ttf`,
    )
    expect(got.args[5]).toBe(`movie=${join(W.movies, "logo.png")}[wm];[0:v][wm]overlay`)
  })

  test("a literal leading $ in a file option is escaped and unescaped", () => {
    const a = createClientMapper({ paths: {}, cwd: "/" })
    const sent = a.mapArgs(["-vf", "ass=$x.ass", "-f", "null", "-"])
    expect(sent.args[1]).toBe("ass=$$x.ass")
    const got = createWorkerMapper({ paths: {} }).mapArgs(sent.args, [], null)
    expect(got.args[1]).toBe("ass=$x.ass")
  })

  test("client refuses an unmapped absolute path in a file option, naming the argument", () => {
    const err = thrown(() =>
      createClientMapper({ paths: { V: C.movies }, cwd: "/" }).mapArgs(["-i", "x", "-vf", "subtitles=/nowhere/a.srt"]),
    )
    expect(err.message).toBe(
      "path /nowhere/a.srt in filter subtitles of argument 4 is not under any configured path mapping (client paths: V); add a mapping or use a relative path",
    )
    expect(err.details).toEqual({ argument: 4 })
  })

  test("worker refuses an undeclared or escaping variable in a graph", () => {
    const m = createWorkerMapper({ paths: { V: W.movies } })
    expect(thrown(() => m.mapArgs(["-vf", "ass=$V/a.ass"], [], null)).message).toContain(
      "path variable $V in filter ass in argument 2 is not declared by the job",
    )
    expect(thrown(() => m.mapArgs(["-vf", "ass=$V/escape/key"], ["V"], null)).message).toContain(
      "filter ass in argument 2 escapes $V through a symlink",
    )
  })

  test("ffprobe: a lavfi movie input is a graph", () => {
    const sent = createClientMapper({ paths: { V: C.movies }, cwd: "/" }).mapArgs(
      ["-show_streams", "-f", "lavfi", `movie=${join(C.movies, "a.mkv")}`],
      "ffprobe",
    )
    expect(sent.args[3]).toBe("movie=$V/a.mkv")
  })
})
