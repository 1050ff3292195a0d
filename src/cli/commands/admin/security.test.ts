import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { Database as Sqlite } from "bun:sqlite"
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { generateKey } from "../../../shared/auth/hmac.ts"
import { KeyError, newSecret, open, sealedWith } from "../../../shared/auth/keyring.ts"
import { fileKeyring, nextPath, readSecret, writeNext } from "../../../shared/auth/secret-file.ts"
import { createSqliteStore } from "../../../store/sqlite/index.ts"
import type { Store } from "../../../store/types.ts"
import { rotateSecret } from "./security.ts"

const T0 = 1_700_000_000_000
const USERS = { root: "admin", jellyfin: "client", w1: "worker" } as const

let dir: string
let path: string
let secretFile: string
let keys: Record<string, string>
let store: Store
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "dffmpeg-rotate-"))
  path = join(dir, "coordinator.db")
  secretFile = `${path}.secret`
  store = createSqliteStore({ path })
  await store.migrate()
  keys = {}
  for (const [name, role] of Object.entries(USERS)) await store.addUser(name, role, (keys[name] = generateKey()), T0)
})
afterEach(async () => {
  await store.close()
  rmSync(dir, { recursive: true, force: true })
})

const stored = () => {
  const db = new Sqlite(path, { readonly: true })
  try {
    return db.query("SELECT name, key FROM users ORDER BY name").all() as { name: string; key: string }[]
  } finally {
    db.close()
  }
}

async function credentials(s: Store) {
  return Object.fromEntries(
    await Promise.all(Object.keys(USERS).map(async (n) => [n, (await s.getCredential(n))?.key])),
  )
}

describe("rotate-secret", () => {
  test("re-encrypts every key under a new secret on disk; the old secret opens nothing any more", async () => {
    const old = readSecret(secretFile)
    const r = await rotateSecret(store, fileKeyring(secretFile), secretFile)
    expect(r).toEqual({ file: secretFile, previous: old.id, secret: expect.any(String), keys: 3 })
    expect(r.secret).not.toBe(old.id)
    const now = readSecret(secretFile)
    expect(now.id).toBe(r.secret)
    expect(statSync(secretFile).mode & 0o777).toBe(0o600)
    // Only the database, its sidecars and the secret: no pending copy, no lock, no temp file.
    expect(readdirSync(dir).filter((f) => f.includes("secret"))).toEqual(["coordinator.db.secret"])
    for (const row of stored()) {
      expect(sealedWith(row.key)).toBe(now.id)
      expect(() => open((id) => (id === old.id ? old : undefined), row.name, row.key)).toThrow(KeyError)
      expect(() => open(() => ({ id: now.id, bytes: old.bytes }), row.name, row.key)).toThrow("does not authenticate")
    }
    expect(await credentials(store)).toEqual(keys)
    // A fresh process (the coordinator restarting) with the file on disk.
    const fresh = createSqliteStore({ path })
    expect(await fresh.migrate()).toEqual({ sealed: 0 })
    expect(await credentials(fresh)).toEqual(keys)
    await fresh.close()
  })

  test("a coordinator that was running keeps authenticating everyone, and new keys are sealed under the new secret", async () => {
    const coordinator = createSqliteStore({ path })
    await coordinator.migrate()
    expect(await credentials(coordinator)).toEqual(keys)
    const admin = createSqliteStore({ path })
    await admin.migrate()
    const r = await rotateSecret(admin, fileKeyring(secretFile), secretFile)
    await admin.close()
    expect(await credentials(coordinator)).toEqual(keys)
    const k = generateKey()
    expect(await coordinator.setUserKey("w1", k)).toBe(true)
    expect(sealedWith(stored().find((x) => x.name === "w1")!.key)).toBe(r.secret)
    await coordinator.close()
  })

  test("twice in a row: each rotation starts from the secret the previous one left", async () => {
    const ring = fileKeyring(secretFile)
    const a = await rotateSecret(store, ring, secretFile)
    const b = await rotateSecret(store, ring, secretFile)
    expect(b.previous).toBe(a.secret)
    expect(readSecret(secretFile).id).toBe(b.secret)
    expect(await credentials(store)).toEqual(keys)
  })

  test("a crash after the commit, before the secret file was replaced, is completed at the next start", async () => {
    const old = readSecret(secretFile)
    const next = newSecret()
    writeNext(secretFile, next)
    await store.resealKeys(next)
    // ... crash: the file still holds the old secret, the database is under the new one.
    expect(readSecret(secretFile).id).toBe(old.id)
    await store.close()
    store = createSqliteStore({ path })
    expect(await store.migrate()).toEqual({ sealed: 0, recovered: next.id })
    expect(readSecret(secretFile).id).toBe(next.id)
    expect(existsSync(nextPath(secretFile, next.id))).toBe(false)
    expect(await credentials(store)).toEqual(keys)
  })

  test("a crash before the commit leaves the database under the old secret; the next rotation clears the leftover", async () => {
    const old = readSecret(secretFile)
    const leftover = writeNext(secretFile, newSecret())
    await store.close()
    store = createSqliteStore({ path })
    expect(await store.migrate()).toEqual({ sealed: 0 })
    expect(readSecret(secretFile).id).toBe(old.id)
    expect(await credentials(store)).toEqual(keys)
    await rotateSecret(store, fileKeyring(secretFile), secretFile)
    expect(existsSync(leftover)).toBe(false)
    expect(await credentials(store)).toEqual(keys)
  })

  test("a key that cannot be opened stops the rotation before anything changes", async () => {
    const before = stored()
    const db = new Sqlite(path)
    db.query("UPDATE users SET key = ? WHERE name = 'w1'").run(before.find((r) => r.name === "root")!.key)
    db.close()
    const tampered = stored()
    const old = readSecret(secretFile).id
    await expect(rotateSecret(store, fileKeyring(secretFile), secretFile)).rejects.toThrow(
      "cannot re-encrypt 1 key(s), nothing was changed: w1",
    )
    expect(stored()).toEqual(tampered)
    expect(readSecret(secretFile).id).toBe(old)
    expect(readdirSync(dir).filter((f) => f.includes("secret"))).toEqual(["coordinator.db.secret"])
  })

  test("a second rotation at the same time is refused while the first holds the lock", async () => {
    writeFileSync(`${secretFile}.lock`, "1\n")
    await expect(rotateSecret(store, fileKeyring(secretFile), secretFile)).rejects.toThrow(
      `another rotation holds ${secretFile}.lock`,
    )
    expect(await credentials(store)).toEqual(keys)
  })
})
