import { Kind, concatFrames as concat, encodeFrame, encodeJsonFrame } from "../../src/shared/protocol/frames.ts"
import { rng } from "../../test/helpers/rng.ts"

/** Seeded random choices for one request. */
export class Gen {
  readonly next: () => number
  constructor(seed: number) {
    this.next = rng(seed)
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]
  }
  /** Picks by weight: `[[w, value], ...]`. */
  weighted<T>(xs: readonly (readonly [number, T])[]): T {
    let total = 0
    for (const [w] of xs) total += w
    let x = this.next() * total
    for (const [w, v] of xs) if ((x -= w) < 0) return v
    return xs[xs.length - 1][1]
  }
  bytes(n: number): Uint8Array {
    // Four bytes per draw: large garbage bodies are cheap to make.
    const b = new Uint8Array(n + 3)
    const view = new DataView(b.buffer)
    for (let i = 0; i < n; i += 4) view.setUint32(i, (this.next() * 4294967296) >>> 0)
    return b.subarray(0, n)
  }
  /** A short printable string with some odd characters; never a path (no `/`). */
  word(max = 12): string {
    const alphabet = "abcXYZ019_-.:;$%&=+ ~\\'\"<>{}[]!?\t\u00e9\u2603\u{1f600}"
    let s = ""
    for (let i = this.int(0, max); i > 0; i--) s += this.pick([...alphabet])
    return s
  }
}

export const VALID_ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

/**
 * Ids that are not a job's: malformed, unknown, huge, odd characters. Never the fuzzer's own identities:
 * a mutated `DELETE /admin/users/:name` or `rotate-key` on one would lock the fuzzer (or its worker) out.
 */
export function badId(g: Gen): string {
  return g.pick([
    VALID_ULID,
    "0".repeat(26),
    "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
    "01arz3ndektsv4rrffq69g5fav",
    "x",
    "",
    "%00",
    "%2e%2e",
    "..%2f..%2fadmin",
    "%E0%A4%A",
    "%ff%fe",
    "1".repeat(10_000),
    encodeURIComponent("\u{1f600}".repeat(30)),
    "-1",
    "null",
    "undefined",
    "__proto__",
    "constructor",
    "nobody",
    "a".repeat(65),
    encodeURIComponent("<script>alert(1)</script>"),
    "%0d%0aSet-Cookie:%20x=1",
  ])
}

/** A query value meant to break a parser: negative, float, huge, NaN, encoded garbage. */
export function badNumber(g: Gen): string {
  return g.pick([
    "-1",
    "1.5",
    "1e9",
    "NaN",
    "Infinity",
    "0x10",
    "",
    " ",
    "%00",
    "9".repeat(20),
    "9".repeat(400),
    "18446744073709551616",
    "1,2",
    "true",
    "[]",
    "%ff",
    g.word(),
    "9007199254740993",
  ])
}

/** JSON that is large, deep, of the wrong type or not JSON at all. */
export function badJson(g: Gen, hugeOk: boolean): { label: string; body: Uint8Array | string } {
  const kind = g.weighted<string>([
    [3, "empty"],
    [3, "null"],
    [3, "array"],
    [3, "number"],
    [3, "string"],
    [3, "truncated"],
    [2, "deep-array"],
    [2, "deep-object"],
    [3, "invalid-utf8"],
    [2, "bom"],
    [2, "binary"],
    [2, "lone-surrogate"],
    [2, "proto"],
    [1, "dup-keys"],
    [hugeOk ? 1 : 0, "huge-string"],
    [hugeOk ? 1 : 0, "huge-array"],
  ])
  switch (kind) {
    case "empty":
      return { label: kind, body: "" }
    case "null":
      return { label: kind, body: "null" }
    case "array":
      return { label: kind, body: "[1,2,3]" }
    case "number":
      return { label: kind, body: g.pick(["0", "-0", "1e400", "123456789012345678901234567890"]) }
    case "string":
      return { label: kind, body: JSON.stringify(g.word(40)) }
    case "truncated":
      return { label: kind, body: g.pick(['{"binary":"ffmpeg","args":[', "{", '{"a":', '{"name":"x","role":"cl']) }
    case "deep-array": {
      const n = g.pick([1000, 10_000, 100_000, 400_000])
      return { label: `${kind}-${n}`, body: "[".repeat(n) + "]".repeat(n) }
    }
    case "deep-object": {
      const n = g.pick([1000, 10_000, 100_000])
      return { label: `${kind}-${n}`, body: '{"a":'.repeat(n) + "1" + "}".repeat(n) }
    }
    case "invalid-utf8":
      return {
        label: kind,
        body: new Uint8Array([
          0x7b, 0x22, 0x62, 0x69, 0x6e, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80, 0x22, 0x7d,
        ]),
      }
    case "bom":
      return { label: kind, body: "\ufeff{}" }
    case "binary":
      return { label: kind, body: g.bytes(g.int(1, 4096)) }
    case "lone-surrogate":
      return { label: kind, body: '{"name":"\\ud800","role":"client","binary":"\\udfff"}' }
    case "proto":
      return { label: kind, body: '{"__proto__":{"role":"admin"},"constructor":{"prototype":{"x":1}}}' }
    case "dup-keys":
      return { label: kind, body: '{"name":"a","name":"b","role":"client","role":"admin"}' }
    case "huge-string": {
      const n = g.pick([1, 4, 7]) * 1024 * 1024
      return { label: `${kind}-${n >> 20}M`, body: `{"x":"${"a".repeat(n)}"}` }
    }
    default: {
      const n = g.pick([100_000, 1_000_000])
      return { label: `${kind}-${n}`, body: "[" + "0,".repeat(n) + "0]" }
    }
  }
}

/** Frame bodies: some well formed with odd contents, some truncated or garbage. */
export function frameBody(g: Gen, kinds: number[], seqNext: () => number): { label: string; body: Uint8Array } {
  const kind = g.weighted<string>([
    [6, "valid"],
    [2, "garbage"],
    [2, "truncated"],
    [2, "oversized-length"],
    [2, "odd-kind"],
    [2, "odd-seq"],
    [2, "bad-json"],
    [1, "empty"],
    [1, "many-tiny"],
  ])
  const enc = new TextEncoder()
  const valid = () => {
    const k = g.pick(kinds)
    if (k === Kind.exit)
      return encodeJsonFrame(
        k,
        0,
        g.pick([
          { code: 0, signal: null },
          { code: 1, signal: null },
          { code: null, signal: "SIGKILL" },
          { code: null, signal: null, error: "fuzz" },
        ]),
      )
    if (k === Kind.progress)
      return encodeJsonFrame(k, 0, {
        timeMs: 1,
        durationMs: null,
        percent: null,
        speed: null,
        fps: null,
        frame: null,
        etaMs: null,
      })
    if (k === Kind.signal)
      return encodeFrame(k, seqNext(), enc.encode(g.pick(["SIGINT", "SIGTERM", "SIGKILL", "SIGSTOP", "", "INT"])))
    return encodeFrame(k, seqNext(), g.bytes(g.int(0, 2048)))
  }
  switch (kind) {
    case "valid":
      return { label: kind, body: concat(Array.from({ length: g.int(1, 4) }, valid)) }
    case "garbage":
      return { label: kind, body: g.bytes(g.int(1, 8192)) }
    case "truncated": {
      const f = valid()
      return { label: kind, body: f.subarray(0, g.int(0, Math.max(0, f.length - 1))) }
    }
    case "oversized-length": {
      const f = encodeFrame(g.pick(kinds), seqNext(), g.bytes(8))
      new DataView(f.buffer).setUint32(9, g.pick([0xffffffff, 16 * 1024 * 1024 + 1, 1 << 30]))
      return { label: kind, body: f }
    }
    case "odd-kind":
      return {
        label: kind,
        body: encodeFrame(
          g.pick([0, 12, 99, 255, Kind.ping, Kind.cancel, Kind.event, Kind.error]),
          seqNext(),
          g.bytes(16),
        ),
      }
    case "odd-seq": {
      const f = encodeFrame(g.pick(kinds), 0, g.bytes(16))
      const view = new DataView(f.buffer)
      view.setBigUint64(1, g.pick([0n, 1n, 2n ** 53n + 1n, 2n ** 64n - 1n, BigInt(g.int(2, 1_000_000_000))]))
      return { label: kind, body: f }
    }
    case "bad-json":
      return {
        label: kind,
        body: encodeFrame(
          g.pick([Kind.exit, Kind.progress]),
          0,
          g.pick([
            enc.encode("{"),
            enc.encode('{"code":"x"}'),
            enc.encode("[".repeat(50_000)),
            new Uint8Array([0xff, 0xfe]),
            enc.encode('{"timeMs":-1}'),
            enc.encode('{"code":1e400,"signal":null}'),
          ]),
        ),
      }
    case "empty":
      return { label: kind, body: new Uint8Array() }
    default:
      return {
        label: kind,
        body: concat(
          Array.from({ length: g.int(100, 3000) }, () => encodeFrame(g.pick(kinds), seqNext(), new Uint8Array())),
        ),
      }
  }
}

/**
 * Hostile ffmpeg arguments (issue 9, F1–F3): reads anywhere, writes beside the job, other protocols,
 * lavfi sources, attachments, SSRF to a loopback canary. Reads may aim anywhere; every write target
 * is relative (at most two `../`, from a cwd at most one level above `$Media` or from the scratch
 * directory, both nested deep enough) or under `dir`, so even unconfined nothing is written outside the
 * fuzz directory. `canary` is the URL of the fuzzer's own loopback HTTP server.
 */
export function hostileArgs(
  g: Gen,
  n: number,
  canary: string,
  dir: string,
  fat: boolean,
): { label: string; binary: string; args: string[]; paths: string[]; cwd: string | null } {
  const out = (ext = "mkv") => ["-y", "-t", "0.1", `fz-${n}.${ext}`]
  const nul = ["-t", "0.1", "-f", "null", "-"]
  const up = "../".repeat(g.int(1, 12))
  const cases: [string, string[], string[]][] = [
    ["relative-read", ["-i", `${up}etc/passwd`, ...nul], []],
    ["file-relative-read", ["-i", `file:${up}etc/passwd`, ...nul], []],
    ["var-relative-read", ["-i", `$Media/${up}etc/passwd`, ...nul], ["Media"]],
    [
      "concat-proto",
      ["-f", "data", "-i", "concat:/etc/passwd|/etc/hostname", "-map", "0", "-c", "copy", "-f", "data", "-"],
      [],
    ],
    ["subfile-proto", ["-i", "subfile,,start,0,end,0,,:/etc/passwd", ...nul], []],
    ["cache-proto", ["-i", "cache:/etc/passwd", ...nul], []],
    ["crypto-proto", ["-i", "crypto:/etc/passwd", ...nul], []],
    ["data-uri", ["-i", "data:text/plain;base64,aGVsbG8=", ...nul], []],
    ["lavfi-movie", ["-f", "lavfi", "-i", "movie=/etc/passwd", ...nul], []],
    ["lavfi-amovie", ["-f", "lavfi", "-i", "amovie=../../in.wav", ...nul], []],
    ["vf-movie", ["-i", "$Media/in.wav", "-vf", "movie=/etc/hostname[m];[in][m]overlay", ...nul], ["Media"]],
    ["filter-script", ["-i", "$Media/in.wav", "-filter_script:a", `${up}etc/passwd`, ...nul], ["Media"]],
    [
      "attach",
      ["-i", "$Media/in.wav", "-attach", `${up}etc/passwd`, "-metadata:s:t", "mimetype=text/plain", ...out()],
      ["Media"],
    ],
    [
      "dump-attachment-name",
      ["-dump_attachment:t:0", `../fz-dump-${n}.txt`, "-i", "$Media/att.mkv", ...nul],
      ["Media"],
    ],
    ["dump-attachment-empty", ["-dump_attachment:t", "", "-i", "$Media/att.mkv", ...nul], ["Media"]],
    ["relative-write", ["-f", "lavfi", "-i", "anullsrc", "-y", "-t", "0.1", `../fz-out-${n}.mkv`], []],
    [
      "image2-write",
      ["-f", "lavfi", "-i", "color=s=16x16", "-frames:v", "2", "-y", "-f", "image2", `../../fz-img-${n}-%d.png`],
      [],
    ],
    [
      "tee-write",
      ["-f", "lavfi", "-i", "anullsrc", "-t", "0.1", "-f", "tee", "-map", "0", `[f=matroska]${dir}/fz-tee-${n}.mkv`],
      [],
    ],
    ["concat-demuxer", ["-f", "concat", "-safe", "0", "-i", "$Media/list.txt", ...nul], ["Media"]],
    ["ssrf-http", ["-i", `${canary}/fz-${n}`, ...nul], []],
    ["ssrf-tcp", ["-i", canary.replace("http://", "tcp://"), ...nul], []],
    ["ssrf-in-concat", ["-i", `concat:${canary}/a|${canary}/b`, ...nul], []],
    ["protocol-whitelist", ["-protocol_whitelist", "file,http,tcp,concat", "-i", `${canary}/wl-${n}`, ...nul], []],
    [
      "long-arg",
      ["-metadata", `comment=${"x".repeat(g.pick([4096, 65_536, 131_072]))}`, "-f", "lavfi", "-i", "anullsrc", ...nul],
      [],
    ],
    // Just over the default quota of 256 KiB of arguments per job (limits.max_args_bytes); with `fat`, up
    // to 7.8 MB per job (F5: accepted before the quotas, and each such job slows every listing).
    ["args-over-quota", ["-version", ...Array.from({ length: 2 }, () => `-metadata:s:${"y".repeat(131_060)}`)], []],
    ...(fat
      ? ([
          [
            "fat-args",
            ["-version", ...Array.from({ length: g.pick([8, 30, 60]) }, () => `-metadata:s:${"y".repeat(131_000)}`)],
            [],
          ],
        ] as [string, string[], string[]][])
      : []),
    ["too-long-arg", ["-i", "a".repeat(131_073), ...nul], []],
    ["many-args", [...Array.from({ length: g.pick([1000, 4096, 4097]) }, () => "-hide_banner"), "-version"], []],
    ["var-not-listed", ["-i", "$Secret/x", ...nul], []],
    ["var-escape", ["-i", "$$Media/in.wav", ...nul], []],
    ["abs-read", ["-i", "/etc/shadow", ...nul], []],
    ["dev-read", ["-f", "rawvideo", "-s", "1x1", "-i", "/dev/urandom", "-frames:v", "1", "-f", "null", "-"], []],
    ["proc-read", ["-f", "data", "-i", "/proc/self/environ", "-map", "0", "-c", "copy", "-f", "data", "-"], []],
    ["pipe-fd", ["-i", "pipe:3", ...nul], []],
    ["option-injection", ["-version", "-report", "-loglevel", "debug"], []],
    ["newline-arg", ["-i", "$Media/in.wav\n-i\n/etc/passwd", ...nul], ["Media"]],
    ["nul-arg", ["-i", "a\u0000b", ...nul], []],
  ]
  const [label, args, paths] = g.pick(cases)
  const cwd = g.chance(0.2) && paths.includes("Media") ? g.pick(["$Media", "$Media/out", "$Media/.."]) : null
  return { label, binary: g.chance(0.8) ? "ffmpeg" : "ffprobe", args, paths, cwd }
}

/** Jobs that should run and end quickly. */
export function validArgs(
  g: Gen,
  n: number,
): { label: string; binary: string; args: string[]; paths: string[]; cwd: string | null } {
  return g.pick([
    { label: "probe-version", binary: "ffprobe", args: ["-version"], paths: [], cwd: null },
    {
      label: "probe-file",
      binary: "ffprobe",
      args: ["-hide_banner", "-i", "$Media/in.wav"],
      paths: ["Media"],
      cwd: null,
    },
    {
      label: "ffmpeg-null",
      binary: "ffmpeg",
      args: ["-hide_banner", "-f", "lavfi", "-i", "sine=d=0.05", "-f", "null", "-"],
      paths: [],
      cwd: null,
    },
    {
      label: "ffmpeg-transcode",
      binary: "ffmpeg",
      args: ["-hide_banner", "-y", "-i", "$Media/in.wav", "-t", "0.05", `$Media/out/fz-${n}.wav`],
      paths: ["Media"],
      cwd: null,
    },
    {
      label: "ffmpeg-cwd",
      binary: "ffmpeg",
      args: ["-hide_banner", "-y", "-i", "in.wav", "-t", "0.05", `out/fz-cwd-${n}.wav`],
      paths: ["Media"],
      cwd: "$Media",
    },
    {
      label: "ffmpeg-stdout",
      binary: "ffmpeg",
      args: ["-hide_banner", "-i", "file:$Media/in.wav", "-f", "wav", "-"],
      paths: ["Media"],
      cwd: null,
    },
  ])
}
