/**
 * Parses a libavfilter graph description the way `avfilter_graph_parse2` does (FFmpeg 5.1): chains
 * split by `;`, filters by `,`, `[label]`s around them, `name[@id][=args]`; the arguments are one
 * `av_get_token` (quotes `'...'` and `\` escapes removed once), then split into `key=value` or
 * positional values by `:` with a second round of unescaping. Pure.
 */

export interface FilterOption {
  /** Undefined for a positional value (the filter's next option in declaration order). */
  key?: string
  value: string
}

export interface FilterSpec {
  name: string
  options: FilterOption[]
}

/** A filter and where its raw argument string (after `=`) sits in the graph, to replace it in place. */
export interface PlacedFilter extends FilterSpec {
  args?: { start: number; end: number }
}

const WS = " \n\t\r"

/** av_get_token: reads up to an unquoted, unescaped char of `term`; returns the token and the end. */
export function getToken(s: string, from: number, term: string): { token: string; end: number } {
  let i = from
  while (i < s.length && WS.includes(s[i])) i++
  let out = ""
  // Length of `out` that must be kept (quoted or escaped text is never trimmed).
  let keep = 0
  while (i < s.length && !term.includes(s[i])) {
    const c = s[i]
    if (c === "\\" && i + 1 < s.length) {
      out += s[i + 1]
      keep = out.length
      i += 2
    } else if (c === "'") {
      const close = s.indexOf("'", i + 1)
      const end = close === -1 ? s.length : close
      out += s.slice(i + 1, end)
      keep = out.length
      i = end + 1
    } else {
      out += c
      if (!WS.includes(c)) keep = out.length
      i++
    }
  }
  return { token: out.slice(0, Math.max(keep, out.trimEnd().length)), end: i }
}

/** Key characters of av_opt_get_key_value. */
const KEY = /^[0-9A-Za-z_\-./+]+/

/** Splits one filter's (already unescaped) argument string into options. */
export function parseFilterArgs(args: string): FilterOption[] {
  const opts: FilterOption[] = []
  let i = 0
  while (i <= args.length) {
    const key = KEY.exec(args.slice(i))
    let k: string | undefined
    let at = i
    if (key && args[i + key[0].length] === "=") {
      k = key[0]
      at = i + key[0].length + 1
    }
    const { token, end } = getToken(args, at, ":")
    opts.push(k === undefined ? { value: token } : { key: k, value: token })
    if (end >= args.length) break
    i = end + 1
  }
  return opts.filter((o) => o.key !== undefined || o.value !== "")
}

/** Parses a whole graph; tolerant (a malformed graph still yields the filters ffmpeg would try). */
export function parseFiltergraph(graph: string): FilterSpec[] {
  return placeFilters(graph).map(({ name, options }) => ({ name, options }))
}

/** parseFiltergraph with each filter's argument span. */
export function placeFilters(graph: string): PlacedFilter[] {
  const filters: PlacedFilter[] = []
  let i = 0
  while (i < graph.length) {
    // Link labels and separators between filters.
    while (i < graph.length && (WS.includes(graph[i]) || graph[i] === ";" || graph[i] === ",")) i++
    while (graph[i] === "[") {
      const close = graph.indexOf("]", i)
      i = close === -1 ? graph.length : close + 1
      while (i < graph.length && WS.includes(graph[i])) i++
    }
    if (i >= graph.length) break
    const nameEnd = /^[^=[\],;\s]*/.exec(graph.slice(i))![0]
    const name = nameEnd.replace(/@.*$/, "")
    i += nameEnd.length
    let options: FilterOption[] = []
    let args: PlacedFilter["args"]
    if (graph[i] === "=") {
      const { token, end } = getToken(graph, i + 1, "[],;")
      options = parseFilterArgs(token)
      args = { start: i + 1, end }
      i = end
    }
    // A nameless filter is an error for ffmpeg, but its options are still returned to be checked.
    if (name || options.length) filters.push(args ? { name, options, args } : { name, options })
    if (!nameEnd && !options.length && graph[i] !== "[") i++
  }
  return filters
}
