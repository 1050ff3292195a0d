import { defineCommand, type ArgsDef, type CommandDef, type ParsedArgs } from "citty"
import { UsageError } from "../shared/errors.ts"
import { didYouMean } from "../shared/suggest.ts"

/** How every dffmpeg command is defined on top of citty. */

/**
 * A leaf command: citty's `defineCommand`, except that its `run` first refuses any flag `args` does not
 * define (citty silently drops unknown flags, and a typo must not be ignored). Every command that runs
 * something is defined with it but `client submit`, which parses its own options.
 */
export function defineCommandStrict<const T extends ArgsDef = ArgsDef>(
  def: CommandDef<T> & { args?: T },
): CommandDef<T> {
  const { run } = def
  return defineCommand({
    ...def,
    async run(ctx) {
      rejectUnknownFlags(def.args ?? {}, ctx.rawArgs)
      return run?.(ctx)
    },
  })
}

/**
 * The flags `args` defines: every accepted spelling (with --help/-h), the long names to suggest, and the
 * spellings of those that take a value.
 */
export function flagNames(args: ArgsDef): { all: Set<string>; long: string[]; values: Set<string> } {
  const all = new Set<string>(["help", "h"])
  const long: string[] = ["help"]
  const values = new Set<string>()
  for (const [k, d] of Object.entries(args)) {
    if ((d as { type?: string }).type === "positional") continue
    const kebab = k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())
    all.add(k).add(kebab)
    long.push(kebab)
    const alias = (d as { alias?: string | string[] }).alias
    const names = [k, kebab, ...(Array.isArray(alias) ? alias : alias ? [alias] : [])]
    for (const a of names) all.add(a)
    if ((d as { type?: string }).type === "string") for (const a of names) values.add(a)
  }
  return { all, long, values }
}

/** True when `flag` (`--name`, `--name=v`, `--no-name`, `-n`) is one of `names`. */
export function knownFlag(names: Set<string>, flag: string): boolean {
  const name = flag.replace(/^--?/, "").split("=")[0]!
  return names.has(name) || (name.startsWith("no-") && names.has(name.slice(3)))
}

/** The usage error for a flag a command does not take, with the closest one it does. */
export function unknownFlag(flag: string, long: string[]): UsageError {
  const name = flag.replace(/^--?/, "").split("=")[0]!
  return new UsageError(
    `unknown option ${flag.split("=")[0]}${didYouMean(name.replace(/^no-/, ""), long, (f) => `--${f}`)}`,
  )
}

/**
 * Throws a UsageError for the first flag of `rawArgs` (before `--`) that `args` does not define, or for a
 * flag that takes a value given last without one (citty would read it as "" and go on without it).
 */
export function rejectUnknownFlags(args: ArgsDef, rawArgs: string[]): void {
  const { all, long, values } = flagNames(args)
  for (const [i, a] of rawArgs.entries()) {
    if (a === "--") break
    if (!a.startsWith("-") || a === "-" || /^-\d/.test(a)) continue
    if (!knownFlag(all, a)) throw unknownFlag(a, long)
    const next = rawArgs[i + 1]
    if (!a.includes("=") && values.has(a.replace(/^--?/, "")) && (next === undefined || next === "--"))
      throw new UsageError(`${a} needs a value`)
  }
}

/** A leaf command in one call: its name (also its meta.name), what it does, its flags and its body. */
export function verb<const T extends ArgsDef>(
  name: string,
  description: string,
  args: T,
  run: (args: ParsedArgs<T>) => unknown,
): CommandDef<T> {
  return defineCommandStrict({ meta: { name, description }, args, run: ({ args }) => run(args) })
}

/** A subcommand whose module is imported only when it runs, so the others' dependencies stay cold. */
export const lazy =
  <T extends ArgsDef>(load: () => Promise<{ default: CommandDef<T> }>) =>
  () =>
    load().then((m) => m.default)

/**
 * Commands that take another program's command line after a few options of their own (`client submit`):
 * citty never parses their arguments (its parser turns `-show_entries` into `_ = true` and crashes, reads
 * `-h` as its help, and splits `-c:v`). `run.ts` hands them everything after their name, untouched; `help`
 * says whether those arguments ask for dffmpeg's own help (only among the command's own options).
 */
const passthrough = new WeakMap<CommandDef, (rest: string[]) => boolean>()

export function passthroughCommand<T extends ArgsDef>(def: CommandDef<T>, help: (rest: string[]) => boolean) {
  passthrough.set(def as CommandDef, help)
  return def
}

export const passthroughHelp = (cmd: CommandDef) => passthrough.get(cmd)
