import { ConflictError } from "../../shared/errors.ts"
import type { Role, User } from "../../shared/protocol/schemas.ts"
import type { Store } from "../types.ts"
import type { keyVault } from "./keys.ts"
import type { Sql } from "./shared.ts"
import type { Writer } from "./writer.ts"

type Credential = User & { key: string }

/** Credentials kept opened in memory at most (each is a name, a role and a 44-character key). */
export const CREDENTIAL_CACHE = 10_000

/**
 * Identities and their keys (sealed by the vault, keys.ts). Every signed request asks for its
 * identity's credential: opened credentials are kept in memory while nothing may have changed them.
 * This store's own changes forget them; another process's commit is seen through the dialect's
 * `othersCommitted` (one cheap statement instead of a read and a decryption), and forgets them all.
 * Without it (engines that have none) every request reads the row. Unknown names are never kept.
 */
export function userMethods(
  c: Sql,
  w: Writer,
  vault: ReturnType<typeof keyVault>,
): Pick<Store, "addUser" | "getCredential" | "resealKeys" | "listUsers" | "removeUser" | "getUser" | "setUserKey"> {
  const { db } = c
  const { told } = w
  const probe = c.dialect.othersCommitted
  const cache = new Map<string, Credential>()
  let version: number | undefined
  /** Counts this store's own changes: a read that one overtook is not kept. */
  let changes = 0
  const forget = <T>(r: T): T => {
    changes++
    cache.clear()
    return r
  }
  /** The cache, emptied first when another connection has committed since the last look. */
  const current = async (): Promise<Map<string, Credential> | undefined> => {
    if (!probe) return undefined
    const v = (await probe.execute(db)).rows[0]?.data_version
    if (v !== version) {
      cache.clear()
      version = v
    }
    return cache
  }
  return {
    addUser: async (name: string, role: Role, key: string, now: number): Promise<User> =>
      told(
        await vault.write(name, key, async (t, sealed) => {
          forget(undefined)
          const exists = await t.selectFrom("users").select("name").where("name", "=", name).executeTakeFirst()
          if (exists) throw new ConflictError(`user ${name} already exists`)
          await t.insertInto("users").values({ name, role, key: sealed, created_at: now }).execute()
          return { name, role, createdAt: now }
        }),
        { type: "user", name },
      ),
    async getCredential(name) {
      const kept = await current()
      const hit = kept?.get(name)
      if (hit) return { ...hit }
      const before = changes
      const r = await db.selectFrom("users").selectAll().where("name", "=", name).executeTakeFirst()
      const key = r && vault.read(r.name, r.key)
      if (!r || key === undefined) return undefined
      const cred: Credential = { name: r.name, role: r.role as Role, key, createdAt: Number(r.created_at) }
      if (kept && before === changes) {
        if (kept.size >= CREDENTIAL_CACHE) kept.clear()
        kept.set(name, cred)
      }
      return { ...cred }
    },
    resealKeys: async (next) => forget(await vault.reseal(next)),
    async listUsers() {
      const rows = await db.selectFrom("users").select(["name", "role", "created_at"]).orderBy("name").execute()
      return rows.map((r) => ({ name: r.name, role: r.role as Role, createdAt: Number(r.created_at) }))
    },
    async removeUser(name) {
      const res = await db.deleteFrom("users").where("name", "=", name).executeTakeFirst()
      const removed = forget(res.numDeletedRows > 0n)
      return told(removed, removed && { type: "user", name })
    },
    async getUser(name) {
      const r = await db
        .selectFrom("users")
        .select(["name", "role", "created_at"])
        .where("name", "=", name)
        .executeTakeFirst()
      return r ? { name: r.name, role: r.role as Role, createdAt: Number(r.created_at) } : undefined
    },
    setUserKey: async (name, key) =>
      forget(
        await vault.write(name, key, async (t, sealed) => {
          const res = await t.updateTable("users").set({ key: sealed }).where("name", "=", name).executeTakeFirst()
          return res.numUpdatedRows > 0n
        }),
      ),
  }
}
