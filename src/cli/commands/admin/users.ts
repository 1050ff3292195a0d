import { defineCommand } from "citty"
import * as v from "valibot"
import { generateKey } from "../../../shared/auth/hmac.ts"
import { NotFoundError, UsageError } from "../../../shared/errors.ts"
import { isName } from "../../../shared/ids.ts"
import { Role } from "../../../shared/protocol/schemas.ts"
import { rejectUnknownFlags } from "../../run.ts"
import { table, time } from "../../table.ts"
import { withStore } from "./_store.ts"

const config = { type: "string", description: "coordinator YAML config" } as const

const addArgs = {
  name: { type: "positional", description: "user name (letters, digits, '_', '-'; used as client_id)", required: true },
  role: { type: "string", description: "client | worker | admin", required: true },
  config,
} as const

const add = defineCommand({
  meta: { name: "add", description: "Create a user and print its new key (only the key, on stdout)" },
  args: addArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(addArgs, rawArgs)
    if (!isName(args.name)) throw new UsageError(`invalid user name ${JSON.stringify(args.name)}: use 1-64 letters, digits, '_' or '-'`)
    if (!v.is(Role, args.role)) throw new UsageError(`--role must be client, worker or admin`)
    const key = generateKey()
    await withStore(args.config, (s) => s.addUser(args.name, args.role as Role, key, Date.now()))
    process.stdout.write(key + "\n")
  },
})

const lsArgs = { json: { type: "boolean", description: "print a JSON array" }, config } as const
const ls = defineCommand({
  meta: { name: "ls", description: "List users (never their keys)" },
  args: lsArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(lsArgs, rawArgs)
    const users = await withStore(args.config, (s) => s.listUsers())
    if (args.json) return void process.stdout.write(JSON.stringify(users) + "\n")
    if (!users.length) return void process.stdout.write("no users\n")
    process.stdout.write(table(["NAME", "ROLE", "CREATED"], users.map((u) => [u.name, u.role, time(u.createdAt)])))
  },
})

const rmArgs = { name: { type: "positional", description: "user name", required: true }, config } as const
const rm = defineCommand({
  meta: { name: "rm", description: "Delete a user; its key stops working at once" },
  args: rmArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(rmArgs, rawArgs)
    const removed = await withStore(args.config, (s) => s.removeUser(args.name))
    if (!removed) throw new NotFoundError(`no user ${args.name}`)
    process.stderr.write(`removed user ${args.name}\n`)
  },
})

export default defineCommand({
  meta: { name: "users", description: "Manage users (identities and their keys)" },
  subCommands: { add, ls, rm },
})
