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
  expect(err.message).toBe("unknown option --jsno")
  expect(ran).toEqual([])
})

test("its own flags, their aliases, kebab-case, --no- forms and everything after -- are accepted", async () => {
  for (const rawArgs of [["01J", "--json"], ["--no-json"], ["--key-file", "f"], ["-k", "f"], ["--", "--anything"]]) {
    const { cmd, ran } = probe()
    await runCommand(cmd, { rawArgs })
    expect(ran.length).toBe(1)
  }
})
