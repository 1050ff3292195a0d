import { closeSync, existsSync, openSync, unlinkSync, writeSync } from "node:fs"
import { verb } from "../../command.ts"
import { newSecret } from "../../../shared/auth/keyring.ts"
import { pendingNext, writeNext, type FileKeyring } from "../../../shared/auth/secret-file.ts"
import { ConflictError, UsageError } from "../../../shared/errors.ts"
import type { Store } from "../../../store/index.ts"
import { jsonArg, modeArgs, modeOf, noun, print } from "./_args.ts"
import { localConfig } from "./_backend.ts"
import { openStore } from "./_store.ts"

export interface Rotation {
  file: string
  previous: string
  secret: string
  keys: number
}

/**
 * Replaces the coordinator secret, in an order where every committed key is always under a secret on
 * disk (docs/operations.md, "Rotating the secret"):
 * 1. the new secret is written beside the old one as `<file>.next-<id>` (0600, fsync);
 * 2. every key is re-encrypted under it, and `meta.secret_id` set to it, in one transaction;
 * 3. `<file>` is replaced by the new secret atomically (temp file, fsync, rename) and the copy removed.
 * A crash before 2 commits leaves the database under the old secret (the pending file is ignored and
 * removed by the next rotation); a crash after it is completed at the next start of the coordinator or
 * of any `dffmpeg admin --local` command, which promote the pending file the database names.
 * A coordinator that runs meanwhile follows: a key under a secret id it does not know makes it read
 * the secret file and the pending ones again.
 */
export async function rotateSecret(store: Store, keys: FileKeyring, file: string): Promise<Rotation> {
  const lock = `${file}.lock`
  let fd: number
  try {
    fd = openSync(lock, "wx", 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err
    throw new ConflictError(
      `another rotation holds ${lock}; if none is running (it was interrupted), remove that file and run rotate-secret again`,
    )
  }
  try {
    writeSync(fd, `${process.pid}\n`)
    // Left by a rotation that never committed (a committed one was completed when the store opened).
    for (const p of pendingNext(file)) unlinkSync(p)
    const previous = keys.current().id
    const next = newSecret()
    const pending = writeNext(file, next)
    let count: number
    try {
      count = await store.resealKeys(next)
    } catch (err) {
      // Nothing was committed under the new secret: it is not needed.
      if (existsSync(pending)) unlinkSync(pending)
      throw err
    }
    keys.promote(next)
    return { file, previous, secret: next.id, keys: count }
  } finally {
    closeSync(fd)
    unlinkSync(lock)
  }
}

const rotateArgs = { ...jsonArg, ...modeArgs } as const
const rotate = verb(
  "rotate-secret",
  "Generate a new coordinator secret and re-encrypt every stored key under it (on the coordinator host, with its config; safe while it runs)",
  rotateArgs,
  async (args) => {
    const cfg = localConfig(
      modeOf(args),
      "rotate-secret works on the coordinator host, on its database and secret file",
    )
    const { store, secret } = await openStore(cfg)
    try {
      if (!secret) throw new UsageError("the coordinator's database is in memory: there is no secret file to rotate")
      const r = await rotateSecret(store, secret.keys, secret.file)
      print(
        args.json,
        r,
        () =>
          `rotated the coordinator secret ${r.previous} → ${r.secret}: ${r.keys} key(s) re-encrypted; back up ${r.file} with the database now\n`,
      )
    } finally {
      await store.close()
    }
  },
)

export default noun("security", "Coordinator secret and keys at rest (on the coordinator host)", {
  "rotate-secret": rotate,
})
