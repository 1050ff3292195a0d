import { ConflictError } from "../../shared/errors.ts"
import type { Role, User } from "../../shared/protocol/schemas.ts"
import type { Store } from "../types.ts"
import type { keyVault } from "./keys.ts"
import type { Sql } from "./shared.ts"
import type { Writer } from "./writer.ts"

/** Identities and their keys (sealed by the vault, keys.ts). */
export function userMethods(
  c: Sql,
  w: Writer,
  vault: ReturnType<typeof keyVault>,
): Pick<Store, "addUser" | "getCredential" | "resealKeys" | "listUsers" | "removeUser" | "getUser" | "setUserKey"> {
  const { db } = c
  const { told } = w
  return {
    addUser: async (name: string, role: Role, key: string, now: number): Promise<User> =>
      told(
        await vault.write(name, key, async (t, sealed) => {
          const exists = await t.selectFrom("users").select("name").where("name", "=", name).executeTakeFirst()
          if (exists) throw new ConflictError(`user ${name} already exists`)
          await t.insertInto("users").values({ name, role, key: sealed, created_at: now }).execute()
          return { name, role, createdAt: now }
        }),
        { type: "user", name },
      ),
    async getCredential(name) {
      const r = await db.selectFrom("users").selectAll().where("name", "=", name).executeTakeFirst()
      const key = r && vault.read(r.name, r.key)
      return r && key !== undefined
        ? { name: r.name, role: r.role as Role, key, createdAt: Number(r.created_at) }
        : undefined
    },
    resealKeys: (next) => vault.reseal(next),
    async listUsers() {
      const rows = await db.selectFrom("users").select(["name", "role", "created_at"]).orderBy("name").execute()
      return rows.map((r) => ({ name: r.name, role: r.role as Role, createdAt: Number(r.created_at) }))
    },
    async removeUser(name) {
      const res = await db.deleteFrom("users").where("name", "=", name).executeTakeFirst()
      const removed = res.numDeletedRows > 0n
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
    setUserKey: (name, key) =>
      vault.write(name, key, async (t, sealed) => {
        const res = await t.updateTable("users").set({ key: sealed }).where("name", "=", name).executeTakeFirst()
        return res.numUpdatedRows > 0n
      }),
  }
}
