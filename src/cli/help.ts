import type { ArgsDef, CommandDef } from "citty"
import { Env } from "../shared/config/env.ts"
import { passthroughHelp } from "./command.ts"

/**
 * `--help`: a command's usage from citty's definition (description, arguments, options, subcommands),
 * wrapped to the terminal's width, with examples for the main commands.
 */

/** Examples by command path; the main commands each have some. */
export const EXAMPLES: Record<string, string[]> = {
  dffmpeg: [
    "dffmpeg coordinator --config /etc/dffmpeg/coordinator.yaml",
    "dffmpeg worker --config /etc/dffmpeg/worker.yaml",
    "dffmpeg client submit -b ffprobe -v error -show_entries format=duration -of csv=p=0 movie.mkv",
    "dffmpeg admin users add worker1 --role worker --key-file /etc/dffmpeg/keys/worker1.key",
    "dffmpeg config check",
    "ln -s $(command -v dffmpeg) /usr/local/lib/dffmpeg/ffmpeg   # the drop-in proxy",
  ],
  "dffmpeg coordinator": [
    "dffmpeg coordinator --config /etc/dffmpeg/coordinator.yaml",
    "dffmpeg coordinator --host 0.0.0.0 --port 8000 --log-level debug",
    "dffmpeg coordinator --port 0   # any free port; the 'listening on' line says which",
  ],
  "dffmpeg worker": [
    "dffmpeg worker --config /etc/dffmpeg/worker.yaml",
    "DFFMPEG_WORKER_CONFIG=./worker.yaml dffmpeg worker --log-level debug",
  ],
  "dffmpeg client": [
    "dffmpeg client submit -i in.mkv -c:v libx264 out.mp4",
    "dffmpeg client status -w",
    "dffmpeg client jobs --status failed --since 1d",
    "dffmpeg client workers",
  ],
  "dffmpeg client submit": [
    "dffmpeg client submit -i /media/in.mkv -c:v libx264 -c:a copy /media/out.mkv",
    "dffmpeg client submit -b ffprobe -hide_banner -show_format -show_streams /media/in.mkv",
    "dffmpeg client submit -b ffprobe -h   # ffprobe's own help, from a worker",
    "dffmpeg client submit --detach --retries 2 --json -- -i /media/in.mkv /media/out.mp4",
  ],
  "dffmpeg admin": [
    "dffmpeg admin --config /etc/dffmpeg/coordinator.yaml users add ops --role admin",
    "dffmpeg admin users ls",
    "dffmpeg admin jobs ls --status failed --since 1d",
    "dffmpeg admin jobs logs 01M8F6Z136C1FEKTY0Y8CC52YS -f",
    "dffmpeg admin workers drain worker1",
    "dffmpeg admin db status",
  ],
  "dffmpeg config": ["dffmpeg config check", "dffmpeg config check --role client --json"],
  "dffmpeg config check": [
    "dffmpeg config check",
    "dffmpeg config check --role worker",
    "dffmpeg config check /etc/dffmpeg/client.yaml --json",
  ],
  "dffmpeg completion": [
    "source <(dffmpeg completion bash)",
    "dffmpeg completion zsh > ~/.zfunc/_dffmpeg",
    "dffmpeg completion fish > ~/.config/fish/completions/dffmpeg.fish",
  ],
}

/** The width help is wrapped to: COLUMNS, else the terminal's, else 80; at least 40. */
export function helpWidth(stream: { isTTY?: boolean; columns?: number } = process.stdout): number {
  const env = Number(Env.columns())
  const width = Number.isInteger(env) && env > 0 ? env : stream.isTTY && stream.columns ? stream.columns : 80
  return Math.max(40, Math.min(width, 500))
}

/** `text` in lines of at most `width` characters (a word longer than that stays whole), each after `indent`. */
export function wrap(text: string, width: number, indent = 0, first = indent): string[] {
  const lines: string[] = []
  let line = ""
  let lead = first
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && lead + line.length + 1 + word.length > width) {
      lines.push(" ".repeat(lead) + line)
      line = word
      lead = indent
    } else line = line ? `${line} ${word}` : word
  }
  if (line || !lines.length) lines.push(" ".repeat(lead) + line)
  return lines
}

/** Two columns, the second wrapped under itself: `  --config <file>   the config...`. */
function columns(rows: [string, string][], width: number): string[] {
  const left = Math.min(Math.max(...rows.map(([l]) => l.length)), Math.floor(width / 3))
  const at = 2 + left + 3
  return rows.flatMap(([l, r]) => {
    const body = wrap(r, Math.max(20, width - at)).map((line) => " ".repeat(at) + line)
    if (l.length > left) return [`  ${l}`, ...body]
    const [head = "", ...rest] = body
    return [`  ${l.padEnd(left)}   ${head.trimStart()}`.trimEnd(), ...rest]
  })
}

const resolve = async <T>(v: T | Promise<T> | (() => T | Promise<T>)): Promise<T> =>
  typeof v === "function" ? await (v as () => T | Promise<T>)() : await v

interface Def {
  type?: string
  alias?: string | string[]
  description?: string
  required?: boolean
}

/** The help of `cmd`, reached by `path` (`["dffmpeg", "admin", "users"]`), `width` columns wide. */
export async function renderHelp(cmd: CommandDef, path: string[], width: number): Promise<string> {
  const meta = await resolve(cmd.meta ?? {})
  const args = Object.entries((await resolve(cmd.args ?? {})) as ArgsDef) as [string, Def][]
  const subs = Object.entries(await resolve(cmd.subCommands ?? {}))
  const name = path.join(" ")
  const out: string[] = []
  out.push(...wrap(meta.description ?? "", width), "")
  const positionals = args.filter(([, d]) => d.type === "positional")
  const flags = args.filter(([, d]) => d.type !== "positional")
  const usage = [
    name,
    ...(flags.length ? ["[OPTIONS]"] : []),
    ...positionals.map(([n, d]) => (d.required === false ? `[${n.toUpperCase()}]` : `<${n.toUpperCase()}>`)),
    ...(subs.length ? [`<${subs.map(([n]) => n).join("|")}>`] : []),
  ]
  // A passthrough command's own options end where the other program's command line starts.
  if (passthroughHelp(cmd)) usage.push("[--] ARGS...")
  out.push("Usage:", ...wrap(usage.join(" "), width, 4, 2), "")
  if (positionals.length)
    out.push(
      "Arguments:",
      ...columns(
        positionals.map(([n, d]) => [n.toUpperCase(), d.description ?? ""]),
        width,
      ),
      "",
    )
  const flagRows: [string, string][] = flags.map(([n, d]) => {
    const alias = Array.isArray(d.alias) ? d.alias : d.alias ? [d.alias] : []
    const spelled = [...alias.map((a) => `-${a}`), `--${n}`].join(", ")
    return [d.type === "string" ? `${spelled} <${n.replace(/-/g, "_")}>` : spelled, d.description ?? ""]
  })
  flagRows.push(["-h, --help", "show this help"])
  if (path.length === 1) flagRows.push(["-V, --version", "print the version"])
  out.push("Options:", ...columns(flagRows, width), "")
  if (subs.length) {
    const rows: [string, string][] = []
    for (const [n, sub] of subs) rows.push([n, (await resolve((await resolve(sub)).meta ?? {})).description ?? ""])
    out.push(
      "Commands:",
      ...columns(rows, width),
      "",
      ...wrap(`Run ${name} <command> --help for a command's options.`, width),
      "",
    )
  }
  const examples = EXAMPLES[name]
  if (examples) out.push("Examples:", ...examples.flatMap((e) => wrap(e, width, 6, 2)), "")
  return out.join("\n").trimEnd()
}
