import { sql, type Kysely } from "kysely"
import { ConflictError, UnavailableError } from "../../shared/errors.ts"
import { KeyError, isSealed, open, seal, type Keyring, type Secret } from "../../shared/auth/keyring.ts"
import type { SqlDialect } from "./dialect.ts"
import type { Database } from "./schema.ts"
import { writeTransaction } from "./tx.ts"

/** `meta.secret_id`: the id of the secret every stored key is sealed under (set at the first start, changed by a rotation). */
const META = "secret_id"

const HINT: Record<KeyError["problem"], (name: string) => string> = {
  clear: (n) => `restart the coordinator to encrypt it, or give ${n} a new key: dffmpeg admin users rotate-key ${n}`,
  format: (n) => `give ${n} a new key: dffmpeg admin users rotate-key ${n}`,
  secret: (n) =>
    `secret_key_file does not belong to this database: restore the secret backed up with it, or give ${n} a new key (dffmpeg admin users rotate-key ${n})`,
  tampered: (n) => `give ${n} a new key: dffmpeg admin users rotate-key ${n}`,
}

async function metaSecret(t: Kysely<Database>): Promise<string | undefined> {
  return (await t.selectFrom("meta").select("value").where("key", "=", META).executeTakeFirst())?.value
}

async function setMetaSecret(t: Kysely<Database>, id: string, had: string | undefined): Promise<void> {
  if (had === undefined) await t.insertInto("meta").values({ key: META, value: id }).execute()
  else await t.updateTable("meta").set({ value: id }).where("key", "=", META).execute()
}

/**
 * Sealing and opening of the users table's keys for one store. The Store interface stays in clear
 * (`addUser` takes the key, `getCredential` returns it); only the rows are encrypted.
 */
export function keyVault(
  db: Kysely<Database>,
  dialect: SqlDialect,
  keys: Keyring,
  onProblem: (message: string) => void,
) {
  const tx = <T>(fn: (t: Kysely<Database>) => Promise<T>) => writeTransaction(db, dialect, fn)

  /** The secret new rows are sealed under: the database's (a rotation by another process is followed), set on first use. */
  const sealer = async (t: Kysely<Database>): Promise<Secret> => {
    const id = await metaSecret(t)
    if (id === undefined) {
      await setMetaSecret(t, keys.current().id, undefined)
      return keys.current()
    }
    const s = keys.find(id)
    if (!s)
      throw new UnavailableError(
        `cannot store a key: the stored keys are encrypted under secret ${id}, and ${keys.where} holds secret ${keys.current().id}; restore the secret backed up with this database`,
      )
    return s
  }

  /**
   * Runs `fn` so that what it replaces leaves no trace in the files: SQLite keeps a replaced row's bytes
   * in the page's free space and the old page in the WAL until a checkpoint. With secure_delete the
   * freed bytes are zeroed, and a TRUNCATE checkpoint (when `done` says something was replaced) moves
   * the new pages into the database file and empties the WAL. Other dialects manage their own storage.
   */
  const wiping = async <T>(fn: () => Promise<T>, done: (r: T) => boolean): Promise<T> => {
    if (!dialect.wipeOnReplace) return fn()
    await sql`PRAGMA secure_delete = ON`.execute(db)
    try {
      const r = await fn()
      if (done(r)) await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(db)
      return r
    } finally {
      await sql`PRAGMA secure_delete = OFF`.execute(db)
    }
  }

  return {
    /** Runs `write` with `key` sealed for `name`, in one write transaction with the choice of the secret. */
    write: <T>(name: string, key: string, write: (t: Kysely<Database>, sealed: string) => Promise<T>) =>
      tx(async (t) => write(t, seal(await sealer(t), name, key))),

    /** The key in clear, or undefined (logged loudly through `onProblem`) when the row cannot be opened. */
    read(name: string, stored: string): string | undefined {
      try {
        return open((id) => keys.find(id), name, stored)
      } catch (err) {
        if (!(err instanceof KeyError)) throw err
        onProblem(`identity ${name} refused: ${err.message}; ${HINT[err.problem](name)}`)
        return undefined
      }
    },

    /**
     * At every start: finishes a rotation that committed but did not replace the secret file, and
     * seals keys still stored in clear (databases from before encryption). Idempotent.
     */
    async sealAll(): Promise<{ sealed: number; recovered?: string }> {
      const report = await wiping(
        () =>
          tx(async (t) => {
            const id = await metaSecret(t)
            let recovered: string | undefined
            if (id !== undefined && id !== keys.current().id) {
              const s = keys.find(id)
              if (s && keys.promote) {
                keys.promote(s)
                recovered = s.id
              } else if (!s) {
                onProblem(
                  `the stored keys are encrypted under secret ${id}, but ${keys.where} holds secret ${keys.current().id}: every identity will be refused; restore the secret file backed up with this database, or give every identity a new key`,
                )
                return { sealed: 0 }
              }
            }
            const target = await sealer(t)
            const clear = (await t.selectFrom("users").select(["name", "key"]).execute()).filter(
              (r) => !isSealed(r.key),
            )
            for (const r of clear)
              await t
                .updateTable("users")
                .set({ key: seal(target, r.name, r.key.trim()) })
                .where("name", "=", r.name)
                .execute()
            return { sealed: clear.length, recovered }
          }),
        (r) => r.sealed > 0,
      )
      return report
    },

    /** Re-seals every key under `next` and records it as the database's secret, in one transaction. */
    async reseal(next: Secret): Promise<number> {
      return wiping(
        () =>
          tx(async (t) => {
            const rows = await t.selectFrom("users").select(["name", "key"]).orderBy("name").execute()
            const opened: { name: string; key: string }[] = []
            const bad: string[] = []
            for (const r of rows) {
              try {
                opened.push({
                  name: r.name,
                  key: isSealed(r.key) ? open((id) => keys.find(id), r.name, r.key) : r.key.trim(),
                })
              } catch (err) {
                if (!(err instanceof KeyError)) throw err
                bad.push(`${r.name} (${err.message})`)
              }
            }
            if (bad.length)
              throw new ConflictError(
                `cannot re-encrypt ${bad.length} key(s), nothing was changed: ${bad.join("; ")}. Give them new keys (dffmpeg admin users rotate-key NAME) or remove them, then rotate again`,
              )
            for (const r of opened)
              await t
                .updateTable("users")
                .set({ key: seal(next, r.name, r.key) })
                .where("name", "=", r.name)
                .execute()
            await setMetaSecret(t, next.id, await metaSecret(t))
            return opened.length
          }),
        (n) => n > 0,
      )
    },
  }
}
