import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { Database as Sqlite } from "bun:sqlite"
import { chmodSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { BIN } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { signedFetch } from "../helpers/signed.ts"

/**
 * Keys at rest against the compiled binary: the files a coordinator creates are private whatever the
 * umask (this file runs every process under umask 000), the users table holds no key in clear, the
 * secret rotates while the coordinator serves, and a readable secret file stops it from starting.
 */
let c: Cluster
let umask: number
let db: string
let secret: string

beforeAll(async () => {
  umask = process.umask(0)
  c = await Cluster.start({ workers: 0 })
  db = join(c.dir, "coordinator.db")
  secret = `${db}.secret`
})
afterAll(async () => {
  await c?.stop()
  process.umask(umask)
})

const mode = (p: string) => statSync(p).mode & 0o777
const users = () => {
  const r = new Sqlite(db, { readonly: true })
  try {
    return r.query("SELECT name, key FROM users ORDER BY name").all() as { name: string; key: string }[]
  } finally {
    r.close()
  }
}
const jobs = (name: string) =>
  signedFetch(c.url, { client: name, key: c.key(name), method: "GET", path: "/api/v1/jobs" })

describe("keys at rest", () => {
  test("database, -wal, -shm and secret are 0600 under umask 000", () => {
    for (const f of [db, `${db}-wal`, `${db}-shm`, secret]) expect([f, mode(f)]).toEqual([f, 0o600])
  })

  test("a SQLite reader of the users table sees no key in clear", async () => {
    await c.addUser("admin1", "admin")
    const rows = users()
    expect(rows.map((r) => r.name)).toEqual(["admin1", "client1"])
    for (const r of rows) {
      expect(r.key).toMatch(/^v1:/)
      for (const name of ["admin1", "client1"]) expect(r.key).not.toContain(c.key(name))
    }
    // Nor does any byte of the files (free space, WAL).
    for (const f of [db, `${db}-wal`]) {
      const bytes = readFileSync(f)
      for (const name of ["admin1", "client1"]) expect(bytes.includes(c.key(name))).toBe(false)
    }
    expect((await jobs("client1")).status).toBe(200)
  })

  test("rotate-secret while the coordinator runs: a new secret file, and every identity is still served", async () => {
    const before = readFileSync(secret, "utf8")
    const rowsBefore = users()
    const r = await c.admin(["security", "rotate-secret", "--json"])
    expect([r.code, r.err]).toEqual([0, ""])
    const out = JSON.parse(r.out) as { file: string; previous: string; secret: string; keys: number }
    expect(out).toMatchObject({ file: secret, keys: 2 })
    expect(readFileSync(secret, "utf8")).not.toBe(before)
    expect(mode(secret)).toBe(0o600)
    const after = users()
    for (const [i, row] of after.entries()) {
      expect(row.key).not.toBe(rowsBefore[i].key)
      expect(row.key.split(":")[1]).toBe(out.secret)
    }
    // The running coordinator follows the rotation, for old identities and one added after it.
    expect((await jobs("client1")).status).toBe(200)
    await c.addUser("client2", "client")
    expect((await jobs("client2")).status).toBe(200)
  })

  test("a tampered row gets 401 (never a 500) and the coordinator log says what is wrong", async () => {
    const w = new Sqlite(db)
    const row = users().find((u) => u.name === "client1")!.key
    w.query("UPDATE users SET key = ? WHERE name = 'client2'").run(row)
    w.close()
    const res = await jobs("client2")
    expect(res.status).toBe(401)
    await c.coordinator.waitForLine(
      /stored key unusable: identity client2 refused: .*altered or copied from another identity.*rotate-key client2/,
    )
    expect((await jobs("client1")).status).toBe(200)
  })

  test("a coordinator refuses to start with a secret file others can read, with the chmod that fixes it", async () => {
    await c.coordinator.stop("SIGTERM")
    chmodSync(secret, 0o644)
    const r = await c.exec([BIN, "coordinator", "--config", c.coordinatorConfig], { timeoutMs: 30_000 })
    expect(r.code).toBe(3)
    // One error line (after the usual "config loaded" info), and the coordinator never listened.
    expect(r.err.split("\n").filter((l) => l.startsWith("dffmpeg:"))).toEqual([
      `dffmpeg: secret_key_file ${secret} is accessible by group or others (mode 0644); it must be private to the coordinator's user: chmod 600 ${secret}`,
    ])
    expect(r.err).not.toContain("listening on")
    chmodSync(secret, 0o600)
    await c.startCoordinator()
    expect((await jobs("client1")).status).toBe(200)
  })

  test("a world-readable database is served with a warning naming the fix", async () => {
    await c.coordinator.stop("SIGTERM")
    chmodSync(db, 0o644)
    await c.startCoordinator()
    await c.coordinator.waitForLine(
      new RegExp(`database ${db} is readable by every user \\(mode 0644\\); make it private: chmod 600 ${db}`),
    )
    // Its sidecars never get the others' bit.
    for (const f of [`${db}-wal`, `${db}-shm`]) expect([f, mode(f)]).toEqual([f, 0o640])
    expect((await jobs("client1")).status).toBe(200)
  })
})
