/** One sample of a Prometheus text exposition. */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/**
 * A strict reader of the Prometheus text format (0.0.4) for tests: every line must be a comment or a
 * well-formed sample, so a formatting mistake fails the test instead of being skipped.
 */
export function parseProm(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split("\n")) {
    if (!line) continue
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ")
      types.set(name, type)
      continue
    }
    if (line.startsWith("#")) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/.exec(line)
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y
      let pos = 0
      while (pos < m[3].length) {
        re.lastIndex = pos
        const l = re.exec(m[3])
        if (!l) throw new Error(`bad labels in ${JSON.stringify(line)}`)
        labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\")
        pos = re.lastIndex
      }
    }
    samples.push({ name: m[1], labels, value: m[4] === "+Inf" ? Infinity : m[4] === "-Inf" ? -Infinity : Number(m[4]) })
  }
  return { samples, types }
}

/** The value of the one sample named `name` whose labels include `labels` (sum when several match). */
export function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  return hits.length ? hits.reduce((a, s) => a + s.value, 0) : undefined
}
