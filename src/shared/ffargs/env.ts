/**
 * The part of the caller's environment ffmpeg reads, and how it travels: an allow-list of names (exact,
 * or a prefix ending in `*`), and FFREPORT, whose `file=` is a path translated like an argument.
 * Dependency-free: the proxy's start-up path imports it.
 */

/** Names a client forwards and a worker accepts unless configured otherwise. */
export const DEFAULT_ENV: readonly string[] = [
  "FFREPORT",
  "AV_LOG_FORCE_COLOR",
  "AV_LOG_FORCE_NOCOLOR",
  "AV_LOG_FORCE_256COLOR",
  "TZ",
  "LANG",
  "LC_*",
]

/** A variable's name as it may travel: a letter or '_', then up to 127 letters, digits or '_'. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/
/** An allow-list entry: a name, or a name prefix followed by `*` (`LC_*`). */
export const ENV_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}\*?$/

/** At most this many variables travel with a job, each value at most ENV_VALUE_MAX characters. */
export const ENV_COUNT_MAX = 64
export const ENV_VALUE_MAX = 8192

/** True for the names an allow-list (`ENV_PATTERN` entries) lets through. */
export function envMatcher(patterns: readonly string[]): (name: string) => boolean {
  const exact = new Set(patterns.filter((p) => !p.endsWith("*")))
  const prefixes = patterns.filter((p) => p.endsWith("*")).map((p) => p.slice(0, -1))
  return (name) => ENV_NAME.test(name) && (exact.has(name) || prefixes.some((p) => name.startsWith(p)))
}

/** The variables of `env` an allow-list lets through, in name order (the rest is never read). */
export function pickEnv(env: Record<string, string | undefined>, patterns: readonly string[]): Record<string, string> {
  const allowed = envMatcher(patterns)
  const out: Record<string, string> = {}
  for (const name of Object.keys(env).sort()) {
    const value = env[name]
    if (value !== undefined && allowed(name)) out[name] = value
  }
  return out
}

/** One `key=value` pair of FFREPORT as ffmpeg reads it; `start`/`end` bound the value's raw text. */
export interface ReportPair {
  key: string
  value: string
  start: number
  end: number
}

const WHITESPACE = " \n\t\r"
const isKeyChar = (c: string) => /^[A-Za-z0-9_./-]$/.test(c)
const skipSpace = (s: string, i: number) => {
  while (i < s.length && WHITESPACE.includes(s[i]!)) i++
  return i
}

/**
 * The pairs ffmpeg's `init_report` reads from FFREPORT (libavutil `av_opt_get_key_value` with `=` and
 * `:`, values as `av_get_token` unquotes them: `\x` escapes, `'...'` quotes, outer blanks trimmed). It
 * stops at the first text that is not a pair, as ffmpeg does; what follows is never read.
 */
export function parseReport(env: string): ReportPair[] {
  const pairs: ReportPair[] = []
  let i = 0
  while (i < env.length) {
    const keyStart = skipSpace(env, i)
    let j = keyStart
    while (j < env.length && isKeyChar(env[j]!)) j++
    const key = env.slice(keyStart, j)
    j = skipSpace(env, j)
    if (env[j] !== "=") break
    const start = skipSpace(env, j + 1)
    let p = start
    let out = ""
    // Characters before `kept` were escaped or quoted: trailing blanks are trimmed only after it.
    let kept = 0
    while (p < env.length && env[p] !== ":") {
      const c = env[p++]!
      if (c === "\\" && p < env.length) {
        out += env[p++]
        kept = out.length
      } else if (c === "'") {
        while (p < env.length && env[p] !== "'") out += env[p++]
        if (p < env.length) {
          p++
          kept = out.length
        }
      } else out += c
    }
    let n = out.length
    while (n > kept && WHITESPACE.includes(out[n - 1]!)) n--
    pairs.push({ key, value: out.slice(0, n), start, end: p })
    i = p < env.length ? p + 1 : p
  }
  return pairs
}

/** A value written so that `av_get_token` reads it back exactly. */
const escapeToken = (value: string) => value.replace(/[\\': \n\t\r]/g, "\\$&")

/** The report files FFREPORT names: the value of each `file=`, or ffmpeg's default `%p-%t.log` (in the cwd). */
export function reportFiles(env: string): string[] {
  const files = parseReport(env)
    .filter((p) => p.key === "file")
    .map((p) => p.value)
  return files.length ? files : ["%p-%t.log"]
}

/**
 * FFREPORT with every `file=` value replaced by `map(value)`; the rest of the text (`level=`, anything
 * after what ffmpeg parses) is kept as it was.
 */
export function mapReport(env: string, map: (file: string) => string): string {
  let out = ""
  let at = 0
  for (const p of parseReport(env)) {
    if (p.key !== "file") continue
    const mapped = map(p.value)
    if (mapped === p.value) continue
    out += env.slice(at, p.start) + escapeToken(mapped)
    at = p.end
  }
  return out + env.slice(at)
}

/**
 * Why a report file template is refused, or undefined: ffmpeg drops a `%` followed by anything but
 * `p`, `t` or `%`, so `.%x.` would become `..` after every check on the path had passed.
 */
export function templateProblem(file: string): string | undefined {
  return /%(?![pt])/.test(file.replace(/%%/g, ""))
    ? "may only use %p, %t and %% (ffmpeg drops any other % sequence)"
    : undefined
}
