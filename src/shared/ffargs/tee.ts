/**
 * The tee muxer's output URL read as FFmpeg 5.1 reads it (libavformat/tee.c): slaves split by
 * `av_get_token(url, "|")` (so quotes and `\` escapes are removed once), then each slave's optional
 * `[key=value:...]` options (`ff_tee_parse_slave_options`: keys as `av_opt_get_key_value` reads them,
 * values up to an unescaped `:` or `]`) and the rest, the slave's own output URL. Pure.
 */

import { getToken } from "./filtergraph.ts"

export interface TeeSlave {
  /** The slave's raw span in the tee URL (its separator `|` excluded). */
  start: number
  end: number
  /** The slave once unescaped: its `[options]`, then its target. */
  text: string
  /** The options between `[` and `]` as tee reads them ("" without). */
  options: string
  /** The options as `key=value` pairs, values unescaped (av_opt_get_key_value); empty when they do not parse. */
  pairs: [string, string][]
  /** The slave's output URL; undefined when its options do not parse (FFmpeg then fails the output). */
  target?: string
  /** Where the target starts in `text`. */
  targetAt: number
}

const WS = " \n\t\r"
/** av_opt_get_key_value's key characters (is_key_char). */
const KEY_CHAR = /[0-9A-Za-z_\-/.]/

/**
 * Where the options of an unescaped slave end (after its `]`) and their pairs, or undefined when they do
 * not parse.
 */
function readOptions(slave: string): { end: number; pairs: [string, string][] } | undefined {
  const pairs: [string, string][] = []
  if (!slave.startsWith("[")) return { end: 0, pairs }
  let p = 1
  if (slave[p] === "]") return { end: p + 1, pairs }
  for (;;) {
    while (p < slave.length && WS.includes(slave[p])) p++
    const key = p
    while (p < slave.length && KEY_CHAR.test(slave[p])) p++
    const keyEnd = p
    while (p < slave.length && WS.includes(slave[p])) p++
    if (slave[p] !== "=") return undefined
    const value = getToken(slave, p + 1, ":]")
    pairs.push([slave.slice(key, keyEnd), value.token])
    p = value.end
    if (p >= slave.length) return undefined
    if (slave[p] === "]") return { end: p + 1, pairs }
    p++
  }
}

/** The slaves of a tee output URL. */
export function teeSlaves(url: string): TeeSlave[] {
  const slaves: TeeSlave[] = []
  let at = 0
  while (at < url.length) {
    const { token, end } = getToken(url, at, "|")
    const read = readOptions(token)
    const cut = read?.end
    slaves.push({
      start: at,
      end,
      text: token,
      options: cut ? token.slice(1, cut - 1) : "",
      pairs: read?.pairs ?? [],
      target: cut === undefined ? undefined : token.slice(cut),
      targetAt: cut ?? token.length,
    })
    at = end + 1
  }
  return slaves
}

/**
 * Where, in the raw `s` read by av_get_token from `from`, the unescaped output reaches `n` characters
 * outside any quote or escape; undefined when that point lies inside one.
 */
function rawOffset(s: string, from: number, end: number, n: number): number | undefined {
  let i = from
  while (i < end && WS.includes(s[i])) i++
  let count = 0
  while (i < end) {
    if (count === n) return i
    if (s[i] === "\\" && i + 1 < end) {
      count++
      i += 2
    } else if (s[i] === "'") {
      const close = s.indexOf("'", i + 1)
      const stop = close === -1 || close >= end ? end : close
      if (count + (stop - i - 1) > n) return undefined
      count += stop - i - 1
      i = stop + 1
    } else {
      count++
      i++
    }
  }
  return count === n ? Math.min(i, end) : undefined
}

/** A value escaped for av_get_token with `|`: `\` before `\ ' |` and before whitespace at either end. */
export function escapeTeeSlave(value: string): string {
  return value.replace(/[\\'|]/g, "\\$&").replace(/^[ \n\t\r]|[ \n\t\r]$/g, "\\$&")
}

/**
 * The tee URL with each slave's target passed through `map`; a slave whose target stays the same is left
 * byte for byte, a changed one keeps its options as written and gets its new target escaped for tee.
 */
export function rewriteTee(url: string, map: (target: string) => string): string {
  let out = ""
  let at = 0
  for (const s of teeSlaves(url)) {
    if (s.target === undefined) continue
    const target = map(s.target)
    if (target === s.target) continue
    const raw = rawOffset(url, s.start, s.end, s.targetAt)
    const head = raw === undefined ? escapeTeeSlave(s.text.slice(0, s.targetAt)) : url.slice(s.start, raw)
    out += url.slice(at, s.start) + head + escapeTeeSlave(target)
    at = s.end
  }
  return out + url.slice(at)
}
