/**
 * The caller's paths in the job's messages. The worker turns each of its roots in ffmpeg's stderr and
 * ffprobe's stdout into the root's path variable (`/srv/media/a.mkv` → `$Media/a.mkv`) and escapes every
 * literal `$` as `$$`; the caller turns the variables into its own roots and `$$` back into `$`. So the
 * coordinator stores and shows `$Media/...` only (it stays path-blind), each caller sees its own paths,
 * and every other byte comes out as the process wrote it. Both sides stream: a chunk boundary inside a
 * root or a token holds back only the bytes that could still be one. Dependency-free (the proxy imports it).
 */

const enc = new TextEncoder()
const DOLLAR = 0x24

/** How a writer prints a string value: the bytes a root becomes in its output. */
export type Escape = (s: string) => string

const plain: Escape = (s) => s

const JSON_NAMED: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
}

const json: Escape = (s) =>
  s.replace(/["\\\x00-\x1f]/g, (ch) => JSON_NAMED[ch] ?? `\\u00${ch.charCodeAt(0).toString(16).padStart(2, "0")}`)

/** ffprobe's xml writer (5.1) quotes attributes with `"` and leaves `'` as it is. */
const xml: Escape = (s) =>
  s.replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch]!)

const flat: Escape = (s) => s.replace(/[\n\r\\"`$]/g, (ch) => ({ "\n": "\\n", "\r": "\\r" })[ch] ?? `\\${ch}`)

const ini: Escape = (s) =>
  s.replace(/[\x00-\x1f\\#=:]/g, (ch) => {
    const named: Record<string, string> = { "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" }
    if (named[ch]) return named[ch]
    if (ch.charCodeAt(0) < 32) return `\\x00${ch.charCodeAt(0).toString(16).padStart(2, "0")}`
    return `\\${ch}`
  })

/** compact's `c` escaping: C escapes and a backslash before the item separator. */
const cEscape =
  (sep: string): Escape =>
  (s) =>
    [...s]
      .map(
        (ch) =>
          ({ "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\\": "\\\\" })[ch] ?? (ch === sep ? `\\${ch}` : ch),
      )
      .join("")

/** csv's escaping inside a field: `"` doubled (whether the field is quoted depends on the whole field). */
const csvEscape: Escape = (s) => s.replaceAll('"', '""')

/** The writer options after `name=` (`s=|:nk=1`), as ffprobe splits them: `k=v` pairs joined by `:`. */
function writerOptions(spec: string): Map<string, string> {
  const opts = new Map<string, string>()
  for (const pair of spec.split(":")) {
    const at = pair.indexOf("=")
    if (at > 0) opts.set(pair.slice(0, at), pair.slice(at + 1))
  }
  return opts
}

/** The escaping of ffprobe's output writer named by `-of`/`-print_format`/`-output_format` (the last one). */
export function ffprobeEscape(args: string[]): Escape {
  let spec = "default"
  for (let i = 0; i < args.length - 1; i++) {
    if (args[i] === "-of" || args[i] === "-print_format" || args[i] === "-output_format") spec = args[i + 1]!
  }
  const at = spec.indexOf("=")
  const name = at === -1 ? spec : spec.slice(0, at)
  const opts = writerOptions(at === -1 ? "" : spec.slice(at + 1))
  switch (name) {
    case "json":
      return json
    case "xml":
      return xml
    case "flat":
      return flat
    case "ini":
      return ini
    case "compact":
    case "csv": {
      const sep = (opts.get("item_sep") ?? opts.get("s") ?? (name === "csv" ? "," : "|")).slice(0, 1)
      const mode = opts.get("escape") ?? opts.get("e") ?? (name === "csv" ? "csv" : "c")
      if (mode === "csv") return csvEscape
      return mode === "c" ? cEscape(sep) : plain
    }
    default:
      return plain
  }
}

/**
 * Which of a job's streams carry paths and how they are escaped: stderr (log lines, printed as is) for
 * every binary, stdout only for ffprobe (its writer's escaping). ffmpeg's stdout is media: never touched.
 */
export function rewrittenStreams(binary: string, args: string[]): { stdout?: Escape; stderr: Escape } {
  return binary === "ffprobe" ? { stdout: ffprobeEscape(args), stderr: plain } : { stderr: plain }
}

/** Bytes before which a root may start: the start of a value (quote, separator, space, `file:`...). */
// `]` ends a tee slave's options: `Slave '[f=mpegts]/srv/media/a.ts'`.
const BEFORE = new Set([...`"'\`:=,;|([{<>]`].map((c) => c.charCodeAt(0)))
const isBefore = (b: number) => b < 0 || b <= 0x20 || BEFORE.has(b)
/** Bytes that may follow a whole root: `/` (a path inside it), the end of a value, or an escape. */
const isAfter = (b: number) => isBefore(b) || b === 0x2f || b === 0x5c || b === 0x26 || b === 0x7f

/** A streaming byte rewriter: `push` returns what can be written now, `end` the rest. */
export interface Rewriter {
  push(chunk: Uint8Array): Uint8Array
  end(): Uint8Array
}

/** What a scan writes, as parts: a chunk with nothing to rewrite passes as one part, without a copy. */
class Out {
  private parts: Uint8Array[] = []
  add(b: Uint8Array) {
    if (b.length) this.parts.push(b)
  }
  take(): Uint8Array {
    return this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts)
  }
}

/**
 * A Rewriter around `scan`, which writes what it can of `buf` into `out` and returns where the bytes it
 * cannot decide yet begin (`buf.length` when none): those are held and scanned again with the next chunk.
 */
function streaming(scan: (buf: Uint8Array, final: boolean, out: Out) => number): Rewriter {
  let held = new Uint8Array(0)
  const run = (chunk: Uint8Array, final: boolean) => {
    const buf = held.length ? Buffer.concat([held, chunk]) : chunk
    const out = new Out()
    held = buf.slice(scan(buf, final, out))
    return out.take()
  }
  return { push: (chunk) => run(chunk, false), end: () => run(new Uint8Array(0), true) }
}

/** Does `form` occur at `at`: "yes", "no", or "maybe" when the bytes end before it can be told. */
function matchAt(buf: Uint8Array, at: number, form: Uint8Array, final: boolean): "yes" | "no" | "maybe" {
  const n = Math.min(form.length, buf.length - at)
  for (let k = 0; k < n; k++) if (buf[at + k] !== form[k]) return "no"
  if (n < form.length) return final ? "no" : "maybe"
  const next = at + form.length
  if (next < buf.length) return isAfter(buf[next]!) ? "yes" : "no"
  return final ? "yes" : "maybe"
}

/**
 * The worker's side: each of its roots (as the stream's writer escapes it) → `$Name`, a literal `$` → `$$`.
 * A root matches only as a whole directory at the start of a value: `/srv/media` never inside
 * `/srv/media2` nor `/x/srv/media`; of roots nested in one another the longest wins. The root `/` is left
 * alone (it would match every absolute path of the worker's own system).
 */
export function createRootEncoder(roots: { name: string; forms: string[] }[], escape: Escape): Rewriter {
  const forms = roots
    .flatMap((r) =>
      [...new Set(r.forms)].filter((f) => f !== "/").map((f) => ({ form: enc.encode(escape(f)), name: r.name })),
    )
    .sort((a, b) => b.form.length - a.form.length)
    .map((f) => ({ form: f.form, token: enc.encode(`$${f.name}`) }))
  // What a byte may begin: 1 a `$` to escape, 2 a root (looked up per byte, so a table).
  const marks = new Uint8Array(256)
  for (const f of forms) marks[f.form[0]!] = 2
  marks[DOLLAR] = 1
  const dollars = new Uint8Array([DOLLAR, DOLLAR])
  let last = -1 // the byte before this buffer (-1: the start of the stream)
  return streaming((buf, final, out) => {
    const before = (i: number) => (i > 0 ? buf[i - 1]! : last)
    let from = 0
    for (let i = 0; i < buf.length; i++) {
      const mark = marks[buf[i]!]
      if (!mark) continue
      if (mark === 1) {
        out.add(buf.subarray(from, i))
        out.add(dollars)
        from = i + 1
        continue
      }
      if (!isBefore(before(i))) continue
      let hit: (typeof forms)[number] | undefined
      let wait = false
      for (const f of forms) {
        const m = matchAt(buf, i, f.form, final)
        if (m === "maybe") wait = true
        if (m === "yes" && !wait) hit = f
        if (m === "yes") break
      }
      if (wait) {
        out.add(buf.subarray(from, i))
        last = before(i)
        return i
      }
      if (hit) {
        out.add(buf.subarray(from, i))
        out.add(hit.token)
        i += hit.form.length - 1
        from = i + 1
      }
    }
    if (buf.length) last = buf[buf.length - 1]!
    out.add(buf.subarray(from))
    return buf.length
  })
}

const isNameByte = (b: number) =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f

/**
 * The caller's side: `$Name` → the caller's root for Name (escaped as the stream's writer would have),
 * `$$` → `$`. A `$Name` of a variable the caller does not know is left as it came.
 */
export function createRootDecoder(roots: Record<string, string>, escape: Escape): Rewriter {
  const tokens = new Map(Object.entries(roots).map(([name, root]) => [name, enc.encode(escape(root))]))
  return streaming((buf, final, out) => {
    let from = 0
    for (let i = buf.indexOf(DOLLAR); i !== -1; i = buf.indexOf(DOLLAR, from)) {
      out.add(buf.subarray(from, i))
      if (buf[i + 1] === DOLLAR) {
        out.add(buf.subarray(i, i + 1))
        from = i + 2
        continue
      }
      let end = i + 1
      while (end < buf.length && isNameByte(buf[end]!)) end++
      // A name has at most 64 characters: a longer run is no token.
      if (end === buf.length && !final && end - i <= 65) return i
      const name = new TextDecoder().decode(buf.subarray(i + 1, end))
      out.add(tokens.get(name) ?? buf.subarray(i, end))
      from = end
    }
    out.add(buf.subarray(from))
    return buf.length
  })
}
