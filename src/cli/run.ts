import { renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty"
import { ConfigError, DffmpegError, UsageError } from "../shared/errors.ts"
import { ExitCode } from "../shared/exit-codes.ts"
import { escapeControls } from "../shared/text.ts"
import { VERSION } from "../shared/version.ts"
import { Env } from "../shared/config/env.ts"
import { root } from "./root.ts"

// Re-exported for the proxy, which loads this entrypoint only to explain a broken config file.
export { explainYaml } from "../shared/config/yaml-explain.ts"

const resolve = async <T>(v: T | Promise<T> | (() => T | Promise<T>)): Promise<T> =>
  typeof v === "function" ? await (v as () => T | Promise<T>)() : await v

/** Walks subcommands by name (skipping flags) to find the command `--help` is about. */
async function commandFor(argv: string[]): Promise<{ cmd: CommandDef; parent?: CommandDef; path: string[] }> {
  let cmd: CommandDef = root
  let parent: CommandDef | undefined
  const path = ["dffmpeg"]
  let skip = false
  for (const a of argv) {
    if (a === "--") break
    // The value of a string option (`--config FILE`) is not a subcommand name.
    if (skip) {
      skip = false
      continue
    }
    if (a.startsWith("-")) {
      skip = !a.includes("=") && (await takesValue(cmd, a))
      continue
    }
    const subs = await resolve(cmd.subCommands ?? {})
    const next = subs[a]
    if (!next) break
    parent = cmd
    cmd = await resolve(next)
    path.push(a)
  }
  return { cmd, parent, path }
}

/** True when `flag` is a string option of `cmd` (its value is the next argument). */
async function takesValue(cmd: CommandDef, flag: string): Promise<boolean> {
  const name = flag.replace(/^--?/, "")
  for (const [k, d] of Object.entries(await resolve(cmd.args ?? {}))) {
    const def = d as { type?: string; alias?: string | string[] }
    if (def.type !== "string") continue
    const aliases = Array.isArray(def.alias) ? def.alias : def.alias ? [def.alias] : []
    if (k === name || aliases.includes(name)) return true
  }
  return false
}

const ANSI = /\x1b\[[0-9;]*m/g

/** citty's usage text with the full command path, and without colours unless writing to a terminal. */
async function usage(argv: string[], tty: boolean): Promise<string> {
  const { cmd, parent, path } = await commandFor(argv)
  let text = await renderUsage(cmd, parent)
  const meta = await resolve(cmd.meta ?? {})
  const pmeta = parent ? await resolve(parent.meta ?? {}) : undefined
  const short = [pmeta?.name, meta.name].filter(Boolean).join(" ")
  if (path.length > 1 && short) text = text.split(short).join(path.join(" "))
  return tty && !Env.noColor() ? text : text.replace(ANSI, "")
}

/**
 * The CLI edge: runs a command and maps every error to one message and an exit code (README lists
 * them). The only place besides main.ts that decides the process exit status.
 */
/** The exit status a (sub)command asked for; see `exitWith`. */
const commandStatus: { code: number | undefined } = { code: undefined }

/** Ends a command with this exit status (the proxy-like commands: the remote process's code). */
export function exitWith(code: number): number {
  commandStatus.code = code
  return code
}

/** True when the command ended with `exitWith` (a remote process's code, proxy semantics). */
export const endedWithRemoteCode = (): boolean => commandStatus.code !== undefined

export async function runCli(argv: string[]): Promise<number> {
  const flags = argv.slice(0, argv.indexOf("--") === -1 ? undefined : argv.indexOf("--"))
  if (flags.includes("--help") || flags.includes("-h")) {
    process.stdout.write((await usage(argv, !!process.stdout.isTTY)) + "\n")
    return ExitCode.OK
  }
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
    process.stdout.write(`dffmpeg ${VERSION}\n`)
    return ExitCode.OK
  }
  try {
    // citty drops a subcommand's return value, so commands that end with a status report it here.
    commandStatus.code = undefined
    const { result } = await runCommand(root, { rawArgs: argv })
    return commandStatus.code ?? (typeof result === "number" ? result : ExitCode.OK)
  } catch (err) {
    return report(err, argv)
  }
}

async function report(err: unknown, argv: string[]): Promise<number> {
  const json = argv.includes("--json")
  if (err instanceof DffmpegError) {
    if (json)
      process.stdout.write(
        JSON.stringify({ error: { code: err.code, message: err.message, details: err.details } }) + "\n",
      )
    // Escaped: a message may quote what a coordinator, a worker or something on the path sent.
    process.stderr.write(`dffmpeg: ${escapeControls(err.message)}\n`)
    if (err instanceof ConfigError) for (const i of err.issues) process.stderr.write(`  ↳ ${escapeControls(i)}\n`)
    else if (Array.isArray(err.details))
      for (const d of err.details) process.stderr.write(`  ↳ ${escapeControls(String(d))}\n`)
    if (err instanceof UsageError) process.stderr.write(`run with --help for usage\n`)
    return err.exitCode
  }
  const e = err as Error & { code?: string }
  if (e?.name === "CLIError") {
    process.stderr.write((await usage(argv, !!process.stderr.isTTY)) + "\n\n")
    process.stderr.write(`dffmpeg: ${e.message.replace(ANSI, "")}\n`)
    return ExitCode.USAGE
  }
  process.stderr.write(`dffmpeg: unexpected error: ${e?.stack ?? String(err)}\n`)
  return ExitCode.FAILURE
}

/**
 * citty silently drops unknown flags; a typo must not be ignored. Call from a leaf command's run with
 * its arg definitions.
 */
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
