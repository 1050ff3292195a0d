import type { ModeOptions } from "./_backend.ts"

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
