/**
 * Escaping of untrusted text for logs and terminals. Dependency-free, so the proxy can use it without
 * loading the logger (its start-up path stays lean).
 */

/**
 * Characters that must never reach a log line or a terminal raw, whoever supplied the string (a worker's id or
 * version, a client's reason or path, an error message): C0 controls (NUL, ESC, CR, LF...), DEL, C1
 * controls, the line and paragraph separators and the bidirectional overrides and isolates (which
 * would let a string reorder what a terminal shows, or forge a second line).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
export const HAS_UNSAFE = new RegExp(UNSAFE.source)
/** The same set less what JSON.stringify already escapes (C0). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" }

const hex = (c: string, width: number) => c.charCodeAt(0).toString(16).padStart(width, "0")

/** `s` with every unsafe character written visibly: `\n`, `\r`, `\t`, `\x1b`, `\u202e`. */
export function escapeControls(s: string): string {
  return s.replace(UNSAFE, (c) => NAMED[c] ?? (c.charCodeAt(0) < 0x100 ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`))
}

/** JSON text in which the unsafe characters JSON.stringify leaves raw are written as `\u` escapes (still valid JSON, same value). */
export const safeJson = (v: unknown): string =>
  (JSON.stringify(v) ?? "undefined").replace(UNSAFE_IN_JSON, (c) => `\\u${hex(c, 4)}`)
