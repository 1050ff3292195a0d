/**
 * "Did you mean" for a mistyped name (a command, a flag, a config key). Dependency-free: the proxy's
 * config loader uses it too.
 */

/** Edit distance with adjacent transpositions (optimal string alignment): `hots` is one step from `host`. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1)
      d[i]![j] = best
    }
  return d[a.length]![b.length]!
}

/**
 * The candidate closest to `input`, if one is close enough to be what was meant: at most one edit for
 * short names, two from five characters on, or `input` being the start of exactly one candidate
 * (three characters at least). Case is ignored.
 */
export function closest(input: string, candidates: Iterable<string>): string | undefined {
  const typed = input.toLowerCase()
  if (!typed) return undefined
  const list = [...new Set(candidates)].filter((c) => c.toLowerCase() !== typed)
  const limit = typed.length >= 5 ? 2 : 1
  let best: { name: string; d: number } | undefined
  for (const name of list) {
    const d = editDistance(typed, name.toLowerCase())
    if (d <= limit && (!best || d < best.d)) best = { name, d }
  }
  if (best) return best.name
  const prefixed = typed.length >= 3 ? list.filter((c) => c.toLowerCase().startsWith(typed)) : []
  return prefixed.length === 1 ? prefixed[0] : undefined
}

/** `; did you mean "x"?` or nothing; `show` writes the suggestion (a flag as it is typed: --json). */
export function didYouMean(input: string, candidates: Iterable<string>, show = (s: string) => `"${s}"`): string {
  const hit = closest(input, candidates)
  return hit === undefined ? "" : `; did you mean ${show(hit)}?`
}
