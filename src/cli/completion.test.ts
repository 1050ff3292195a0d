import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { bashScript, commandTree, fishScript, zshScript, type Node } from "./completion.ts"
import { root } from "./root.ts"

const tree: Node[] = await commandTree(root)
const dir = mkdtempSync(join(tmpdir(), "dffmpeg-completion-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const TOP = ["coordinator", "worker", "client", "admin", "config", "version", "completion"]
const node = (path: string) => tree.find((n) => n.path === path)!

/** Runs `script` (saved to a file) in the real shell with `body` after it; stdout. */
function inShell(shell: "bash" | "zsh" | "fish", script: string, body: string): string {
  const file = join(dir, `completion.${shell}`)
  writeFileSync(file, script)
  const r = Bun.spawnSync([shell, "-c", `source ${file}\n${body}`], {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: dir },
  })
  if (r.exitCode !== 0) throw new Error(`${shell} exited ${r.exitCode}: ${r.stderr.toString()}`)
  return r.stdout.toString()
}

describe("the command tree", () => {
  test("is citty's: every command and subcommand, each with its flags (and whether they take a value)", () => {
    expect(node("").subcommands.map((s) => s.name)).toEqual(TOP)
    expect(node("/admin/users").subcommands.map((s) => s.name)).toEqual(["add", "ls", "show", "rm", "rotate-key"])
    expect(node("/coordinator").flags.find((f) => f.long === "port")).toMatchObject({ value: true })
    expect(node("/admin/users/ls").flags.find((f) => f.long === "json")).toMatchObject({ value: false })
    expect(node("/client/submit").flags.find((f) => f.long === "binary")).toMatchObject({ short: ["b"], value: true })
    expect(tree.filter((n) => n.passthrough).map((n) => n.path)).toEqual(["/client/submit"])
    // Every node's flags include --help; only the root has --version.
    expect(tree.every((n) => n.flags.some((f) => f.long === "help"))).toBe(true)
    expect(tree.filter((n) => n.flags.some((f) => f.long === "version")).map((n) => n.path)).toEqual([""])
  })
})

/** What the bash function offers for a command line (the last word is the one being completed). */
const bash = (line: string[]) =>
  inShell(
    "bash",
    bashScript(tree),
    `COMP_WORDS=(${line.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${line.length - 1}; COMPREPLY=(); _dffmpeg; printf '%s\\n' "\${COMPREPLY[@]}"`,
  )
    .split("\n")
    .filter(Boolean)

describe("bash (run in real bash)", () => {
  test("complete -p shows the function, with file names as the fallback", () => {
    expect(inShell("bash", bashScript(tree), "complete -p dffmpeg").trim()).toBe(
      "complete -o default -F _dffmpeg dffmpeg",
    )
  })

  test("commands, subcommands and flags from the words typed so far", () => {
    expect(bash(["dffmpeg", ""])).toEqual([...TOP, "--help", "-h", "--version", "-V"])
    expect(bash(["dffmpeg", "adm"])).toEqual(["admin"])
    expect(bash(["dffmpeg", "admin", "users", "r"])).toEqual(["rm", "rotate-key"])
    expect(bash(["dffmpeg", "admin", "users", "ls", "--j"])).toEqual(["--json"])
    expect(bash(["dffmpeg", "coordinator", "--p"])).toEqual(["--port"])
    expect(bash(["dffmpeg", "completion", ""])).toEqual(["--help", "-h"])
  })

  test("a flag's value is not read as a command, and is left to file completion", () => {
    expect(bash(["dffmpeg", "admin", "--config", "ops.yaml", "us"])).toEqual(["users"])
    expect(bash(["dffmpeg", "admin", "--config", ""])).toEqual([])
    expect(bash(["dffmpeg", "admin", "--config=ops.yaml", "j"])).toEqual(["jobs", "janitor"])
  })

  test("client submit: its own flags first, then nothing of ours (ffmpeg's arguments, file names)", () => {
    expect(bash(["dffmpeg", "client", "submit", "-b", "ffprobe", "--d"])).toEqual(["--detach"])
    expect(bash(["dffmpeg", "client", "submit", "-i", "in.mkv", "-"])).toEqual([])
    expect(bash(["dffmpeg", "client", "submit", "--", "-"])).toEqual([])
  })

  test("a mistyped command completes nothing below it", () => {
    expect(bash(["dffmpeg", "cordinator", ""])).toEqual([])
  })
})

describe("zsh", () => {
  const script = zshScript(tree)
  test("structure: #compdef, one case per command with name:description entries, compdef at the end", () => {
    expect(script.startsWith("#compdef dffmpeg\n")).toBe(true)
    for (const n of tree) expect(script).toContain(`    '${n.path}') items=(`)
    expect(script).toContain("'users:Manage users")
    expect(script).toContain("'--port:port to listen on")
    expect(script).toContain("compdef _dffmpeg dffmpeg")
  })

  // The completion system itself needs a terminal; the generated function runs in real zsh with
  // _describe/_files/compdef standing in for it, printing what they were given.
  test("runs in real zsh: what it hands _describe, and when it falls back to _files", () => {
    const run = (line: string[]) =>
      inShell(
        "zsh",
        script,
        `_describe() { shift 3; print -rl -- \${(P)1} }; _files() { print FILES }
words=(${line.map((w) => `'${w}'`).join(" ")}); CURRENT=${line.length}; _dffmpeg || print NONE`,
      )
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(":")[0])
    expect(run(["dffmpeg", "admin", "--config", "ops.yaml", ""])).toEqual([
      "users",
      "jobs",
      "workers",
      "janitor",
      "security",
      "db",
      "dashboard-link",
      "--help",
      "-h",
      "--config",
      "--local",
    ])
    expect(run(["dffmpeg", "admin", "--config", ""])).toEqual(["FILES"])
    expect(run(["dffmpeg", "client", "submit", "-i", "x", ""])).toEqual(["FILES"])
    expect(run(["dffmpeg", "cordinator", ""])).toEqual(["NONE"])
    expect(run(["dffmpeg", "admin", "users", "ls", ""])).toContain("--json")
    expect(inShell("zsh", script, "print -r -- ${+functions[_dffmpeg]}").trim()).toBe("1")
  })

  test("completes in an interactive zsh with compinit (zpty)", () => {
    const file = join(dir, "_dffmpeg")
    writeFileSync(file, script)
    writeFileSync(join(dir, "zpty.zsh"), ZPTY)
    const cases = [
      ["dffmpeg adm", "dffmpeg admin "],
      ["dffmpeg admin --config ops.yaml us", "ops.yaml users "],
      ["dffmpeg admin users ls --js", "ls --json "],
      ["dffmpeg client submit --det", "submit --detach "],
    ]
    const r = Bun.spawnSync(["zsh", "-f", join(dir, "zpty.zsh"), file, ...cases.flat()], {
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: dir, TERM: "xterm" },
      timeout: 60_000,
    })
    expect(r.stdout.toString().split("\n").filter(Boolean)).toEqual(cases.map(([, want]) => `OK ${want}`))
  })
})

/**
 * Types each line and a Tab into an interactive zsh (zsh/zpty) that loaded compinit and the script, and
 * polls its screen (escapes removed) until `want` shows, with a deadline: the real completion system.
 */
const ZPTY = `setopt extendedglob
zmodload zsh/zpty
script=$1; shift
zpty z 'zsh -f -i'
zpty -w z "unset zle_bracketed_paste; PS1='> '; autoload -Uz compinit; compinit -u -D; source \${(q)script}"
while (( $# )); do
  typed=$1 want=$2; shift 2
  zpty -w -n z "$typed"$'\\t'
  out="" plain=""
  for i in {1..200}; do
    while zpty -r -t z chunk; do out+=$chunk; done
    plain=\${out//$'\\e'\\[[0-9;?]#[a-zA-Z]/}
    [[ $plain == *"$want"* ]] && break
    sleep 0.05
  done
  [[ $plain == *"$want"* ]] && print -r -- "OK $want" || print -r -- "MISSING $want"
  zpty -w -n z $'\\x15'
done
zpty -d z
`

describe("fish", () => {
  const script = fishScript(tree)
  test("structure: one complete line per subcommand and flag, conditioned on the command path", () => {
    expect(script).toContain(`complete -c dffmpeg -f -n '__dffmpeg_is '\\'''\\''' -a 'admin'`)
    expect(script).toContain(`complete -c dffmpeg -n '__dffmpeg_is '\\''/coordinator'\\''' -l port -r -d`)
    expect(script).toContain(`-l binary -s b -r`)
    const lines = script.split("\n").filter((l) => l.startsWith("complete -c dffmpeg -"))
    const expected = tree.reduce((sum, n) => sum + n.subcommands.length + n.flags.length, 0)
    expect(lines.length).toBe(expected + 1) // and the `complete -e` that clears older ones
  })

  // fish's `complete -C` runs the real completion machinery on a command line.
  test("runs in real fish (complete -C)", () => {
    const run = (line: string) =>
      inShell("fish", script, `complete -C '${line}'`)
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split("\t")[0])
    expect(run("dffmpeg adm")).toEqual(["admin"])
    expect(run("dffmpeg admin --config ops.yaml us")).toEqual(["users"])
    expect(run("dffmpeg admin users ls --js")).toEqual(["--json"])
    expect(run("dffmpeg client submit -b ffprobe --det")).toEqual(["--detach"])
    writeFileSync(join(dir, "movie.mkv"), "")
    expect(run(`dffmpeg client submit -i ${dir}/movie.`)).toEqual([`${dir}/movie.mkv`])
    expect(run("dffmpeg cordinator -")).not.toContain("--help")
  })
})
