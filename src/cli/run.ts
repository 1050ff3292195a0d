import { runCommand, type CommandDef } from "citty"
import { errorExit } from "../shared/error-exit.ts"
import { DffmpegError, UsageError } from "../shared/errors.ts"
import { ExitCode } from "../shared/exit-codes.ts"
import { VERSION } from "../shared/version.ts"
import { didYouMean } from "../shared/suggest.ts"
import { flagNames, knownFlag, passthroughHelp, unknownFlag } from "./command.ts"
import { helpWidth, renderHelp } from "./help.ts"
import { root } from "./root.ts"

// Re-exported for the proxy, which loads this entrypoint only to explain a broken config file.
export { explainYaml } from "../shared/config/yaml-explain.ts"

const resolve = async <T>(v: T | Promise<T> | (() => T | Promise<T>)): Promise<T> =>
  typeof v === "function" ? await (v as () => T | Promise<T>)() : await v

/** Where a command line leads in the command tree. */
interface Walk {
  cmd: CommandDef
  path: string[]
  /** Index of the first argument after the last command name. */
  end: number
  /** A word where a subcommand was expected that names none (`dffmpeg cordinator`). */
  unknown?: string
  /** A flag given to a command that does not take it (citty would drop it), before the last command name. */
  badFlag?: { flag: string; cmd: CommandDef }
}

/** Walks subcommands by name (skipping flags) to find the command a command line runs. */
async function commandFor(argv: string[]): Promise<Walk> {
  let cmd: CommandDef = root
  const path = ["dffmpeg"]
  let end = 0
  let skip = false
  let unknown: string | undefined
  let badFlag: Walk["badFlag"]
  const flags: { flag: string; cmd: CommandDef }[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--" || passthroughHelp(cmd)) break
    // The value of a string option (`--config FILE`) is not a subcommand name.
    if (skip) {
      skip = false
      continue
    }
    if (a.startsWith("-")) {
      skip = !a.includes("=") && (await takesValue(cmd, a))
      flags.push({ flag: a, cmd })
      continue
    }
    const subs = await resolve(cmd.subCommands ?? {})
    const next = subs[a]
    if (!next) {
      if (Object.keys(subs).length && !cmd.run) unknown = a
      break
    }
    cmd = await resolve(next)
    path.push(a)
    end = i + 1
    // Flags before this name belonged to the commands above it; a leaf checks its own when it runs.
    for (const f of flags.splice(0)) if (!badFlag && !(await knowsFlag(f.cmd, f.flag))) badFlag = f
  }
  return { cmd, path, end, unknown, badFlag }
}

async function knowsFlag(cmd: CommandDef, flag: string): Promise<boolean> {
  if (cmd === root && (flag === "--version" || flag === "-V")) return true
  return knownFlag(flagNames(await resolve(cmd.args ?? {})).all, flag)
}

/** True when `flag` is a string option of `cmd` (its value is the next argument). */
async function takesValue(cmd: CommandDef, flag: string): Promise<boolean> {
  return flagNames(await resolve(cmd.args ?? {})).values.has(flag.replace(/^--?/, ""))
}

const ANSI = /\x1b\[[0-9;]*m/g

/** The help of the command `argv` leads to, wrapped to the width of `stream`. */
async function usage(argv: string[], stream: NodeJS.WriteStream): Promise<string> {
  const { cmd, path } = await commandFor(argv)
  return renderHelp(cmd, path, helpWidth(stream))
}

/** The exit status a (sub)command asked for; see `exitWith`. */
const commandStatus: { code: number | undefined; remote: boolean } = { code: undefined, remote: false }

/** Ends a command with this exit status (the proxy-like commands: the remote process's code). */
export function exitWith(code: number): number {
  commandStatus.code = code
  commandStatus.remote = true
  return code
}

/** Ends one of dffmpeg's own commands with this status (`config check`: 3 for an invalid config). */
export function exitStatus(code: number): number {
  commandStatus.code = code
  return code
}

/** True when the command ended with `exitWith` (a remote process's code, proxy semantics). */
export const endedWithRemoteCode = (): boolean => commandStatus.remote

/**
 * The CLI edge: runs a command and maps every error to its lines and exit code through `errorExit` (README
 * lists them). The only place besides main.ts that decides the process exit status.
 */
export async function runCli(argv: string[]): Promise<number> {
  try {
    const walk = await commandFor(argv)
    const pass = passthroughHelp(walk.cmd)
    // Before --help: the help of the command above a mistyped one would hide the mistake.
    if (walk.unknown !== undefined) {
      const names = Object.keys(await resolve(walk.cmd.subCommands ?? {}))
      throw new UsageError(
        `unknown command "${walk.unknown}" for ${walk.path.join(" ")}${didYouMean(walk.unknown, names)}`,
      )
    }
    // A passthrough command's arguments are another program's: only its own options can ask for our help.
    const ours = pass
      ? argv.slice(0, walk.end)
      : argv.slice(0, argv.indexOf("--") === -1 ? undefined : argv.indexOf("--"))
    if (ours.includes("--help") || ours.includes("-h") || pass?.(argv.slice(walk.end))) {
      process.stdout.write((await usage(argv, process.stdout)) + "\n")
      return ExitCode.OK
    }
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
      process.stdout.write(`dffmpeg ${VERSION}\n`)
      return ExitCode.OK
    }
    if (walk.badFlag) {
      const { flag, cmd } = walk.badFlag
      throw unknownFlag(flag, flagNames(await resolve(cmd.args ?? {})).long)
    }
    // citty drops a subcommand's return value, so commands that end with a status report it here.
    commandStatus.code = undefined
    commandStatus.remote = false
    if (pass) {
      const rawArgs = argv.slice(walk.end)
      const result = await walk.cmd.run?.({ rawArgs, args: { _: rawArgs } as never, cmd: walk.cmd, data: undefined })
      return commandStatus.code ?? (typeof result === "number" ? result : ExitCode.OK)
    }
    const { result } = await runCommand(root, { rawArgs: argv })
    return commandStatus.code ?? (typeof result === "number" ? result : ExitCode.OK)
  } catch (err) {
    return report(err, argv)
  }
}

async function report(err: unknown, argv: string[]): Promise<number> {
  const e = err as Error | undefined
  if (!(err instanceof DffmpegError) && e?.name === "CLIError") {
    // citty's own usage errors: the usage of the command, then the line (no "run with --help": it is above).
    process.stderr.write((await usage(argv, process.stderr)) + "\n\n")
    const { code, line } = errorExit(new UsageError(e.message.replace(ANSI, "")), "command")
    process.stderr.write(`${line}\n`)
    return code
  }
  if (err instanceof DffmpegError && argv.includes("--json"))
    process.stdout.write(
      JSON.stringify({ error: { code: err.code, message: err.message, details: err.details } }) + "\n",
    )
  const { code, line, more } = errorExit(err, "command")
  process.stderr.write([line, ...more].map((l) => `${l}\n`).join(""))
  return code
}
