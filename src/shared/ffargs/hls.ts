/**
 * How FFmpeg reads an HLS tag's attribute list (libavformat `ff_parse_key_value`): a key runs to
 * `=`; a value is either `"..."` (a backslash takes the next character literally) or runs to the
 * next space or comma, unquoted. Pairs are separated by commas and spaces.
 */
export function parseAttributes(s: string): [string, string][] {
  const out: [string, string][] = []
  let i = 0
  for (;;) {
    while (i < s.length && (/\s/.test(s[i]) || s[i] === ",")) i++
    if (i >= s.length) break
    const eq = s.indexOf("=", i)
    if (eq === -1) break
    const key = s.slice(i, eq)
    i = eq + 1
    let value = ""
    if (s[i] === '"') {
      i++
      while (i < s.length && s[i] !== '"') {
        if (s[i] === "\\") {
          if (i + 1 >= s.length) break
          value += s[i + 1]
          i += 2
        } else value += s[i++]
      }
      if (s[i] === '"') i++
    } else {
      while (i < s.length && !(/\s/.test(s[i]) || s[i] === ",")) value += s[i++]
    }
    out.push([key, value])
  }
  return out
}

/** Lines as FFmpeg's line readers split them (`\n`, `\r`, `\r\n`; a NUL ends a line too). */
export const LINES = /\r\n|[\r\n\0]/

/** Every URL an HLS playlist names, with its line number: URI lines and `URI=` attributes of any tag. */
export function playlistEntries(text: string): { line: number; uri: string }[] {
  const out: { line: number; uri: string }[] = []
  text.split(LINES).forEach((raw, n) => {
    const line = raw.trim()
    if (!line) return
    if (!line.startsWith("#")) return out.push({ line: n + 1, uri: line })
    const colon = line.indexOf(":")
    if (colon === -1) return
    for (const [key, value] of parseAttributes(line.slice(colon + 1)))
      if (key.toUpperCase() === "URI") out.push({ line: n + 1, uri: value })
  })
  return out
}
