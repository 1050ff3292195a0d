import { afterAll, expect, test } from "bun:test"
import { Database } from "bun:sqlite"
import { chmodSync } from "node:fs"
import { memoryKeyring } from "../../shared/auth/keyring.ts"
import { tempDir } from "../../../test/helpers/fixtures.ts"
import { createStore } from "../index.ts"

const tmp = tempDir("sqlite")
afterAll(tmp.remove)
// One secret for every opening: the file's keys stay readable.
const keys = memoryKeyring()

const open = async (path: string) => {
  const warnings: string[] = []
  const store = await createStore({
    database: { engine: "sqlite", path },
    keys,
    onWarning: (m) => void warnings.push(m),
  })
  await store.close()
  return warnings
}

test("opening a database every user can read warns with the fix; a private one, or one in memory, does not", async () => {
  const path = tmp.fresh()
  expect(await open(path)).toEqual([])
  chmodSync(path, 0o644)
  expect(await open(path)).toEqual([
    `database ${path} is readable by every user (mode 0644); make it private: chmod 600 ${path}`,
  ])
  chmodSync(path, 0o640)
  expect(await open(path)).toEqual([])
  expect(await open(":memory:")).toEqual([])
})

test("a credential kept in memory follows every change: this store's, another process's and a raw write", async () => {
  const path = tmp.fresh()
  const mine = await createStore({ database: { engine: "sqlite", path }, keys })
  const other = await createStore({ database: { engine: "sqlite", path }, keys })
  const k1 = Buffer.alloc(32, 1).toString("base64")
  const k2 = Buffer.alloc(32, 2).toString("base64")
  await mine.addUser("c1", "client", k1, 1)
  expect((await mine.getCredential("c1"))?.key).toBe(k1)
  // Another process rotates the key, removes the identity, adds it back as a worker.
  expect(await other.setUserKey("c1", k2)).toBe(true)
  expect((await mine.getCredential("c1"))?.key).toBe(k2)
  expect(await other.removeUser("c1")).toBe(true)
  expect(await mine.getCredential("c1")).toBeUndefined()
  await other.addUser("c1", "worker", k1, 2)
  expect(await mine.getCredential("c1")).toMatchObject({ role: "worker", key: k1 })
  // This store's own changes.
  expect(await mine.setUserKey("c1", k2)).toBe(true)
  expect((await mine.getCredential("c1"))?.key).toBe(k2)
  expect(await mine.removeUser("c1")).toBe(true)
  expect(await mine.getCredential("c1")).toBeUndefined()
  // A write straight into the file (not through any store) is seen too.
  await mine.addUser("c2", "client", k1, 3)
  expect((await mine.getCredential("c2"))?.key).toBe(k1)
  const raw = new Database(path)
  raw.run("DELETE FROM users WHERE name = 'c2'")
  raw.close()
  expect(await mine.getCredential("c2")).toBeUndefined()
  await other.close()
  await mine.close()
})
