import { describe, expect, test } from "bun:test"
import { createRootDecoder, createRootEncoder, ffprobeEscape, rewrittenStreams, type Rewriter } from "./rewrite.ts"

const enc = new TextEncoder()
const dec = new TextDecoder()

/** Feeds `text` cut at `cuts` (byte offsets) and returns everything written, with the held-back rest. */
function feed(r: Rewriter, bytes: Uint8Array, cuts: number[]): Uint8Array {
  const parts: Uint8Array[] = []
  let at = 0
  for (const cut of [...cuts, bytes.length]) {
    parts.push(r.push(bytes.subarray(at, cut)))
    at = cut
  }
  parts.push(r.end())
  return Buffer.concat(parts)
}

const oneByOne = (n: number) => Array.from({ length: n }, (_, i) => i)

/** Every chunking of interest: whole, one byte at a time, and every single cut. */
function chunkings(n: number): number[][] {
  return [[], oneByOne(n), ...oneByOne(n).map((i) => [i])]
}

const WORKER = [
  { name: "Media", forms: ["/srv/media", "/mnt/disk1/media"] },
  { name: "Tv", forms: ["/srv/media/tv"] },
]
const CALLER = { Media: "/home/me/Media", Tv: "/tv" }

/** Worker → coordinator → caller, with the same chunking on both sides. */
function roundTrip(
  text: string,
  cuts: number[],
  escape = ffprobeEscape([]),
  caller: Record<string, string> = CALLER,
  worker = WORKER,
) {
  const wire = feed(createRootEncoder(worker, escape), enc.encode(text), cuts)
  return { wire: dec.decode(wire), out: dec.decode(feed(createRootDecoder(caller, escape), wire, cuts)) }
}

describe("the worker's roots become the caller's", () => {
  const cases: [string, string, string][] = [
    [
      "Input #0, matroska,webm, from '/srv/media/a.mkv':\n",
      "Input #0, matroska,webm, from '$Media/a.mkv':\n",
      "Input #0, matroska,webm, from '/home/me/Media/a.mkv':\n",
    ],
    ["[out#0] Opening '/srv/media/tv/s01/e1.ts' for writing\n", "", "[out#0] Opening '/tv/s01/e1.ts' for writing\n"],
    ["/mnt/disk1/media/x.mkv: No such file or directory\n", "$Media/x.mkv: No such file or directory\n", ""],
    // A tee slave's target follows its options.
    [
      "Slave '[f=mpegts]/srv/media/a.ts': error\n",
      "Slave '[f=mpegts]$Media/a.ts': error\n",
      "Slave '[f=mpegts]/home/me/Media/a.ts': error\n",
    ],
    ['"filename": "file:/srv/media/a b.mkv",', '"filename": "file:$Media/a b.mkv",', ""],
    ["the root itself: /srv/media", "the root itself: $Media", "the root itself: /home/me/Media"],
    ["/srv/media", "$Media", "/home/me/Media"],
    // Of nested roots the longest wins, even when a chunk ends inside it.
    [
      "from '/srv/media/tv/a.ts' and '/srv/media/tvx/b.ts'",
      "from '$Tv/a.ts' and '$Media/tvx/b.ts'",
      "from '/tv/a.ts' and '/home/me/Media/tvx/b.ts'",
    ],
    // A literal $ and text that looks like a token come out as they were.
    [
      "price $5, $Media/a, $$Tv, /srv/media/$Tv and $",
      "price $$5, $$Media/a, $$$$Tv, $Media/$$Tv and $$",
      "price $5, $Media/a, $$Tv, /home/me/Media/$Tv and $",
    ],
  ]
  for (const [text, wire, out] of cases) {
    test(JSON.stringify(text.slice(0, 40)), () => {
      for (const cuts of chunkings(text.length)) {
        const r = roundTrip(text, cuts)
        if (wire) expect(r.wire).toBe(wire)
        expect(r.out).toBe(
          out || text.replaceAll("/srv/media/tv", "/tv").replace(/\/mnt\/disk1\/media|\/srv\/media/g, "/home/me/Media"),
        )
      }
    })
  }

  test("a root that is only the start of a longer name, or inside another path, is left alone", () => {
    for (const text of ["/srv/media2/a.mkv", "/srv/mediaX", "/x/srv/media/a.mkv", "a/srv/media/b", "/srv/medi"]) {
      for (const cuts of chunkings(text.length)) expect(roundTrip(text, cuts)).toEqual({ wire: text, out: text })
    }
  })

  test("bytes that are not UTF-8 pass unchanged", () => {
    const bytes = new Uint8Array([0xff, 0x27, ...enc.encode("/srv/media/"), 0xc3, 0x28, 0x24, 0x00, 0x80])
    for (const cuts of chunkings(bytes.length)) {
      const wire = feed(createRootEncoder(WORKER, ffprobeEscape([])), bytes, cuts)
      const out = feed(createRootDecoder(CALLER, ffprobeEscape([])), wire, cuts)
      expect([...out]).toEqual([0xff, 0x27, ...enc.encode("/home/me/Media/"), 0xc3, 0x28, 0x24, 0x00, 0x80])
    }
  })

  test("a $Var of a variable the caller does not know is left as it came", () => {
    const out = feed(createRootDecoder(CALLER, ffprobeEscape([])), enc.encode("$Other/a $$ $Media"), [3])
    expect(dec.decode(out)).toBe("$Other/a $ /home/me/Media")
  })

  test("the root / is never rewritten", () => {
    const text = "'/etc/x' '/srv/media/a'"
    const r = roundTrip(text, [], ffprobeEscape([]), CALLER, [{ name: "Media", forms: ["/"] }])
    expect(r).toEqual({ wire: text, out: text })
  })
})

describe("each ffprobe writer's escaping", () => {
  // Both roots hold every character some writer escapes.
  const worker = [{ name: "Media", forms: [`/srv/a&b<c>d"e'f,g|h\\i$j:k=l#m\`n o`] }]
  const caller = { Media: `/home/x&y"z\\w$v:u=t#s,r|q'p<o>` }
  const w = worker[0]!.forms[0]!
  const c = caller.Media
  // What each writer prints for `file:<root>/a.mkv` (as checked against ffprobe 5.1's output).
  const printed: [string, (root: string) => string][] = [
    ["json", (r) => `"filename": "file:${r.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}/a.mkv",`],
    [
      "xml",
      (r) =>
        `<format filename="file:${r.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;")}/a.mkv"`,
    ],
    ["flat", (r) => `format.filename="file:${r.replace(/[\\"`$]/g, (ch) => `\\${ch}`)}/a.mkv"`],
    ["ini", (r) => `filename=file\\:${r.replace(/[\\#=:]/g, (ch) => `\\${ch}`)}/a.mkv`],
    ["csv", (r) => `format,"file:${r.replaceAll('"', '""')}/a.mkv",1`],
    ["compact", (r) => `format|filename=file:${r.replace(/[\\|]/g, (ch) => `\\${ch}`)}/a.mkv|nb_streams=1`],
    ["compact=s=,", (r) => `format,filename=file:${r.replace(/[\\,]/g, (ch) => `\\${ch}`)}/a.mkv,nb_streams=1`],
    ["default", (r) => `filename=file:${r}/a.mkv`],
  ]
  for (const [of, print] of printed) {
    test(of, () => {
      const escape = ffprobeEscape(["-v", "error", "-of", of, "-show_format"])
      const text = `${print(w)}\nprice: $3\n`
      const expected = `${print(c)}\nprice: $3\n`
      for (const cuts of [[], oneByOne(text.length)]) {
        const r = roundTrip(text, cuts, escape, caller, worker)
        // The coordinator sees the token, never the worker's root.
        expect(r.wire).toContain("$Media/a.mkv")
        expect(r.wire).not.toContain("/srv")
        expect(r.out).toBe(expected)
      }
    })
  }

  test("the last -of/-print_format wins", () => {
    expect(ffprobeEscape(["-print_format", "json", "-of", "xml"])('"&')).toBe("&quot;&amp;")
    expect(ffprobeEscape(["-of", "xml", "-print_format", "json"])('"&')).toBe('\\"&')
    expect(ffprobeEscape(["-of", "compact=e=none"])("|\\")).toBe("|\\")
    expect(ffprobeEscape(["-of", "compact=item_sep=;"])(";|")).toBe("\\;|")
  })

  test("ffmpeg's stdout is never rewritten; ffprobe's is, stderr always", () => {
    expect(rewrittenStreams("ffmpeg", ["-of", "json"]).stdout).toBeUndefined()
    expect(rewrittenStreams("ffprobe", ["-of", "json"]).stdout?.('"')).toBe('\\"')
    expect(rewrittenStreams("ffprobe", ["-of", "json"]).stderr('"')).toBe('"')
  })
})
