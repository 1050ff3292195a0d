import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createFileExclusive, fileKeyring, writeFileAtomic } from "./auth/secret-file.ts"
import { accessProblem, keyFileMode, ownerFor } from "./owner.ts"
import { createSqliteStore } from "../store/sqlite/index.ts"

// Ids with no passwd entry: a service user as far as file ownership goes. The tests run as root (as CI does),
// which is the case the rule is for; `asUser` runs code as the service user.
const SVC = 4242
const GRP = 4243

let dir: string
beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error("these tests create files for another user and must run as root")
  dir = mkdtempSync(join(tmpdir(), "dffmpeg-owner-"))
  chmodSync(dir, 0o755)
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let n = 0
/** A new folder owned by `uid:gid` with `mode`. */
function folder(uid: number, gid: number, mode: number): string {
  const d = join(dir, `d${++n}`)
  mkdirSync(d)
  chownSync(d, uid, gid)
  chmodSync(d, mode)
  return d
}

const own = (p: string) => {
  const st = statSync(p)
  return { uid: st.uid, gid: st.gid, mode: st.mode & 0o777 }
}

/** Runs `code` (an async function body; `return` a JSON value) as uid/gid SVC, with this folder's modules. */
function asUser(code: string): unknown {
  const script = join(dir, `as-user-${++n}.ts`)
  writeFileSync(
    script,
    `import * as owner from ${JSON.stringify(join(import.meta.dir, "owner.ts"))}
import * as sqlite from ${JSON.stringify(join(import.meta.dir, "../store/sqlite/index.ts"))}
import * as secret from ${JSON.stringify(join(import.meta.dir, "auth/secret-file.ts"))}
const run = async () => { ${code} }
run().then((v) => console.log(JSON.stringify(v ?? null)), (e) => console.log(JSON.stringify({ thrown: e.constructor.name, message: e.message })))
`,
  )
  chmodSync(script, 0o644)
  const r = Bun.spawnSync(["setpriv", `--reuid=${SVC}`, `--regid=${SVC}`, "--clear-groups", process.execPath, script], {
    env: { ...process.env, HOME: dir },
  })
  if (r.exitCode !== 0) throw new Error(`as uid ${SVC}: exit ${r.exitCode}: ${r.stderr.toString()}`)
  return JSON.parse(r.stdout.toString().trim().split("\n").pop() ?? "null")
}

describe("files created as root take their folder's owner", () => {
  test("a new secret or key file gets the folder's owner and group, mode as asked", () => {
    const d = folder(SVC, GRP, 0o750)
    expect(ownerFor(join(d, "x"))).toEqual({ uid: SVC, gid: GRP })
    expect(createFileExclusive(join(d, "a.secret"), "s\n")).toBe(true)
    expect(own(join(d, "a.secret"))).toEqual({ uid: SVC, gid: GRP, mode: 0o600 })
    writeFileAtomic(join(d, "k.key"), "k\n", 0o640)
    expect(own(join(d, "k.key"))).toEqual({ uid: SVC, gid: GRP, mode: 0o640 })
  })

  test("a replaced file keeps the owner and group of the one it replaces", () => {
    const d = folder(SVC, GRP, 0o750)
    const f = join(d, "jellyfin.key")
    writeFileSync(f, "old\n")
    chownSync(f, 0, 4300)
    writeFileAtomic(f, "new\n", keyFileMode(f))
    // It was readable by its group (0644): the new key is too (0640), never by others.
    expect(own(f)).toEqual({ uid: 0, gid: 4300, mode: 0o640 })
  })

  test("in a root-owned folder files stay root's", () => {
    const d = folder(0, 0, 0o755)
    expect(ownerFor(join(d, "x"))).toBeUndefined()
    writeFileAtomic(join(d, "k.key"), "k\n")
    expect(own(join(d, "k.key"))).toEqual({ uid: 0, gid: 0, mode: 0o600 })
  })

  test("the SQLite database, its -wal and -shm and its secret belong to the folder's owner", async () => {
    const d = folder(SVC, GRP, 0o750)
    const db = join(d, "dffmpeg.db")
    const store = createSqliteStore({ path: db })
    await store.migrate()
    for (const f of [db, `${db}-wal`, `${db}-shm`, `${db}.secret`]) {
      expect(existsSync(f)).toBe(true)
      expect({ f, ...own(f) }).toEqual({ f, uid: SVC, gid: GRP, mode: 0o600 })
    }
    await store.close()
  })

  test("the service user then opens what root made", async () => {
    const d = folder(SVC, SVC, 0o750)
    const db = join(d, "dffmpeg.db")
    const store = createSqliteStore({ path: db })
    await store.migrate()
    await store.addUser("w1", "worker", "k".repeat(44), Date.now())
    await store.close()
    const users = asUser(`const s = sqlite.createSqliteStore({ path: ${JSON.stringify(db)} })
      await s.migrate(); const u = await s.listUsers(); await s.close(); return u.map((x) => x.name)`)
    expect(users).toEqual(["w1"])
  })
})

describe("key file modes", () => {
  test("0640 in a folder its group can list and others cannot, 0600 elsewhere; a replaced key keeps its group bits", () => {
    expect(keyFileMode(join(folder(0, GRP, 0o750), "a.key"))).toBe(0o640)
    expect(keyFileMode(join(folder(0, GRP, 0o751), "a.key"))).toBe(0o640)
    expect(keyFileMode(join(folder(0, 0, 0o755), "a.key"))).toBe(0o600)
    expect(keyFileMode(join(folder(0, 0, 0o700), "a.key"))).toBe(0o600)
    expect(keyFileMode(join(folder(0, 0, 0o711), "a.key"))).toBe(0o600)
    const d = folder(0, 0, 0o755)
    writeFileSync(join(d, "g.key"), "x")
    chmodSync(join(d, "g.key"), 0o640)
    expect(keyFileMode(join(d, "g.key"))).toBe(0o640)
    chmodSync(join(d, "g.key"), 0o600)
    expect(keyFileMode(join(d, "g.key"))).toBe(0o600)
  })
})

describe("a file the service cannot use is one line with the fix", () => {
  test("nothing to say when it can", () => {
    const d = folder(SVC, SVC, 0o750)
    writeFileSync(join(d, "ok.db"), "")
    chownSync(join(d, "ok.db"), SVC, SVC)
    expect(
      asUser(`return [owner.accessProblem(${JSON.stringify(join(d, "ok.db"))}, "database", "write"),
        owner.accessProblem(${JSON.stringify(join(d, "new.db"))}, "database", "write")]`),
    ).toEqual([null, null])
  })

  test("a root-owned database: chown it", () => {
    const d = folder(SVC, SVC, 0o750)
    const db = join(d, "dffmpeg.db")
    writeFileSync(db, "")
    chmodSync(db, 0o644)
    const msg = asUser(`return owner.accessProblem(${JSON.stringify(db)}, "database", "write")`)
    expect(msg).toBe(
      `database ${db} cannot be written by user uid ${SVC}: it belongs to root:root (mode 0644); fix: chown ${SVC}:${SVC} ${db}`,
    )
  })

  test("a database in a folder it cannot write: chown the folder", () => {
    const d = folder(0, 0, 0o755)
    const db = join(d, "dffmpeg.db")
    writeFileSync(db, "")
    chownSync(db, SVC, SVC)
    expect(asUser(`return owner.accessProblem(${JSON.stringify(db)}, "database", "write")`)).toContain(
      `is in folder ${d}, which user uid ${SVC} cannot write (it belongs to root:root (mode 0755); SQLite creates its -wal and -shm files there); fix: chown ${SVC}:${SVC} ${d}`,
    )
    expect(asUser(`return owner.accessProblem(${JSON.stringify(join(d, "new.db"))}, "database", "write")`)).toBe(
      `database ${join(d, "new.db")} cannot be created by user uid ${SVC}: folder ${d} belongs to root:root (mode 0755); fix: chown ${SVC}:${SVC} ${d}`,
    )
  })

  test("a key it cannot read: chgrp; a folder it cannot enter: named", () => {
    const d = folder(0, 0, 0o755)
    const key = join(d, "w1.key")
    writeFileSync(key, "k")
    chmodSync(key, 0o600)
    expect(asUser(`return owner.accessProblem(${JSON.stringify(key)}, "hmac_key_file", "read")`)).toBe(
      `hmac_key_file ${key} cannot be read by user uid ${SVC}: it belongs to root:root (mode 0600); fix: chgrp ${SVC} ${key} && chmod 640 ${key}`,
    )
    const closed = folder(0, 0, 0o700)
    const inside = join(closed, "keys", "w1.key")
    expect(asUser(`return owner.accessProblem(${JSON.stringify(inside)}, "hmac_key_file", "read")`)).toBe(
      `hmac_key_file ${inside} cannot be reached by user uid ${SVC}: folder ${closed} belongs to root:root (mode 0700) and does not let it in; fix: chgrp ${SVC} ${closed} && chmod g+rx ${closed}`,
    )
  })

  test("opening a root-owned database or secret throws a ConfigError with that line, never SQLite's error", () => {
    const d = folder(SVC, SVC, 0o750)
    const db = join(d, "dffmpeg.db")
    createSqliteStore({ path: db }).close()
    chownSync(db, 0, 0)
    chmodSync(db, 0o644)
    expect(asUser(`sqlite.createSqliteStore({ path: ${JSON.stringify(db)} })`)).toEqual({
      thrown: "ConfigError",
      message: `database ${db} cannot be written by user uid ${SVC}: it belongs to root:root (mode 0644); fix: chown ${SVC}:${SVC} ${db}`,
    })
    chownSync(db, SVC, SVC)
    chownSync(`${db}.secret`, 0, 0)
    expect(asUser(`secret.fileKeyring(${JSON.stringify(`${db}.secret`)})`)).toEqual({
      thrown: "ConfigError",
      message: `secret_key_file ${db}.secret cannot be read by user uid ${SVC}: it belongs to root:root (mode 0600); fix: chown ${SVC}:${SVC} ${db}.secret`,
    })
    expect(accessProblem(`${db}.secret`, "secret_key_file", "private")).toBeUndefined()
    expect(fileKeyring(`${db}.secret`).created).toBe(false)
  })
})
