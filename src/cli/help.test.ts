import { afterEach, expect, test } from "bun:test"
import type { CommandDef } from "citty"
import { EXAMPLES, helpWidth, renderHelp, wrap } from "./help.ts"
import { root } from "./root.ts"

const saved = process.env.COLUMNS
afterEach(() => {
  if (saved === undefined) delete process.env.COLUMNS
  else process.env.COLUMNS = saved
})

const resolve = async (v: unknown): Promise<CommandDef> =>
  (typeof v === "function" ? await (v as () => unknown)() : await v) as CommandDef

/** The command at `path` under the root, as citty resolves it. */
async function at(path: string[]): Promise<CommandDef> {
  let cmd: CommandDef = root
  for (const name of path) cmd = await resolve(((await resolve(cmd.subCommands)) as Record<string, unknown>)[name])
  return cmd
}

test("wrap breaks between words within the width, a longer word stays whole", () => {
  expect(wrap("aa bb cc dd", 5)).toEqual(["aa bb", "cc dd"])
  expect(wrap("aa bb cc", 7, 2)).toEqual(["  aa bb", "  cc"])
  expect(wrap("averyveryverylongword x", 10)).toEqual(["averyveryverylongword", "x"])
  expect(wrap("", 10)).toEqual([""])
})

test("the width: COLUMNS, else the terminal's, else 80; never under 40", () => {
  delete process.env.COLUMNS
  expect(helpWidth({ isTTY: false, columns: 200 })).toBe(80)
  expect(helpWidth({ isTTY: true, columns: 132 })).toBe(132)
  process.env.COLUMNS = "100"
  expect(helpWidth({ isTTY: true, columns: 132 })).toBe(100)
  process.env.COLUMNS = "10"
  expect(helpWidth({ isTTY: false })).toBe(40)
  process.env.COLUMNS = "wide"
  expect(helpWidth({ isTTY: false })).toBe(80)
})

const MAIN = [
  [],
  ["coordinator"],
  ["worker"],
  ["client"],
  ["client", "submit"],
  ["admin"],
  ["config", "check"],
  ["completion"],
]

test("every main command's help fits the width it is given and ends with examples of it", async () => {
  for (const path of MAIN)
    for (const width of [40, 80, 120]) {
      const text = await renderHelp(await at(path), ["dffmpeg", ...path], width)
      const name = ["dffmpeg", ...path].join(" ")
      expect(text).toContain(`Usage:\n  ${name}`)
      expect(text).toContain("\nExamples:\n")
      expect(EXAMPLES[name]!.length).toBeGreaterThan(1)
      // A line may only be longer when it is one word (a path, a flag) that cannot be broken.
      for (const line of text.split("\n")) if (line.length > width) expect(line.trim().split(" ").length).toBe(1)
    }
})

test("options with their aliases and values, subcommands with their descriptions", async () => {
  const text = await renderHelp(await at(["coordinator"]), ["dffmpeg", "coordinator"], 80)
  expect(text).toContain("  --port <port>")
  expect(text).toContain("  -h, --help")
  const client = await renderHelp(await at(["client"]), ["dffmpeg", "client"], 80)
  expect(client).toMatch(/\n {2}submit +Run ffmpeg\/ffprobe on the cluster/)
  expect(client).toContain("Usage:\n  dffmpeg client <submit|attach|cancel|status|jobs|workers>")
})

test("client submit's usage shows where the ffmpeg command goes", async () => {
  const text = await renderHelp(await at(["client", "submit"]), ["dffmpeg", "client", "submit"], 80)
  expect(text).toContain("Usage:\n  dffmpeg client submit [OPTIONS] [--] ARGS...")
})
