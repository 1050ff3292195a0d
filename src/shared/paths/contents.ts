/**
 * Paths inside the files a job names: `-f concat` lists (and inputs that start `ffconcat version`) and
 * `-filter_script`/`-filter_complex_script` graphs. Only the client knows the caller's roots, so it sends
 * each such file rewritten to `$Var` form with the job; the coordinator checks what it carries, the worker
 * writes a copy with its own paths. Pure text → text; the I/O is the client's and the worker's.
 * Dependency-free (the proxy's start-up path imports it).
 */

import { InvalidError } from "../errors.ts"
import { fileOption, formatName, parseArgv, type Tool } from "../ffargs/argv.ts"
import { getToken } from "../ffargs/filtergraph.ts"
import { rewriteGraphPaths } from "../ffargs/graph-paths.ts"
import { KNOWN_PROTOCOLS, parseUrl } from "../ffargs/url.ts"
import { varOf } from "./vars.ts"

/** Limits on what a job carries: bytes of one file, files per job, bytes of all of them. */
export const FILE_BYTES_MAX = 1 << 20
export const FILES_MAX = 16
export const FILES_BYTES_MAX = 4 << 20

/** fftools options whose value is a filtergraph read from a file (any stream specifier). */
export const SCRIPT_OPTIONS = new Set(["filter_script", "filter_complex_script"])

/** The head a concat list may start with instead of being named by `-f concat` (the demuxer probes it). */
export const CONCAT_HEAD = "ffconcat version"

export type ContentKind = "concat" | "graph"

/** A file of argv whose content names paths: its argv position, kind and the option text for messages. */
export interface ContentArg {
  index: number
  kind: ContentKind
  /** `-i` or the script option as written (`-filter_script:v`). */
  option: string
}

/** Does this text start like an ffconcat list (after a UTF-8 byte order mark and white space)? */
export const isConcatHead = (head: string) =>
  head
    .replace(/^\uFEFF/, "")
    .trimStart()
    .startsWith(CONCAT_HEAD)

/**
 * The argv positions of files whose content holds paths: script option values, `-f concat` inputs, and
 * inputs without `-f` whose head (`head(index)`, when given) is an ffconcat list.
 */
export function contentArgs(tool: Tool, args: string[], head?: (index: number) => string | undefined): ContentArg[] {
  const parsed = parseArgv(tool, args)
  const out: ContentArg[] = []
  for (const t of parsed.tokens)
    if (t.role === "value" && SCRIPT_OPTIONS.has(t.name!))
      out.push({ index: t.index, kind: "graph", option: args[t.index - 1]! })
  for (const f of parsed.files) {
    if (f.kind !== "input") continue
    const format = formatName(fileOption(f, "f"))
    const probed = format === undefined && head !== undefined && isConcatHead(head(f.index) ?? "")
    if (format === "concat" || probed) out.push({ index: f.index, kind: "concat", option: "-i" })
  }
  return out.sort((a, b) => a.index - b.index)
}

/** ff_read_line's line ends (`\r\n`, `\r`, `\n`), kept so the rewritten list keeps its own. */
const LINE = /[^\r\n]*(\r\n|\r|\n|$)/g
const SPACE = " \t\r\n"

/**
 * Each `file` directive of a concat list with its value (unquoted as av_get_token reads it) passed
 * through `map` (with the 1-based line); a value `map` changes is written back single-quoted, and every
 * other byte (comments, `duration`, `inpoint`, `option`, `stream`, line ends, a byte order mark) stays.
 * A first line `<BOM>file x` counts as a `file` line: ffmpeg refuses its keyword, but the worker's policy
 * (which reads past the mark) checks it, so it must hold the worker's path as every other entry does.
 */
export function mapConcatList(text: string, map: (value: string, line: number) => string): string {
  let out = ""
  let line = 0
  for (const m of text.matchAll(LINE)) {
    if (m[0] === "" && m.index === text.length) break
    line++
    const raw = m[0]
    const value = fileValue(raw, line === 1)
    if (!value) {
      out += raw
      continue
    }
    const mapped = map(value.token, line)
    out += mapped === value.token ? raw : raw.slice(0, value.start) + quoteToken(mapped) + raw.slice(value.end)
  }
  return out
}

/** The `file` directive's value of one line and its span, as concatdec's get_keyword and av_get_token read it. */
function fileValue(line: string, first: boolean): { token: string; start: number; end: number } | undefined {
  let i = first && line.startsWith("\uFEFF") ? 1 : 0
  while (i < line.length && SPACE.includes(line[i]!)) i++
  const word = i
  while (i < line.length && !SPACE.includes(line[i]!)) i++
  if (line.slice(word, i) !== "file") return undefined
  while (i < line.length && SPACE.includes(line[i]!)) i++
  const { token, end } = getToken(line, i, SPACE)
  return token ? { token, start: i, end } : undefined
}

/** The `file` values of a concat list with their lines. */
export function concatEntries(text: string): { value: string; line: number }[] {
  const out: { value: string; line: number }[] = []
  mapConcatList(text, (value, line) => {
    out.push({ value, line })
    return value
  })
  return out
}

/** A value as av_get_token reads it back: single-quoted, each `'` as `'\''`. */
export const quoteToken = (value: string) => `'${value.replaceAll("'", "'\\''")}'`

/**
 * What ffmpeg's concat demuxer opens for an entry: a URL of a known protocol as it is, `file:X` as X
 * (relative to ffmpeg's working directory), anything else relative to the list's folder.
 */
export function entryTarget(
  value: string,
): { url: string } | { path: string; prefix: "file:" | ""; fromList: boolean } {
  const { protocol } = parseUrl(value)
  const m = /^([A-Za-z0-9+.-]+)[:,]/.exec(value)
  if (m && protocol !== "file" && KNOWN_PROTOCOLS.has(m[1]!.toLowerCase().split("+")[0]!)) return { url: value }
  if (value.startsWith("file:")) return { path: value.slice(5), prefix: "file:", fromList: false }
  return { path: value, prefix: "", fromList: true }
}

/**
 * concatdec's safe_filename: what `-safe 1` (the default) accepts, relative names of letters, digits,
 * `_`, `-` and `.` (not at the start of a component) separated by `/`.
 */
export function safeFilename(f: string): boolean {
  let start = 0
  for (let i = 0; i < f.length; i++) {
    const c = f[i]!
    if (/[A-Za-z0-9_-]/.test(c)) continue
    if (i === start) return false
    if (c === "/") start = i + 1
    else if (c !== ".") return false
  }
  return true
}

/** Is an input's `-safe` value off (AV_OPT_TYPE_BOOL's spellings of false)? */
export const safeOff = (value: string | undefined) =>
  value !== undefined && /^(0+|false|no|n|off|disable)$/i.test(value.trim())

/** The `$Var` references inside one file's content (concat entries, graph file options). */
export function contentRefs(kind: ContentKind, content: string): string[] {
  const refs: string[] = []
  if (kind === "concat") {
    for (const e of concatEntries(content)) {
      const target = entryTarget(e.value)
      if ("path" in target) refs.push(target.path)
    }
  } else
    rewriteGraphPaths(content, (file) => {
      refs.push(file)
      return file
    })
  return refs
}

/**
 * Checks a submission's `files` against its argv (the coordinator, and the worker again): at most
 * FILES_MAX, each at most FILE_BYTES_MAX and all FILES_BYTES_MAX bytes of UTF-8 without a NUL, each at a distinct argv
 * position that names such a file, every `$Var` inside declared in `paths`. Returns each file's kind.
 */
export function checkJobFiles(
  tool: Tool,
  args: string[],
  paths: readonly string[],
  files: readonly { arg: number; content: string }[],
): Map<number, ContentKind> {
  if (files.length > FILES_MAX) throw new InvalidError(`files: more than ${FILES_MAX} files`)
  const byArg = new Map<number, string>()
  let total = 0
  files.forEach((f, k) => {
    if (!Number.isInteger(f.arg) || f.arg < 0 || f.arg >= args.length)
      throw new InvalidError(`files[${k}].arg ${f.arg} is not an argument's position (0 to ${args.length - 1})`)
    if (byArg.has(f.arg)) throw new InvalidError(`files[${k}].arg ${f.arg} is given twice`)
    // ffmpeg reads a script (and a list's line) only up to a NUL, not what the checks read after it.
    if (f.content.includes("\0"))
      throw new InvalidError(`files[${k}] holds a NUL byte; ffmpeg would stop reading there`)
    const bytes = Buffer.byteLength(f.content, "utf8")
    if (bytes > FILE_BYTES_MAX)
      throw new InvalidError(`files[${k}] has ${bytes} bytes; at most ${FILE_BYTES_MAX} are accepted`)
    total += bytes
    byArg.set(f.arg, f.content)
  })
  if (total > FILES_BYTES_MAX)
    throw new InvalidError(`files have ${total} bytes together; at most ${FILES_BYTES_MAX} are accepted`)
  const kinds = new Map(contentArgs(tool, args, (i) => byArg.get(i)?.slice(0, 64)).map((c) => [c.index, c.kind]))
  const out = new Map<number, ContentKind>()
  files.forEach((f, k) => {
    const kind = kinds.get(f.arg)
    if (!kind)
      throw new InvalidError(
        `files[${k}].arg ${f.arg} is not a -f concat input or a -filter_script/-filter_complex_script value`,
      )
    for (const ref of contentRefs(kind, f.content)) {
      const name = varOf(ref)
      if (name !== undefined && !paths.includes(name))
        throw new InvalidError(`files[${k}] uses $${name.slice(0, 64)}, which is not listed in paths`)
    }
    out.set(f.arg, kind)
  })
  return out
}
