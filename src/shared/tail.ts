/**
 * The last `n` lines of a byte stream as a terminal would have shown them: ffmpeg redraws its status
 * line with `\r`, so only the text after the last `\r` of a line is kept, and a trailing partial line
 * (no newline yet) counts as a line. Decoding is lossy (invalid UTF-8 becomes U+FFFD): this is for
 * people, `jobs logs` gives the exact bytes.
 */
export function tailLines(chunks: Uint8Array[], n: number): string[] {
  if (n <= 0) return []
  const dec = new TextDecoder()
  let text = ""
  for (const c of chunks) text += dec.decode(c, { stream: true })
  text += dec.decode()
  const lines = text.split("\n")
  if (lines.at(-1) === "") lines.pop()
  return lines.slice(-n).map(collapseLine)
}

/** What a terminal shows for one line written with `\r` redraws (a trailing `\r` redraws nothing). */
export function collapseLine(line: string): string {
  const parts = line.split("\r")
  for (let i = parts.length - 1; i >= 0; i--) if (parts[i] !== "") return parts[i]
  return ""
}

/**
 * How many stored chunks to read to find the last `lines` lines: ffmpeg writes about a line per
 * chunk, more with `\r` status redraws, so read a generous margin (bounded).
 */
export function tailChunks(lines: number): number {
  return Math.min(lines * 4 + 64, 4000)
}

/** Lines of a tail, and whether the first one is only the end of a line (the bytes before it were cut). */
export interface Tail {
  lines: string[]
  truncated: boolean
}

/**
 * The last `n` lines of `chunks` (see tailLines) when older bytes may have been cut off (`cut`): one
 * more line than asked is looked for, and when it is there the lines asked for are whole anyway.
 */
export function tailOf(chunks: Uint8Array[], n: number, cut: boolean): Tail {
  const lines = tailLines(chunks, n + 1)
  const truncated = cut && lines.length <= n
  if (lines.length > n) lines.shift()
  return { lines, truncated }
}

/** Default byte cap of a log tail (the coordinator's `limits.max_log_tail_bytes`). */
export const DEFAULT_TAIL_BYTES = 1024 * 1024
