import * as v from "valibot"
import { LocalIoError, UsageError } from "../../../shared/errors.ts"
import { isName } from "../../../shared/ids.ts"
import { Role } from "../../../shared/protocol/schemas.ts"
import { fields, table, time } from "../../table.ts"
import { adminVerb, jsonArg, modeArgs, noun } from "./_args.ts"
import { octal, writeFileAtomic } from "../../../shared/auth/secret-file.ts"
import { keyFileMode } from "../../../shared/owner.ts"

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
    description:
      "write the key to this file (mode 0600, or 0640 in a folder closed to others such as /etc/dffmpeg/keys; replaced atomically) instead of printing it",
  },
} as const

/**
 * Writes a new key where `--key-file` says, never readable by others whatever the umask (a shell's
 * `> worker1.key` would create it 0644): 0600, or 0640 for its folder's group when the folder is closed to
 * others (shared/owner.ts; run as root, the file takes the folder's owner and group, so the key in
 * /etc/dffmpeg/keys is root:dffmpeg). Returns what to print instead of the key.
 */
function keyFile(path: string | undefined, name: string, key: string): string | undefined {
  if (!path) return undefined
  let mode = 0o600
  try {
    mode = keyFileMode(path)
    writeFileAtomic(path, key + "\n", mode)
  } catch (err) {
    throw new LocalIoError(
      `the key of ${name} was made but could not be written to ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; run rotate-key with another --key-file`,
    )
  }
  return `wrote the key of ${name} to ${path} (mode ${octal(mode)})\n`
}

const addArgs = {
  ...nameArg,
  role: { type: "string", description: "client | worker | admin", required: true },
  ...keyFileArg,
  ...jsonArg,
  ...modeArgs,
} as const
const add = adminVerb(
  "add",
  "Create a user and print its new key (only the key, on stdout; with --json {user, key})",
  addArgs,
  {
    input: (args) => {
      const name = userName(args.name)
      if (!v.is(Role, args.role)) throw new UsageError(`--role must be one of ${Role.options.join(", ")}`)
      return { name, role: args.role as Role, file: args["key-file"] }
    },
    call: (b, i) => b.addUser(i.name, i.role),
    show: (created, i) => {
      const wrote = keyFile(i.file, i.name, created.key)
      return wrote ? { json: { user: created.user, keyFile: i.file }, text: wrote } : created.key + "\n"
    },
  },
)

const lsArgs = { ...jsonArg, ...modeArgs } as const
const ls = adminVerb("ls", "List users (never their keys)", lsArgs, {
  input: () => undefined,
  call: (b) => b.listUsers(),
  readOnly: true,
  show: (users) =>
    users.length
      ? table(
          ["NAME", "ROLE", "CREATED"],
          users.map((u) => [u.name, u.role, time(u.createdAt)]),
        )
      : "no users\n",
})

const oneArgs = { ...nameArg, ...jsonArg, ...modeArgs } as const
const rotateArgs = { ...nameArg, ...keyFileArg, ...jsonArg, ...modeArgs } as const
const byName = (args: { name: string }) => userName(args.name)

const show = adminVerb("show", "Show one user (never its key)", oneArgs, {
  input: byName,
  call: (b, name) => b.getUser(name),
  readOnly: true,
  show: (user) =>
    fields([
      ["name", user.name],
      ["role", user.role],
      ["created", time(user.createdAt)],
    ]),
})

const rm = adminVerb(
  "rm",
  "Delete a user; its key stops working at once (remote mode refuses your own identity)",
  oneArgs,
  {
    input: byName,
    call: (b, name) => b.removeUser(name),
    show: (user) => `removed user ${user.name} (${user.role})\n`,
  },
)

const rotate = adminVerb(
  "rotate-key",
  "Give a user a new key and print it (only the key; with --json {name, key}); the old key is refused from now on",
  rotateArgs,
  {
    input: (args) => ({ name: userName(args.name), file: args["key-file"] }),
    call: (b, i) => b.rotateKey(i.name),
    show: (key, { name, file }) => {
      const wrote = keyFile(file, name, key)
      return wrote ? { json: { name, keyFile: file }, text: wrote } : { json: { name, key }, text: key + "\n" }
    },
  },
)

export default noun("users", "Manage users (identities and their keys)", { add, ls, show, rm, "rotate-key": rotate })
