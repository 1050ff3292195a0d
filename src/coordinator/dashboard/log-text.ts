import { collapseLine } from "../../shared/tail.ts"

/**
 * ffmpeg's stderr as a log to read. ffmpeg rewrites its status line in place with `\r`
 * (`frame=  10 ...\rframe=  20 ...\r`), which a log view would show as one endless line: each line keeps
 * only its last non-empty `\r` segment, as a terminal would show it.
 */

/** Bytes of stderr a log tail starts from. */
export const TAIL_BYTES = 64 * 1024

/** Longest unfinished line kept (a stream of bytes without newlines must not grow without bound). */
const MAX_PARTIAL = 16 * 1024

export interface LogText {
  /** Complete lines, each ending in `\n`. */
  lines: string
  /** The line still being written (ffmpeg's live status line), without its `\n`. */
  partial: string
}

export { collapseLine }

/**
 * Turns stderr chunks into display text incrementally. UTF-8 is decoded with replacement characters,
 * and a character split between two chunks is kept whole.
 */
export function createLogReader() {
  const decoder = new TextDecoder("utf-8")
  let carry = ""
  return {
    push(chunks: Uint8Array[]): LogText {
      for (const c of chunks) carry += decoder.decode(c, { stream: true })
      const cut = carry.lastIndexOf("\n")
      const done = carry.slice(0, cut + 1)
      carry = shrink(carry.slice(cut + 1))
      const lines = done ? done.slice(0, -1).split("\n").map(collapseLine).join("\n") + "\n" : ""
      return { lines, partial: collapseLine(carry) }
    },
  }
}

/**
 * An unfinished line reduced to what can still matter: its last non-empty `\r` segment (plus the `\r`
 * if it ends with one, so that the next text replaces it rather than extending it).
 */
function shrink(line: string): string {
  if (!line.includes("\r")) return line.length > MAX_PARTIAL ? line.slice(-MAX_PARTIAL) : line
  const last = collapseLine(line).slice(-MAX_PARTIAL)
  return line.endsWith("\r") ? last + "\r" : last
}

/**
 * The last `max` bytes of some chunks (oldest first). `cut` is true when older bytes were dropped: the
 * first line of the result is then incomplete.
 */
export function tailBytes(chunks: Uint8Array[], max = TAIL_BYTES): { chunks: Uint8Array[]; cut: boolean } {
  const out: Uint8Array[] = []
  let size = 0
  for (let i = chunks.length - 1; i >= 0; i--) {
    const c = chunks[i]
    if (size + c.length > max) {
      out.unshift(c.subarray(c.length - (max - size)))
      return { chunks: out, cut: true }
    }
    out.unshift(c)
    size += c.length
  }
  return { chunks: out, cut: false }
}

export type LogReader = ReturnType<typeof createLogReader>

/**
 * Starts reading a log from its last `max` bytes: the text so far, starting at a line boundary when
 * older bytes were cut, and the reader to push later chunks into.
 */
export function readTail(chunks: Uint8Array[], max = TAIL_BYTES): { reader: LogReader; text: LogText } {
  const tail = tailBytes(chunks, max)
  const reader = createLogReader()
  const text = reader.push(tail.chunks)
  if (!tail.cut) return { reader, text }
  const nl = text.lines.indexOf("\n")
  return { reader, text: { lines: nl === -1 ? "" : text.lines.slice(nl + 1), partial: text.partial } }
}

/** Display text of the last `max` bytes of a log. */
export const tailText = (chunks: Uint8Array[], max = TAIL_BYTES): LogText => readTail(chunks, max).text
