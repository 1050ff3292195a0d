import type { Profile } from "../shared/config/server-schema.ts"
import { parseArgv, toolOf } from "../shared/ffargs/argv.ts"

/**
 * Per-worker argument profiles (issue 12 item 8): rewrites of option values that differ on this host (an
 * encoder, a device path), applied after path mapping and before the argument policy, which checks the
 * rewritten argv. A rule changes only the text of an option's value, whole (`replace`) or its start
 * (`replace_prefix`): never an option name, an input or an output, so the command keeps its shape and
 * every argument keeps its role. Profiles apply in order, each to what the one before left.
 */

export interface Rewrite {
  /** argv position. */
  index: number
  option: string
  from: string
  to: string
}

/** The argv with every profile applied, and what changed. */
export function applyProfiles(
  binary: string,
  args: string[],
  profiles: readonly Profile[],
): { args: string[]; rewrites: Rewrite[] } {
  let out = args
  const rewrites: Rewrite[] = []
  for (const p of profiles) {
    if (p.binary && p.binary !== binary) continue
    const next = [...out]
    for (const t of parseArgv(toolOf(binary), out).tokens) {
      if (t.role !== "value" || !t.name) continue
      if (p.options && !p.options.includes(t.name)) continue
      const to = rewriteValue(t.text, p)
      if (to === undefined || to === t.text) continue
      next[t.index] = to
      rewrites.push({ index: t.index, option: t.name, from: t.text, to })
    }
    out = next
  }
  return { args: out, rewrites }
}

/** One value under one profile: an exact `replace` first, else the longest matching `replace_prefix`. */
function rewriteValue(value: string, p: Profile): string | undefined {
  const whole = p.replace && Object.hasOwn(p.replace, value) ? p.replace[value] : undefined
  if (whole !== undefined) return whole
  let best: string | undefined
  for (const prefix of Object.keys(p.replace_prefix ?? {}))
    if (value.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix
  return best === undefined ? undefined : p.replace_prefix![best] + value.slice(best.length)
}

/** The timeline's words for what a profile changed: `profile: h264_nvenc -> h264_qsv` (each change once). */
export function describeRewrites(rewrites: Rewrite[]): string | undefined {
  if (!rewrites.length) return undefined
  // A prefix rewrite shows the caller's rest of the value: never a control or bidi character in the timeline.
  const shown = (s: string) =>
    s.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, "?")
  const seen = [...new Set(rewrites.map((r) => `${shown(r.from)} -> ${shown(r.to)}`))]
  const text = `profile: ${seen.join(", ")}`
  return text.length <= 1024 ? text : `${text.slice(0, 1000)}... (${seen.length} rewrites)`
}
