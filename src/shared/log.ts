import { createConsola, type ConsolaInstance, type LogObject } from "consola/core"

/**
 * One logger, always on stderr (stdout carries data only: ffmpeg output in proxy mode, --json results).
 * Lines look like `2026-11-27T10:00:00.000Z INFO  [coordinator:api] job submitted job=01J… worker=w1`.
 * Extras are passed as one object and printed as key=value; never pass secrets (keys, signatures).
 */
export type Level = "debug" | "info" | "warn" | "error"
const LEVELS: Record<Level, number> = { error: 0, warn: 1, info: 3, debug: 4 }

export type Logger = ConsolaInstance

/**
 * Characters that must never reach a log line raw, whoever supplied the string (a worker's id or
 * version, a client's reason or path, an error message): C0 controls (NUL, ESC, CR, LF...), DEL, C1
 * controls, the line and paragraph separators and the bidirectional overrides and isolates (which
 * would let a string reorder what a terminal shows, or forge a second line).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
const HAS_UNSAFE = new RegExp(UNSAFE.source)
/** The same set less what JSON.stringify already escapes (C0). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" }

const hex = (c: string, width: number) => c.charCodeAt(0).toString(16).padStart(width, "0")

/** `s` with every unsafe character written visibly: `\n`, `\r`, `\t`, `\x1b`, `\u202e`. */
export function escapeControls(s: string): string {
  return s.replace(UNSAFE, (c) => NAMED[c] ?? (c.charCodeAt(0) < 0x100 ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`))
}

/** JSON text with the unsafe characters JSON.stringify leaves raw escaped as `\uXXXX` (still valid JSON, same value). */
const safeJson = (v: unknown): string => (JSON.stringify(v) ?? "undefined").replace(UNSAFE_IN_JSON, (c) => `\\u${hex(c, 4)}`)

function fmtValue(v: unknown): string {
  if (typeof v === "string") return /[\s"=]/.test(v) || HAS_UNSAFE.test(v) ? safeJson(v) : v
  if (v instanceof Error) return safeJson(v.message)
  return safeJson(v)
}

/**
 * One log line (no newline): text, or one JSON object. Whatever the strings hold, the line is one line
 * of printable text (see UNSAFE); an Error's stack keeps its frames, joined by a visible `\n`.
 */
export function formatLine(o: Pick<LogObject, "args" | "date" | "type" | "tag">, json: boolean): string {
  const extras: Record<string, unknown> = {}
  const words: string[] = []
  for (const a of o.args) {
    if (a && typeof a === "object" && !(a instanceof Error) && !Array.isArray(a)) Object.assign(extras, a)
    else if (a instanceof Error) words.push(a.stack ?? a.message)
    else words.push(String(a))
  }
  const time = o.date.toISOString()
  if (json) return safeJson({ time, level: o.type, tag: o.tag || undefined, msg: words.join(" "), ...extras })
  const kv = Object.entries(extras)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${escapeControls(k)}=${fmtValue(v)}`)
    .join(" ")
  const level = o.type.toUpperCase().padEnd(5)
  return `${time} ${level} ${o.tag ? `[${escapeControls(o.tag)}] ` : ""}${escapeControls(words.join(" "))}${kv ? " " + kv : ""}`
}

export function createLogger(opts: { level?: Level; json?: boolean } = {}): Logger {
  const json = !!opts.json
  return createConsola({
    level: LEVELS[opts.level ?? "info"],
    reporters: [{ log: (o) => void process.stderr.write(formatLine(o, json) + "\n") }],
  })
}
