import { defineCommand } from "citty"
import { defineCommandStrict } from "../../args.ts"
import * as v from "valibot"
import { LocalIoError, UsageError } from "../../../shared/errors.ts"
import { isName } from "../../../shared/ids.ts"
import { Role } from "../../../shared/protocol/schemas.ts"
import { fields, table, time } from "../../table.ts"
import { jsonArg, modeArgs, modeOf, print, remember } from "./_args.ts"
import { withBackend } from "./_backend.ts"
import { writeFileAtomic } from "../../../shared/auth/secret-file.ts"

const nameArg = {
  name: { type: "positional", description: "user name (letters, digits, '_', '-'; used as client_id)", required: true },
} as const

/** Checked here for both modes, so a typo fails the same way (exit 2) without a round trip. */
function userName(name: string): string {
  if (!isName(name))
    throw new UsageError(
      `invalid user name ${JSON.stringify(name)}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit`,
    )
  return name
}

const keyFileArg = {
  "key-file": {
    type: "string",
    description: "write the key to this file (mode 0600, replaced atomically) instead of printing it",
  },
} as const

/**
 * Writes a new key where `--key-file` says, private to this user whatever the umask (a shell's
 * `> worker1.key` would create it 0644). Returns what to print instead of the key.
 */
function keyFile(path: string | undefined, name: string, key: string): string | undefined {
  if (!path) return undefined
  try {
    writeFileAtomic(path, key + "\n", 0o600)
  } catch (err) {
    throw new LocalIoError(
      `the key of ${name} was made but could not be written to ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; run rotate-key with another --key-file`,
    )
  }
  return `wrote the key of ${name} to ${path} (mode 0600)\n`
}

const addArgs = {
  ...nameArg,
  role: { type: "string", description: "client | worker | admin", required: true },
  ...keyFileArg,
  ...jsonArg,
  ...modeArgs,
} as const
const add = defineCommandStrict({
  meta: {
    name: "add",
    description: "Create a user and print its new key (only the key, on stdout; with --json {user, key})",
  },
  args: addArgs,
  async run({ args }) {
    const name = userName(args.name)
    if (!v.is(Role, args.role)) throw new UsageError(`--role must be one of ${Role.options.join(", ")}`)
    const created = await withBackend(modeOf(args), (b) => b.addUser(name, args.role as Role))
    const wrote = keyFile(args["key-file"], name, created.key)
    if (wrote) return print(args.json, { user: created.user, keyFile: args["key-file"] }, () => wrote)
    print(args.json, created, () => created.key + "\n")
  },
})

const lsArgs = { ...jsonArg, ...modeArgs } as const
const ls = defineCommandStrict({
  meta: { name: "ls", description: "List users (never their keys)" },
  args: lsArgs,
  async run({ args }) {
    const users = await withBackend(modeOf(args), (b) => b.listUsers())
    print(args.json, users, () =>
      users.length
        ? table(
            ["NAME", "ROLE", "CREATED"],
            users.map((u) => [u.name, u.role, time(u.createdAt)]),
          )
        : "no users\n",
    )
  },
})

const oneArgs = { ...nameArg, ...jsonArg, ...modeArgs } as const
const rotateArgs = { ...nameArg, ...keyFileArg, ...jsonArg, ...modeArgs } as const

const show = defineCommandStrict({
  meta: { name: "show", description: "Show one user (never its key)" },
  args: oneArgs,
  async run({ args }) {
    const name = userName(args.name)
    const user = await withBackend(modeOf(args), (b) => b.getUser(name))
    print(args.json, user, () =>
      fields([
        ["name", user.name],
        ["role", user.role],
        ["created", time(user.createdAt)],
      ]),
    )
  },
})

const rm = defineCommandStrict({
  meta: {
    name: "rm",
    description: "Delete a user; its key stops working at once (remote mode refuses your own identity)",
  },
  args: oneArgs,
  async run({ args }) {
    const name = userName(args.name)
    const user = await withBackend(modeOf(args), (b) => b.removeUser(name))
    print(args.json, user, () => `removed user ${user.name} (${user.role})\n`)
  },
})

const rotate = defineCommandStrict({
  meta: {
    name: "rotate-key",
    description:
      "Give a user a new key and print it (only the key; with --json {name, key}); the old key is refused from now on",
  },
  args: rotateArgs,
  async run({ args }) {
    const name = userName(args.name)
    const key = await withBackend(modeOf(args), (b) => b.rotateKey(name))
    const wrote = keyFile(args["key-file"], name, key)
    if (wrote) return print(args.json, { name, keyFile: args["key-file"] }, () => wrote)
    print(args.json, { name, key }, () => key + "\n")
  },
})

export default defineCommand({
  meta: { name: "users", description: "Manage users (identities and their keys)" },
  // Accepted here too, so that `admin users --config F <verb>` finds the verb.
  args: modeArgs,
  setup: ({ args }) => remember(args),
  subCommands: { add, ls, show, rm, "rotate-key": rotate },
})
