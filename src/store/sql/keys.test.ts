import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test"
import { Database as Sqlite } from "bun:sqlite"
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join } from "node:path"
import { Kysely } from "kysely"
import { BunSqliteDialect } from "kysely-bun-sqlite"
import { generateKey } from "../../shared/auth/hmac.ts"
import { memoryKeyring, newSecret, open, sealedWith } from "../../shared/auth/keyring.ts"
import { fileKeyring, writeNext } from "../../shared/auth/secret-file.ts"
import { T0, tempDir } from "../../../test/helpers/fixtures.ts"
import { createSqliteStore } from "../sqlite/index.ts"
import type { Store } from "../types.ts"
import { sqliteDialect } from "./dialect.ts"
import { migrate } from "./migrations.ts"

const tmp = tempDir("keys")
const tempPath = () => tmp.fresh()
afterAll(tmp.remove)

const KEYS = { root: generateKey(), jellyfin: generateKey(), w1: generateKey() }
const ROLES = { root: "admin", jellyfin: "client", w1: "worker" } as const

/** The users table as a plain SQLite reader sees it. */
function rows(path: string): { name: string; key: string }[] {
  const db = new Sqlite(path, { readonly: true })
  try {
    return db.query("SELECT name, key FROM users ORDER BY name").all() as { name: string; key: string }[]
  } finally {
    db.close()
  }
}

function poke(path: string, sqlText: string, ...args: string[]): void {
  const db = new Sqlite(path)
  db.query(sqlText).run(...args)
  db.close()
}

/** A database as dffmpeg wrote it before keys were encrypted: the same schema, keys in clear, no secret id. */
async function clearDatabase(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true })
  const raw = new Sqlite(path, { create: true, strict: true })
  raw.exec("PRAGMA journal_mode = WAL")
  const db = new Kysely<any>({ dialect: new BunSqliteDialect({ database: raw }) })
  await migrate(db, sqliteDialect)
  for (const [name, key] of Object.entries(KEYS))
    await db
      .insertInto("users")
      .values({ name, role: ROLES[name as keyof typeof KEYS], key, created_at: T0 })
      .execute()
  await db.destroy()
}

describe("a database with keys in clear", () => {
  let path: string
  let store: Store
  let problems: string[]
  beforeEach(async () => {
    path = tempPath()
    await clearDatabase(path)
    problems = []
    store = createSqliteStore({ path, onKeyProblem: (m) => problems.push(m) })
  })
  afterEach(async () => {
    await store.close()
  })

  test("is encrypted at the first start: no key is left in clear, every identity still gets its key", async () => {
    expect(rows(path).map((r) => r.key)).toEqual([KEYS.jellyfin, KEYS.root, KEYS.w1])
    expect(await store.migrate()).toEqual({ sealed: 3 })
    const after = rows(path)
    const secret = fileKeyring(`${path}.secret`).current()
    for (const r of after) {
      expect(r.key.startsWith("v1:")).toBe(true)
      expect(sealedWith(r.key)).toBe(secret.id)
      for (const k of Object.values(KEYS)) expect(r.key).not.toContain(k)
    }
    for (const [name, key] of Object.entries(KEYS)) expect((await store.getCredential(name))?.key).toBe(key)
    expect(problems).toEqual([])
  })

  test("leaves no key in clear anywhere in the database files (free space, WAL)", async () => {
    const files = () => [path, `${path}-wal`].filter((f) => existsSync(f)).map((f) => readFileSync(f))
    // The clear database does hold them, as bytes a file reader finds.
    expect(files().some((b) => b.includes(KEYS.root))).toBe(true)
    await store.migrate()
    for (const bytes of files()) for (const k of Object.values(KEYS)) expect(bytes.includes(k)).toBe(false)
  })

  test("is encrypted once: starting again changes no row", async () => {
    await store.migrate()
    const first = rows(path)
    expect(await store.migrate()).toEqual({ sealed: 0 })
    await store.close()
    store = createSqliteStore({ path })
    expect(await store.migrate()).toEqual({ sealed: 0 })
    expect(rows(path)).toEqual(first)
    expect((await store.getCredential("root"))?.key).toBe(KEYS.root)
  })

  test("a key written in clear after the start (an older binary) is refused, not used", async () => {
    await store.migrate()
    poke(path, "UPDATE users SET key = ? WHERE name = 'w1'", KEYS.w1)
    expect(await store.getCredential("w1")).toBeUndefined()
    expect(problems).toEqual([expect.stringContaining("identity w1 refused: the key of w1 is stored in clear")])
    // The next start seals it.
    expect(await store.migrate()).toEqual({ sealed: 1 })
    expect((await store.getCredential("w1"))?.key).toBe(KEYS.w1)
  })
})

describe("unusable stored keys", () => {
  let path: string
  let store: Store
  let problems: string[]
  beforeEach(async () => {
    path = tempPath()
    problems = []
    store = createSqliteStore({ path, onKeyProblem: (m) => problems.push(m) })
    await store.migrate()
    for (const [name, key] of Object.entries(KEYS)) await store.addUser(name, ROLES[name as keyof typeof KEYS], key, T0)
  })
  afterEach(async () => {
    await store.close()
  })

  test("a tampered row refuses that identity only, and says so", async () => {
    const sealed = rows(path).find((r) => r.name === "jellyfin")!.key
    const parts = sealed.split(":")
    const ct = Buffer.from(parts[3], "base64")
    ct[3] ^= 0x40
    poke(
      path,
      "UPDATE users SET key = ? WHERE name = 'jellyfin'",
      [...parts.slice(0, 3), ct.toString("base64")].join(":"),
    )
    expect(await store.getCredential("jellyfin")).toBeUndefined()
    expect(problems).toEqual([
      expect.stringContaining("identity jellyfin refused: the stored key of jellyfin does not authenticate"),
    ])
    expect(problems[0]).toContain("dffmpeg admin users rotate-key jellyfin")
    expect((await store.getCredential("root"))?.key).toBe(KEYS.root)
    // A new key repairs it.
    const fresh = generateKey()
    expect(await store.setUserKey("jellyfin", fresh)).toBe(true)
    expect((await store.getCredential("jellyfin"))?.key).toBe(fresh)
  })

  test("a row copied over another identity's does not give the copier's key to it", async () => {
    const rootRow = rows(path).find((r) => r.name === "root")!.key
    poke(path, "UPDATE users SET key = ? WHERE name = 'jellyfin'", rootRow)
    expect(await store.getCredential("jellyfin")).toBeUndefined()
    expect(problems[0]).toContain("altered or copied from another identity")
    expect((await store.getCredential("root"))?.key).toBe(KEYS.root)
  })

  test("another secret file: every identity is refused and the start says the file does not belong to the database", async () => {
    await store.close()
    const other = join(dirname(path), "other.secret")
    store = createSqliteStore({ path, secretFile: other, onKeyProblem: (m) => problems.push(m) })
    expect(await store.migrate()).toEqual({ sealed: 0 })
    expect(problems).toEqual([
      expect.stringMatching(
        /^the stored keys are encrypted under secret \S{8}, but .*other\.secret holds secret \S{8}: every identity will be refused/,
      ),
    ])
    for (const name of Object.keys(KEYS)) expect(await store.getCredential(name)).toBeUndefined()
    expect(problems[1]).toContain("secret_key_file does not belong to this database")
    // Nothing is sealed under a secret the database is not under.
    await expect(store.addUser("new", "client", generateKey(), T0)).rejects.toThrow(
      /^cannot store a key: the stored keys are encrypted under secret/,
    )
  })

  test("re-encryption refuses when a key cannot be opened, and changes nothing", async () => {
    poke(path, "UPDATE users SET key = ? WHERE name = 'w1'", rows(path).find((r) => r.name === "root")!.key)
    const before = rows(path)
    await expect(store.resealKeys(newSecret())).rejects.toThrow(
      /^cannot re-encrypt 1 key\(s\), nothing was changed: w1 \(/,
    )
    expect(rows(path)).toEqual(before)
  })
})

describe("two stores on one file follow a re-encryption", () => {
  test("the other store opens the re-encrypted keys and seals new ones under the new secret", async () => {
    const path = tempPath()
    const coordinator = createSqliteStore({ path })
    await coordinator.migrate()
    await coordinator.addUser("root", "admin", KEYS.root, T0)
    const admin = createSqliteStore({ path })
    await admin.migrate()
    const next = newSecret()
    writeNext(`${path}.secret`, next)
    expect(await admin.resealKeys(next)).toBe(1)
    expect(sealedWith(rows(path)[0].key)).toBe(next.id)
    expect((await coordinator.getCredential("root"))?.key).toBe(KEYS.root)
    await coordinator.addUser("late", "client", KEYS.jellyfin, T0)
    const late = rows(path).find((r) => r.name === "late")!.key
    expect(sealedWith(late)).toBe(next.id)
    expect(open((id) => (id === next.id ? next : undefined), "late", late)).toBe(KEYS.jellyfin)
    await admin.close()
    await coordinator.close()
  })

  test("a store with a memory keyring keeps working across its own re-encryption", async () => {
    const old = newSecret()
    const keys = memoryKeyring(old)
    const store = createSqliteStore({ path: ":memory:", keys })
    await store.migrate()
    await store.addUser("a", "client", KEYS.root, T0)
    const next = newSecret()
    keys.promote!(next)
    expect(await store.resealKeys(next)).toBe(1)
    expect((await store.getCredential("a"))?.key).toBe(KEYS.root)
    await store.close()
  })
})

describe("file modes", () => {
  let umask: number
  beforeEach(() => {
    umask = process.umask()
  })
  afterEach(() => {
    process.umask(umask)
  })
  const mode = (p: string) => statSync(p).mode & 0o777

  for (const mask of [0o000, 0o022]) {
    test(`database, -wal, -shm and secret are created 0600 under umask ${mask.toString(8).padStart(3, "0")}`, async () => {
      process.umask(mask)
      const path = tempPath()
      const store = createSqliteStore({ path })
      await store.migrate()
      await store.addUser("a", "client", KEYS.root, T0)
      for (const f of [path, `${path}-wal`, `${path}-shm`, `${path}.secret`]) expect([f, mode(f)]).toEqual([f, 0o600])
      await store.close()
    })
  }

  test("an existing database keeps its operator's group bits; -wal and -shm get no more than the owner's and group's", async () => {
    process.umask(0)
    const path = tempPath()
    const first = createSqliteStore({ path })
    await first.migrate()
    await first.close()
    chmodSync(path, 0o644)
    chmodSync(`${path}-wal`, 0o666)
    const store = createSqliteStore({ path })
    await store.migrate()
    expect(mode(path)).toBe(0o644)
    expect(mode(`${path}-wal`)).toBe(0o640)
    expect(mode(`${path}-shm`)).toBe(0o640)
    await store.close()
  })
})
