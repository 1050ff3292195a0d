/**
 * The operator guides say only what the code has: every `dffmpeg …` command they show is a real command
 * of the compiled binary and takes the options they give it (its own `--help` says so), and every YAML
 * config they show is valid for its role, with no key the schema does not know.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { loadConfig } from "../src/shared/config/load.ts"
import { ClientConfig } from "../src/shared/config/schema.ts"
import { CoordinatorConfig, WorkerConfig } from "../src/shared/config/server-schema.ts"
import { BIN, ROOT, requireBinary } from "./helpers/bin.ts"
import { tempDir } from "./helpers/fixtures.ts"

const GUIDES = ["docs/jellyfin.md", "docs/docker.md", "docs/upgrading.md"]
/** A file's text with shell line continuations joined, so a command split over lines reads as one. */
const text = (f: string) => readFileSync(join(ROOT, f), "utf8").replace(/\\\n\s*/g, " ")

/** How many words name the command after `dffmpeg` (admin NOUN VERB, client VERB, the roles alone). */
const DEPTH: Record<string, number> = { admin: 3, client: 2, coordinator: 1, worker: 1 }

/** Each `dffmpeg` command line in a guide: the command's words and the long options given to it. */
function commands(md: string): { words: string[]; options: string[]; line: string }[] {
  const out: { words: string[]; options: string[]; line: string }[] = []
  for (const m of md.matchAll(/(?:^|[\s`(])dffmpeg ((?:admin|client|coordinator|worker)\b[^`\n|;&#)]*)/g)) {
    const tokens = m[1].trim().split(/\s+/)
    const words: string[] = []
    const options: string[] = []
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]
      if (t === "--") break // what follows is ffmpeg's
      if (t === "--config")
        i++ // the global option and its value
      else if (t.startsWith("--")) options.push(t.split("=")[0])
      else if (t === "--local" || t.startsWith("-")) continue
      else if (words.length < DEPTH[tokens[0]] && /^[a-z][a-z-]*$/.test(t)) words.push(t)
    }
    if (words.length === DEPTH[words[0]]) out.push({ words, options, line: m[0].trim() })
  }
  return out
}

describe("the guides' commands", () => {
  const found = GUIDES.flatMap((f) => commands(text(f)).map((c) => ({ ...c, file: f })))

  test("there are commands to check in every guide", () => {
    for (const f of GUIDES) expect(found.some((c) => c.file === f)).toBe(true)
    expect(found.length).toBeGreaterThan(15)
  })

  test("each is a command of the binary and takes the options shown", () => {
    requireBinary()
    const help = new Map<string, string>()
    for (const c of found) {
      const key = c.words.join(" ")
      if (!help.has(key)) {
        const r = Bun.spawnSync([BIN, ...c.words, "--help"], { env: { HOME: "/nonexistent", NO_COLOR: "1" } })
        help.set(key, r.stdout.toString() + r.stderr.toString())
      }
      const usage = help.get(key)!
      // The usage line names the command the help describes (an unknown verb is an error, not the parent's help).
      expect(usage, `${c.file}: ${c.line}`).toContain(`Usage:\n  dffmpeg ${key} `)
      for (const o of c.options) expect(usage, `${c.file}: ${o} in ${c.line}`).toContain(o)
    }
  })

  test("the compose file's admin commands are real too", () => {
    const compose = text("deploy/compose.yaml")
    const runs = [...compose.matchAll(/docker compose run --rm coordinator (admin [^\n]+)/g)]
    expect(runs.length).toBe(2)
    for (const [, cmd] of runs) expect(commands(`dffmpeg ${cmd}`)).toHaveLength(1)
  })
})

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (h: string) =>
  h
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-")

describe("the guides' links", () => {
  test("every relative link points at a file of the repository, and its #anchor at a heading there", () => {
    let n = 0
    for (const f of [...GUIDES, "CHANGELOG.md", "README.md"]) {
      for (const [, target] of text(f).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue // https:, mailto:
        const [path, anchor] = target.split("#")
        const file = path ? join(ROOT, f, "..", path) : join(ROOT, f)
        expect(existsSync(file), `${f}: ${target}`).toBe(true)
        if (anchor) {
          const headings = [...readFileSync(file, "utf8").matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1]))
          expect(headings, `${f}: ${target}`).toContain(anchor)
        }
        n++
      }
    }
    expect(n).toBeGreaterThan(30)
  })
})

describe("the guides' YAML", () => {
  const tmp = tempDir("guides")
  afterAll(() => tmp.remove())

  test("every config block is valid for its role, with no unknown key", async () => {
    let n = 0
    for (const f of GUIDES) {
      for (const [, body] of text(f).matchAll(/```yaml\n([\s\S]*?)```/g)) {
        // The role: a worker names binaries, a coordinator a database or listen address, a client paths.
        const role = /^binaries:/m.test(body)
          ? "worker"
          : /^(database|host|scheduling):/m.test(body)
            ? "coordinator"
            : /^client_id:/m.test(body)
              ? "client"
              : undefined
        expect(role, `${f}: a YAML block of no role:\n${body}`).toBeDefined()
        const file = tmp.fresh(`${role}.yaml`)
        mkdirSync(join(file, ".."), { recursive: true })
        writeFileSync(file, body)
        const schema = role === "worker" ? WorkerConfig : role === "client" ? ClientConfig : CoordinatorConfig
        const loaded = await loadConfig(role!, schema, file)
        expect(loaded.warnings, `${f}:\n${body}`).toEqual([])
        n++
      }
    }
    expect(n).toBeGreaterThanOrEqual(2)
  })
})
