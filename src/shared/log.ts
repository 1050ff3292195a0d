import { createConsola, type ConsolaInstance, type LogObject } from "consola/core"
import { HAS_UNSAFE, escapeControls, safeJson } from "./text.ts"

/**
 * One logger, always on stderr (stdout carries data only: ffmpeg output in proxy mode, --json results).
 * Lines look like `2026-11-27T10:00:00.000Z INFO  [coordinator:api] job submitted job=01J… worker=w1`.
 * Extras are passed as one object and printed as key=value; never pass secrets (keys, signatures).
 */
export type Level = "debug" | "info" | "warn" | "error"
/** `log_format`: `text` lines (the default) or one JSON object per line (`{time, level, tag, msg, fields}`). */
export type LogFormat = "text" | "json"
const LEVELS: Record<Level, number> = { error: 0, warn: 1, info: 3, debug: 4 }

export type Logger = ConsolaInstance

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
  if (json) {
    // Stable keys on every line (docs/operations.md, "Logs"): the extras under `fields`, errors as their message.
    const fields: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(extras)) if (v !== undefined) fields[k] = v instanceof Error ? v.message : v
    return safeJson({ time, level: o.type, tag: o.tag || null, msg: words.join(" "), fields })
  }
  const kv = Object.entries(extras)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${escapeControls(k)}=${fmtValue(v)}`)
    .join(" ")
  const level = o.type.toUpperCase().padEnd(5)
  return `${time} ${level} ${o.tag ? `[${escapeControls(o.tag)}] ` : ""}${escapeControls(words.join(" "))}${kv ? " " + kv : ""}`
}

export function createLogger(opts: { level?: Level; json?: boolean; format?: LogFormat } = {}): Logger {
  const json = !!opts.json || opts.format === "json"
  return createConsola({
    level: LEVELS[opts.level ?? "info"],
    reporters: [{ log: (o) => void process.stderr.write(formatLine(o, json) + "\n") }],
  })
}
