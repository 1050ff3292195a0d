import { expect, test } from "bun:test"
import { runCommand } from "citty"
import { UsageError } from "../shared/errors.ts"
import { defineCommandStrict } from "./command.ts"

const probe = () => {
  const ran: unknown[] = []
  const cmd = defineCommandStrict({
    meta: { name: "probe" },
    args: {
      id: { type: "positional", required: false },
      json: { type: "boolean" },
      keyFile: { type: "string", alias: "k" },
    },
    run: ({ args }) => void ran.push(args.id),
  })
  return { cmd, ran }
}

test("a strict command refuses an unknown flag before it runs", async () => {
  const { cmd, ran } = probe()
  const err = await runCommand(cmd, { rawArgs: ["01J", "--jsno"] }).catch((e) => e)
  expect(err).toBeInstanceOf(UsageError)
  expect(err.message).toBe("unknown option --jsno; did you mean --json?")
  expect(ran).toEqual([])
})

test("its own flags, their aliases, kebab-case, --no- forms and everything after -- are accepted", async () => {
  for (const rawArgs of [["01J", "--json"], ["--no-json"], ["--key-file", "f"], ["-k", "f"], ["--", "--anything"]]) {
    const { cmd, ran } = probe()
    await runCommand(cmd, { rawArgs })
    expect(ran.length).toBe(1)
  }
})

test("an unknown flag far from every known one gets no suggestion; --no-X and =value forms are named as typed", async () => {
  const { cmd } = probe()
  const far = await runCommand(cmd, { rawArgs: ["--zzzzzz"] }).catch((e) => e)
  expect(far.message).toBe("unknown option --zzzzzz")
  const neg = await runCommand(cmd, { rawArgs: ["--no-jsn"] }).catch((e) => e)
  expect(neg.message).toBe("unknown option --no-jsn; did you mean --json?")
  const eq = await runCommand(cmd, { rawArgs: ["--key-fil=x"] }).catch((e) => e)
  expect(eq.message).toBe("unknown option --key-fil; did you mean --key-file?")
})

test("a flag that takes a value, given last without one, is a usage error (citty would read it as empty)", async () => {
  for (const rawArgs of [["01J", "--key-file"], ["-k"], ["--keyFile", "--"]]) {
    const { cmd, ran } = probe()
    const err = await runCommand(cmd, { rawArgs }).catch((e) => e)
    expect(err).toBeInstanceOf(UsageError)
    expect(err.message).toBe(`${rawArgs.find((a) => a.startsWith("-") && a !== "--")} needs a value`)
    expect(ran).toEqual([])
  }
  const { cmd, ran } = probe()
  await runCommand(cmd, { rawArgs: ["--key-file=", "01J"] })
  expect(ran).toEqual(["01J"])
})
