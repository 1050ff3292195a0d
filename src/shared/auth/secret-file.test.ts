import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { newSecret } from "./keyring.ts"
import {
  createFileExclusive,
  fileKeyring,
  nextPath,
  pendingNext,
  readSecret,
  writeFileAtomic,
  writeNext,
} from "./secret-file.ts"

let dir: string
let umask: number
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "dffmpeg-secret-"))
  umask = process.umask()
})
afterEach(() => {
  process.umask(umask)
  rmSync(dir, { recursive: true, force: true })
})

const mode = (p: string) => statSync(p).mode & 0o777

describe("the secret file", () => {
  for (const mask of [0o000, 0o022]) {
    test(`is created 0600 under umask ${mask.toString(8).padStart(3, "0")}, with 32 base64 bytes, and read back`, () => {
      process.umask(mask)
      const file = join(dir, "db.secret")
      const k = fileKeyring(file)
      expect(k.created).toBe(true)
      expect(mode(file)).toBe(0o600)
      expect(Buffer.from(readFileSync(file, "utf8").trim(), "base64").length).toBe(32)
      expect(readSecret(file).id).toBe(k.current().id)
      // No temp file is left beside it.
      expect(readdirSync(dir)).toEqual(["db.secret"])
      const again = fileKeyring(file)
      expect(again.created).toBe(false)
      expect(again.current().id).toBe(k.current().id)
    })

    test(`atomic writes are 0600 under umask ${mask.toString(8).padStart(3, "0")}`, () => {
      process.umask(mask)
      const file = join(dir, "f")
      writeFileAtomic(file, "one")
      expect(mode(file)).toBe(0o600)
      writeFileSync(join(dir, "g"), "x", { mode: 0o644 })
      writeFileAtomic(join(dir, "g"), "two")
      expect(mode(join(dir, "g"))).toBe(0o600)
      expect(createFileExclusive(join(dir, "h"), "x")).toBe(true)
      expect(mode(join(dir, "h"))).toBe(0o600)
    })
  }

  test("exclusive creation keeps an existing file", () => {
    const file = join(dir, "x")
    expect(createFileExclusive(file, "first")).toBe(true)
    expect(createFileExclusive(file, "second")).toBe(false)
    expect(readFileSync(file, "utf8")).toBe("first")
    expect(readdirSync(dir)).toEqual(["x"])
  })

  for (const m of [0o644, 0o640, 0o604, 0o660]) {
    test(`a secret file with mode ${m.toString(8)} is refused with the chmod that fixes it`, () => {
      const file = join(dir, "db.secret")
      fileKeyring(file)
      chmodSync(file, m)
      expect(() => fileKeyring(file)).toThrow(
        `secret_key_file ${file} is accessible by group or others (mode 0${m.toString(8)}); it must be private to the coordinator's user: chmod 600 ${file}`,
      )
    })
  }

  test("a file that is not 32 base64 bytes is refused", () => {
    for (const text of ["short\n", Buffer.alloc(31).toString("base64"), "not base64 !!"]) {
      const file = join(dir, "bad")
      writeFileSync(file, text, { mode: 0o600 })
      expect(() => readSecret(file)).toThrow("does not hold 32 base64-encoded bytes")
    }
    expect(() => readSecret(join(dir, "missing"))).toThrow("cannot be read: ENOENT")
  })

  test("a keyring finds a secret written by another process (rotation) by its id, and promotes it", () => {
    const file = join(dir, "db.secret")
    const k = fileKeyring(file)
    const old = k.current()
    const next = newSecret()
    expect(k.find(newSecret().id)).toBeUndefined()
    const pending = writeNext(file, next)
    expect(pending).toBe(nextPath(file, next.id))
    expect(mode(pending)).toBe(0o600)
    expect(pendingNext(file)).toEqual([pending])
    expect(k.find(next.id)?.bytes).toEqual(next.bytes)
    expect(k.current().id).toBe(old.id)
    k.promote(next)
    expect(k.current().id).toBe(next.id)
    expect(readSecret(file).id).toBe(next.id)
    expect(existsSync(pending)).toBe(false)
    expect(mode(file)).toBe(0o600)
    // A second keyring on the file, opened before the promotion, follows it.
    expect(fileKeyring(file).current().id).toBe(next.id)
  })
})

test("a secret file that cannot be created is a config error naming it", () => {
  const file = join(tmpdir(), `dffmpeg-no-such-dir-${process.pid}`, "x", "db.secret")
  expect(() => fileKeyring(file)).toThrow(`secret_key_file ${file} cannot be created: ENOENT`)
})
