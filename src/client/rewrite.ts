import type { Rewrite } from "../shared/config/schema.ts"
import { optionName, parseArgv, type Token, type Tool } from "../shared/ffargs/argv.ts"

/**
 * The argument rewrites of a local fallback run (`fallback.rewrite`, docs/fallback.md), applied in order,
 * each to the result of the one before, on the argument model of shared/ffargs/argv.ts:
 *
 * - `replace: {h264_nvenc: libx264}`: every option value that is exactly a key becomes its value. Option
 *   names, inputs and outputs are never replaced (an output file called `h264_nvenc` stays).
 * - `drop: [-hwaccel, cuda]`: every run of exactly these consecutive arguments that starts at an option and
 *   ends where an option's value ends is removed. A run that would split an option from its value does not
 *   match (`drop: [-hwaccel]` removes nothing: use `drop_option`), so no value is left to be read as a file.
 * - `drop_option: [-hwaccel, -hwaccel_output_format]`: each of these options is removed with its value,
 *   whatever the value. `-c` matches every `-c:…`; `-c:v` only `-c:v`.
 */
export function rewriteArgs(tool: Tool, args: readonly string[], rules: readonly Rewrite[]): string[] {
  let out = [...args]
  for (const rule of rules) {
    if ("replace" in rule) out = replaceValues(tool, out, rule.replace)
    else if ("drop" in rule) out = dropRuns(tool, out, rule.drop)
    else out = dropOptions(tool, out, rule.drop_option)
  }
  return out
}

/** An argument an option consumed: its value, or the file of `-i` (ffprobe's `-o`). */
const consumed = (t: Token | undefined) => t !== undefined && t.role !== "option" && t.name !== undefined

function replaceValues(tool: Tool, args: string[], table: Record<string, string>): string[] {
  const out = [...args]
  for (const t of parseArgv(tool, args).tokens)
    if (t.role === "value" && Object.hasOwn(table, t.text)) out[t.index] = table[t.text]!
  return out
}

function dropRuns(tool: Tool, args: string[], run: readonly string[]): string[] {
  const tokens = parseArgv(tool, args).tokens
  const drop = new Set<number>()
  for (const t of tokens) {
    const i = t.index
    if (t.role !== "option" || drop.has(i) || i + run.length > args.length) continue
    if (!run.every((a, k) => args[i + k] === a)) continue
    // The argument after the run must not be a value of an option inside it.
    if (consumed(tokens[i + run.length])) continue
    for (let k = 0; k < run.length; k++) drop.add(i + k)
  }
  return args.filter((_, i) => !drop.has(i))
}

function dropOptions(tool: Tool, args: string[], options: readonly string[]): string[] {
  const wanted = options.map(optionName)
  const tokens = parseArgv(tool, args).tokens
  const drop = new Set<number>()
  for (const t of tokens) {
    if (t.role !== "option") continue
    if (!wanted.some((w) => w.name === t.name && (w.spec === undefined || w.spec === t.spec))) continue
    drop.add(t.index)
    if (consumed(tokens[t.index + 1])) drop.add(t.index + 1)
  }
  return args.filter((_, i) => !drop.has(i))
}
