import { defineCommand, type ArgsDef, type CommandDef, type ParsedArgs, type SubCommandsDef } from "citty"
import { verb } from "../../command.ts"
import { withBackend, type AdminBackend, type ModeOptions } from "./_backend.ts"

/** `--config`/`--local` given before the noun (`dffmpeg admin --config c.yaml users ls`) apply to every verb. */
export const adminContext: ModeOptions = {}

/** Flags every admin verb accepts (also after the verb, where citty hands them to the leaf). */
export const modeArgs = {
  config: {
    type: "string",
    description: "an admin identity config (remote mode) or the coordinator's config (local mode)",
  },
  local: { type: "boolean", description: "work directly on the coordinator's database on this host (no key needed)" },
} as const

export const jsonArg = {
  json: { type: "boolean", description: 'print JSON (errors too: {"error":{code,message}})' },
} as const

/** Keeps mode flags given on `admin` or a noun for the verb that runs after it. */
export function remember(args: { config?: unknown; local?: unknown }): void {
  if (typeof args.config === "string") adminContext.config = args.config
  if (args.local === true) adminContext.local = true
}

/** The mode flags of a verb, falling back to those given before the noun. */
export function modeOf(args: { config?: string; local?: boolean }): ModeOptions {
  return { config: args.config ?? adminContext.config, local: args.local || adminContext.local }
}

/** Writes `data` as one JSON line, or the human rendering. */
export function print(json: boolean | undefined, data: unknown, human: () => string): void {
  process.stdout.write(json ? JSON.stringify(data) + "\n" : human())
}

/**
 * `admin` or one of its nouns (`users`, `jobs`...): its subcommands, and the mode flags accepted here too, so
 * that `admin jobs --config F <verb>` finds the verb and the verb uses them.
 */
export function noun(name: string, description: string, subCommands: SubCommandsDef): CommandDef<typeof modeArgs> {
  return defineCommand({
    meta: { name, description },
    args: modeArgs,
    setup: ({ args }) => remember(args),
    subCommands,
  })
}

/**
 * An admin verb that makes one backend call and prints its result: `text` (or `{json, text}` when the JSON
 * is not the result itself) goes out as words, or as one JSON line with --json. `input` checks the
 * arguments first, so a malformed one fails (exit 2) before a database or a coordinator is touched.
 * `args` must include --json and the mode flags.
 */
export function adminVerb<const T extends ArgsDef & typeof jsonArg & typeof modeArgs, I, R>(
  name: string,
  description: string,
  args: T,
  o: {
    input: (args: ParsedArgs<T>) => I
    call: (b: AdminBackend, input: I) => Promise<R>
    show: (result: R, input: I, local: boolean) => string | { json: unknown; text: string }
    /** The verb changes nothing: in local mode a missing database is an error, not created. */
    readOnly?: boolean
  },
) {
  return verb(name, description, args, async (parsed) => {
    const input = o.input(parsed)
    const flags = parsed as ParsedArgs<typeof jsonArg & typeof modeArgs>
    let local = false
    const result = await withBackend({ ...modeOf(flags), readOnly: o.readOnly }, (b) => {
      local = b.mode === "local"
      return o.call(b, input)
    })
    const shown = o.show(result, input, local)
    if (typeof shown === "string") print(flags.json, result, () => shown)
    else print(flags.json, shown.json, () => shown.text)
  })
}
