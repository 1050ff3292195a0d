/**
 * The path-variable grammar, the one definition every role uses: a client writes its paths as `$Name` or
 * `$Name/rest`, the coordinator checks that each one is declared, a worker maps it to its own directory.
 * An argument may carry the reference after a `file:` prefix; `$$` at the start escapes a literal `$`.
 * Dependency-free (the proxy's start-up path imports it).
 */

/** A path variable's name: a letter or '_', then up to 63 letters, digits or '_'. */
export const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/

/** `$Name` or `$Name/rest` (the rest may hold any character, newlines too). */
const VAR_REF = new RegExp(`^\\$(${VAR_NAME.source.slice(1, -1)})(/.*)?$`, "s")

/** The URL-like prefix an argument may have before its path (`file:$Movies/a.mkv`). */
export const FILE_PREFIX = "file:"

/** An argument split into its optional `file:` prefix and the path-like value after it. */
export function splitPrefix(arg: string): { prefix: string; value: string } {
  if (arg.startsWith(FILE_PREFIX)) return { prefix: FILE_PREFIX, value: arg.slice(FILE_PREFIX.length) }
  return { prefix: "", value: arg }
}

/** True when `value` is meant as a path variable: a leading `$` that is not the `$$` escape of a literal `$`. */
export const isVarRef = (value: string): boolean => value.startsWith("$") && !value.startsWith("$$")

/** A value with a literal leading `$`, escaped (`$$`) so that nobody reads it as a path variable. */
export const escapeDollar = (value: string): string => (value.startsWith("$") ? `$${value}` : value)

/** The literal a `$$` escape stands for (`$$5` → `$5`). */
export const unescapeDollar = (value: string): string => (value.startsWith("$$") ? value.slice(1) : value)

/** The name and rest of a well-formed `$Name[/rest]`; undefined for anything else (a malformed name too). */
export function parseVarRef(value: string): { name: string; rest: string } | undefined {
  const m = VAR_REF.exec(value)
  return m ? { name: m[1]!, rest: m[2] ?? "" } : undefined
}

/**
 * The variable an argument (or a cwd) refers to, after an optional `file:`: its name, or for a malformed
 * reference the text between `$` and the first `/` (which no declared name can match); undefined when the
 * argument refers to none.
 */
export function varOf(arg: string): string | undefined {
  const { value } = splitPrefix(arg)
  if (!isVarRef(value)) return undefined
  return parseVarRef(value)?.name ?? value.slice(1, value.indexOf("/") === -1 ? undefined : value.indexOf("/"))
}
