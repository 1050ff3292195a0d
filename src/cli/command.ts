import { defineCommand, type ArgsDef, type CommandDef, type ParsedArgs } from "citty"
import { UsageError } from "../shared/errors.ts"

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

/** Throws a UsageError for the first flag of `rawArgs` (before `--`) that `args` does not define. */
export function rejectUnknownFlags(args: ArgsDef, rawArgs: string[]): void {
  const known = new Set<string>(["help", "h"])
  for (const [k, d] of Object.entries(args)) {
    known.add(k)
    known.add(k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()))
    const alias = (d as { alias?: string | string[] }).alias
    for (const a of Array.isArray(alias) ? alias : alias ? [alias] : []) known.add(a)
  }
  for (const a of rawArgs) {
    if (a === "--") break
    if (!a.startsWith("-") || a === "-" || /^-\d/.test(a)) continue
    const name = a.replace(/^--?/, "").split("=")[0]
    const bare = name.startsWith("no-") ? name.slice(3) : name
    if (!known.has(name) && !known.has(bare)) throw new UsageError(`unknown option ${a}`)
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
