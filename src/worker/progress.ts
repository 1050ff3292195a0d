import type { ProgressReport } from "../shared/protocol/schemas.ts"

/**
 * How far an ffmpeg job is, read from copies of the bytes it writes.
 *
 * Sources, all of them text records ended by `\r` or `\n`:
 * - stderr input headers: `  Duration: 00:01:23.45, start: …` of `Input #0` (the expected length);
 * - stderr status lines: `frame=  250 fps= 50 … time=00:00:10.00 bitrate=… speed=2.01x`;
 * - `-progress` blocks (`key=value` lines ended by `progress=continue|end`) when `-progress` sends
 *   them to stdout or stderr, or to the worker's own pipe (`private`: the `-progress pipe:4` the worker
 *   adds, worker/progress-source.ts). They are then the only source of position: the status lines say
 *   the same with less precision, and mixing two streams would make the result depend on their timing.
 *
 * The input's length is `Input #0`'s `Duration:` header when ffmpeg prints one, else the worker's own
 * probe of that input (`probed`), which a loglevel below `info` makes necessary.
 *
 * The expected length is the input's duration trimmed by the command's `-ss`/`-sseof`/`-t`/`-to`:
 * - input side (before the first `-i`): `-ss` (or `-sseof`, which ffmpeg prefers) skips the start,
 *   then `-t` caps the length, else `-to` caps it at `to − ss`;
 * - output side (after the last `-i`): `-ss` skips the start, then `-t` caps, else `-to` caps at
 *   `to − output ss` (checked against ffmpeg 5.1: `-i a -ss 1 -to 3` writes 2 s);
 * - options between two `-i` belong to later inputs and are ignored, as are values ffmpeg would
 *   reject; with several outputs the last value of each option wins (single-output is the norm);
 * - an unknown input length (`Duration: N/A`, e.g. lavfi) still gets a length from `-t`/`-to`, since
 *   the output cannot be longer. `-copyts` is not modelled.
 */
export interface ProgressTracker {
  /** Feeds a copy of a chunk the process wrote (any chunking, any bytes; never throws). */
  feed(stream: Stream, chunk: Uint8Array): void
  /** The first input's length in ms from the worker's own probe (null: unknown); the header wins when ffmpeg prints one. */
  probed(durationMs: number | null): void
  /** The latest progress if it changed since the last call, else undefined. */
  take(): ProgressReport | undefined
}

/** Longest record kept while waiting for its end. Longer ones are dropped whole: no ffmpeg line we read comes close. */
const MAX_RECORD = 8192
/** Upper bounds of the wire schema (`ProgressReport`). */
const MAX_MS = 1e13
const MAX_SPEED = 1e6
const MAX_FPS = 1e7

const CR = 13
const LF = 10

/** The process's output streams, and `private`: the worker's own `-progress` pipe. */
export type Stream = "stdout" | "stderr" | "private"
type Target = Stream

/** One reading of the process's position; null where ffmpeg printed `N/A` or nothing. */
interface Sample {
  timeMs: number | null
  frame: number | null
  fps: number | null
  speed: number | null
  /** `progress=end`: ffmpeg finished writing. */
  end: boolean
}

interface Trim {
  ss?: number
  sseof?: number
  t?: number
  to?: number
}

interface Plan {
  input: Trim
  output: Trim
  /** Where `-progress` blocks go, when it is a stream we see. */
  progress: Target | undefined
}

/**
 * `binary` is the remote binary name ("ffmpeg", "ffprobe", ...); `args` the argv as the caller's command
 * runs (after the binary, without the worker's own `-progress`). With `own`, the worker added its own
 * `-progress` pipe: its blocks (fed as `private`) are the position. Returns undefined when progress
 * cannot apply (e.g. ffprobe).
 */
export function createProgressTracker(
  binary: string,
  args: string[],
  now: () => number = Date.now,
  own = false,
): ProgressTracker | undefined {
  if (!isFfmpeg(binary)) return undefined
  const plan = readPlan(args)
  // The worker adds its own only when the caller gave none (ffmpeg keeps only one -progress).
  if (own && !plan.progress) plan.progress = "private"
  let probedMs: number | null = null
  const header = createHeaderReader()
  const block = createBlockReader()
  let state: Sample | undefined
  let origin: { at: number; timeMs: number } | undefined
  let last: ProgressReport | undefined

  const accept = (s: Sample) => {
    const at = now()
    const timeMs = s.timeMs ?? state?.timeMs ?? 0
    origin ??= { at, timeMs }
    state = { ...s, timeMs, speed: s.speed ?? estimateSpeed(origin, at, timeMs) }
  }
  const onStderr = (record: string) => {
    header.read(record)
    const s = plan.progress === "stderr" ? block.read(record) : plan.progress ? undefined : parseStatusLine(record)
    if (s) accept(s)
  }
  const onBlock = (record: string) => {
    const s = block.read(record)
    if (s) accept(s)
  }
  const splitters = {
    stderr: createRecordSplitter(onStderr),
    // A stdout that does not carry -progress carries media: never read it.
    stdout: plan.progress === "stdout" ? createRecordSplitter(onBlock) : undefined,
    private: plan.progress === "private" ? createRecordSplitter(onBlock) : undefined,
  }

  return {
    feed(stream, chunk) {
      splitters[stream]?.(chunk)
    },
    probed(ms) {
      probedMs = ms === null || !Number.isFinite(ms) || ms < 0 ? null : ms
    },
    take() {
      if (!state) return undefined
      const report = toReport(state, expectedDurationMs(header.durationMs() ?? probedMs, plan))
      if (last && sameReport(last, report)) return undefined
      last = report
      return report
    },
  }
}

/** ffmpeg under any install name (`ffmpeg`, `/usr/lib/jellyfin-ffmpeg/ffmpeg`, `ffmpeg.exe`); not ffprobe/ffplay. */
export function isFfmpeg(binary: string): boolean {
  const name = binary.split(/[\\/]/).pop() ?? ""
  return name.toLowerCase().includes("ffmpeg")
}

/**
 * Calls `onRecord` with each complete record (text between `\r`/`\n` breaks). Breaks are ASCII, so a
 * record always holds whole UTF-8 sequences, whatever the chunking. The unfinished tail is kept in a
 * fixed buffer; a record that outgrows it is dropped up to its break, so memory stays bounded and the
 * outcome does not depend on where the chunks were cut.
 */
function createRecordSplitter(onRecord: (record: string) => void): (chunk: Uint8Array) => void {
  const decoder = new TextDecoder()
  const carry = new Uint8Array(MAX_RECORD)
  let kept = 0
  // The current record already outgrew the carry: skip the rest of it up to its break.
  let overflow = false

  const end = (piece: Uint8Array) => {
    if (overflow) {
      overflow = false
      return
    }
    const size = kept + piece.length
    if (size > MAX_RECORD || size === 0) {
      kept = 0
      return
    }
    carry.set(piece, kept)
    kept = 0
    onRecord(decoder.decode(carry.subarray(0, size)))
  }
  const keep = (rest: Uint8Array) => {
    if (overflow || !rest.length) return
    if (kept + rest.length > MAX_RECORD) {
      kept = 0
      overflow = true
      return
    }
    carry.set(rest, kept)
    kept += rest.length
  }

  return (chunk) => {
    let start = 0
    // Both positions are cached: searching anew for a break that never comes would be quadratic.
    let cr = chunk.indexOf(CR)
    let lf = chunk.indexOf(LF)
    while (cr >= 0 || lf >= 0) {
      const at = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf)
      end(chunk.subarray(start, at))
      start = at + 1
      if (cr >= 0 && cr < start) cr = chunk.indexOf(CR, start)
      if (lf >= 0 && lf < start) lf = chunk.indexOf(LF, start)
    }
    keep(chunk.subarray(start))
  }
}

/**
 * Reads the duration of `Input #0` from ffmpeg's input headers; later inputs and outputs are ignored.
 * `durationMs()` is undefined until the header was read, null when it said `N/A`.
 */
function createHeaderReader() {
  let section = -1
  let done = false
  let duration: number | null | undefined
  return {
    read(record: string) {
      if (done) return
      const input = /^Input #(\d+),/.exec(record)
      if (input) {
        section = Number(input[1])
        return
      }
      if (record.startsWith("Output #")) {
        done = true
        return
      }
      if (section !== 0) return
      const m = /^\s+Duration: ([^,\s]+)/.exec(record)
      if (!m) return
      // `N/A` (a live or generated input) leaves it unknown.
      const ms = parseDuration(m[1])
      duration = ms === undefined || ms < 0 ? null : ms
      done = true
    },
    durationMs: () => duration,
  }
}

/**
 * Parses ffmpeg's status line. It starts with `frame=` (video) or `size=`/`Lsize=` (audio only, last
 * line), possibly after `[level]` prefixes, and always has `time=`; anything else on stderr is a log line.
 */
function parseStatusLine(record: string): Sample | undefined {
  if (!/^\s*(?:\[[^\]]*\]\s*)*(?:frame|L?size)=/.test(record)) return undefined
  const fields = new Map<string, string>()
  for (const m of record.matchAll(/(\w+)=\s*(\S+)/g)) if (!fields.has(m[1])) fields.set(m[1], m[2])
  const time = fields.get("time")
  if (time === undefined) return undefined
  return {
    timeMs: clockMs(time),
    frame: count(fields.get("frame")),
    fps: amount(fields.get("fps")),
    speed: speedOf(fields.get("speed")),
    end: false,
  }
}

/** Collects `-progress` `key=value` lines; a block ends at `progress=continue|end`. */
function createBlockReader() {
  let fields = new Map<string, string>()
  return {
    read(record: string): Sample | undefined {
      const m = /^([a-z0-9_]+)=([^=]*)$/.exec(record)
      if (!m) return undefined
      const [, key, value] = m
      if (key !== "progress") {
        fields.set(key, value.trim())
        return undefined
      }
      const f = fields
      fields = new Map()
      return {
        timeMs: blockTimeMs(f),
        frame: count(f.get("frame")),
        fps: amount(f.get("fps")),
        speed: speedOf(f.get("speed")),
        end: value.trim() === "end",
      }
    },
  }
}

/** `out_time_us` first; ffmpeg (up to 7.x at least) also writes microseconds to `out_time_ms`. */
function blockTimeMs(f: Map<string, string>): number | null {
  for (const key of ["out_time_us", "out_time_ms"]) {
    const us = f.get(key)
    const n = us === undefined || !/^-?\d+$/.test(us) ? NaN : Number(us)
    if (Number.isFinite(n)) return Math.max(0, n / 1000)
  }
  const clock = f.get("out_time")
  return clock === undefined ? null : clockMs(clock)
}

/** A position printed by ffmpeg (`00:00:10.00`, `-00:00:00.02`, `N/A`): negative clamps to 0. */
function clockMs(text: string): number | null {
  const ms = parseDuration(text)
  return ms === undefined ? null : Math.max(0, ms)
}

/** A non-negative integer count (`frame=`), or null. */
function count(text: string | undefined): number | null {
  if (text === undefined || !/^\d+$/.test(text)) return null
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : null
}

/** A non-negative finite decimal, or null (`N/A`, garbage). */
function amount(text: string | undefined): number | null {
  if (text === undefined || !/^\d+(?:\.\d*)?(?:e[+-]?\d+)?$/i.test(text)) return null
  const n = Number(text)
  return Number.isFinite(n) ? n : null
}

/** `speed=2.01x`, `speed= 120x`, `speed=1.52e+03x`, `speed=N/A`. */
function speedOf(text: string | undefined): number | null {
  return text?.endsWith("x") ? amount(text.slice(0, -1)) : null
}

const CLOCK = /^(-)?(?:(\d+):)?([0-5]?\d):([0-5]?\d)(?:\.(\d*))?$/
const SECONDS = /^(-)?(\d+)(?:\.(\d*))?(s|ms|us)?$/
const UNIT_MS = { s: 1000, ms: 1, us: 0.001 } as const

/**
 * ffmpeg's duration syntax, in ms: `[-][HH:]MM:SS[.m…]` (MM and SS below 60, as av_parse_time
 * requires) or `[-]S+[.m…][s|ms|us]`. Undefined for anything else (`N/A`, or too many digits to be finite).
 */
function parseDuration(text: string): number | undefined {
  const ms = durationSyntax(text)
  return ms !== undefined && Number.isFinite(ms) ? ms : undefined
}

function durationSyntax(text: string): number | undefined {
  const clock = CLOCK.exec(text)
  if (clock) {
    const [, minus, h, m, s, frac] = clock
    const ms = (Number(h ?? 0) * 3600 + Number(m) * 60 + Number(s) + fraction(frac)) * 1000
    return minus ? -ms : ms
  }
  const plain = SECONDS.exec(text)
  if (!plain) return undefined
  const [, minus, whole, frac, unit] = plain
  const ms = (Number(whole) + fraction(frac)) * UNIT_MS[(unit ?? "s") as keyof typeof UNIT_MS]
  return minus ? -ms : ms
}

function fraction(digits: string | undefined): number {
  return digits ? Number(`0.${digits}`) : 0
}

/** Reads the trims and the `-progress` target from the argv (see the note on ProgressTracker). */
function readPlan(args: string[]): Plan {
  const first = args.indexOf("-i")
  const lastInput = args.lastIndexOf("-i")
  // Without -i (e.g. -filter_complex sources) every trim applies to the output.
  const input = first < 0 ? {} : readTrim(args.slice(0, first))
  const output = readTrim(lastInput < 0 ? args : args.slice(lastInput + 2))
  let progress: Target | undefined
  for (let i = 0; i < args.length - 1; i++) if (args[i] === "-progress") progress = progressTarget(args[++i])
  return { input, output, progress }
}

function readTrim(opts: string[]): Trim {
  const trim: Trim = {}
  for (let i = 0; i < opts.length - 1; i++) {
    const key = opts[i]
    if (key !== "-ss" && key !== "-sseof" && key !== "-t" && key !== "-to") continue
    const ms = parseDuration(opts[++i])
    if (ms === undefined) continue
    // -sseof counts back from the end (negative); the others are positions or lengths (non-negative).
    if (key === "-sseof" ? ms <= 0 : ms >= 0) trim[key.slice(1) as keyof Trim] = ms
  }
  return trim
}

/** `-progress` to a stream we read: `pipe:1`, `pipe:`, `-`, `/dev/stdout` → stdout; `pipe:2`, `/dev/stderr` → stderr. */
function progressTarget(url: string): Target | undefined {
  if (url === "-" || url === "pipe:" || url === "pipe:1" || url === "/dev/stdout") return "stdout"
  if (url === "pipe:2" || url === "/dev/stderr") return "stderr"
  return undefined
}

/** The input's length trimmed as ffmpeg will (see the note on ProgressTracker); null when unknown. */
function expectedDurationMs(inputMs: number | null, plan: Plan): number | null {
  const { input, output } = plan
  let d = inputMs ?? Infinity
  // ffmpeg uses -sseof over -ss when it knows the input length, and ignores it otherwise.
  const skip = input.sseof !== undefined && inputMs !== null ? Math.max(0, inputMs + input.sseof) : (input.ss ?? 0)
  d = capped(Math.max(0, d - skip), input, skip)
  d = capped(Math.max(0, d - (output.ss ?? 0)), output, output.ss ?? 0)
  return Number.isFinite(d) ? d : null
}

/** `-t` caps the length; otherwise `-to` stops at a position counted from the file's start. */
function capped(d: number, trim: Trim, skip: number): number {
  if (trim.t !== undefined) return Math.min(d, trim.t)
  if (trim.to !== undefined) return Math.min(d, Math.max(0, trim.to - skip))
  return d
}

/** Speed from the wall clock (position gained / time elapsed since the first sample) when ffmpeg prints `speed=N/A`. */
function estimateSpeed(origin: { at: number; timeMs: number }, at: number, timeMs: number): number | null {
  const elapsed = at - origin.at
  const gained = timeMs - origin.timeMs
  return elapsed > 0 && gained >= 0 ? gained / elapsed : null
}

function toReport(s: Sample, durationMs: number | null): ProgressReport {
  const timeMs = Math.min(MAX_MS, Math.round(s.timeMs ?? 0))
  const duration = durationMs === null ? null : Math.min(MAX_MS, Math.round(durationMs))
  const speed = s.speed === null ? null : Math.min(MAX_SPEED, round(s.speed, 2))
  return {
    timeMs,
    durationMs: duration,
    percent: percentOf(timeMs, duration, s.end),
    speed,
    fps: s.fps === null ? null : Math.min(MAX_FPS, round(s.fps, 2)),
    frame: s.frame,
    etaMs: etaOf(timeMs, duration, s.speed, s.end),
  }
}

function percentOf(timeMs: number, durationMs: number | null, end: boolean): number | null {
  if (durationMs === null) return null
  if (end) return 100
  if (durationMs <= 0) return null
  return Math.min(100, Math.max(0, round((timeMs / durationMs) * 100, 1)))
}

function etaOf(timeMs: number, durationMs: number | null, speed: number | null, end: boolean): number | null {
  if (end) return 0
  if (durationMs === null || speed === null || speed <= 0) return null
  return Math.min(MAX_MS, Math.round(Math.max(0, durationMs - timeMs) / speed))
}

function round(n: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

function sameReport(a: ProgressReport, b: ProgressReport): boolean {
  return (Object.keys(a) as (keyof ProgressReport)[]).every((k) => a[k] === b[k])
}
