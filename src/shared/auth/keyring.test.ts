import { describe, expect, test } from "bun:test"
import { generateKey } from "./hmac.ts"
import { KeyError, isSealed, memoryKeyring, newSecret, open, seal, sealedWith, toSecret } from "./keyring.ts"

const a = newSecret()
const b = newSecret()
const find =
  (...s: (typeof a)[]) =>
  (id: string) =>
    s.find((x) => x.id === id)
const key = generateKey()

function problem(fn: () => unknown): KeyError {
  try {
    fn()
  } catch (err) {
    if (err instanceof KeyError) return err
    throw err
  }
  throw new Error("expected a KeyError")
}

/** `stored` with one byte of its ciphertext+tag part (index `i` of the decoded bytes) flipped. */
function flip(stored: string, part: 2 | 3, i: number): string {
  const parts = stored.split(":")
  const raw = Buffer.from(parts[part], "base64")
  raw[i] ^= 1
  parts[part] = raw.toString("base64")
  return parts.join(":")
}

describe("sealing identity keys", () => {
  test("round trip: the key comes back exactly, and the stored text holds neither the key nor its bytes", () => {
    const stored = seal(a, "alice", key)
    expect(stored).toMatch(/^v1:[A-Za-z0-9_-]{8}:[A-Za-z0-9+/]{16}:[A-Za-z0-9+/]+={0,2}$/)
    expect(stored).not.toContain(key)
    expect(stored).not.toContain(Buffer.from(key, "base64").toString("base64").slice(0, 12))
    expect(sealedWith(stored)).toBe(a.id)
    expect(isSealed(stored)).toBe(true)
    expect(open(find(a), "alice", stored)).toBe(key)
  })

  test("every sealing draws a new IV: the same key twice gives two different texts", () => {
    const x = seal(a, "alice", key)
    const y = seal(a, "alice", key)
    expect(x.split(":")[2]).not.toBe(y.split(":")[2])
    expect(x).not.toBe(y)
  })

  test("the secret id is stable for the same bytes and differs between secrets", () => {
    expect(toSecret(a.bytes).id).toBe(a.id)
    expect(a.id).not.toBe(b.id)
    expect(() => toSecret(new Uint8Array(16))).toThrow("a secret is 32 bytes, not 16")
  })

  test("a wrong secret is reported as such, naming the secret the row was sealed under", () => {
    const e = problem(() => open(find(b), "alice", seal(a, "alice", key)))
    expect(e.problem).toBe("secret")
    expect(e.secretId).toBe(a.id)
    expect(e.message).toContain(`encrypted under secret ${a.id}`)
  })

  test("a secret with the row's id but other bytes does not open it", () => {
    const forged = { id: a.id, bytes: b.bytes }
    expect(problem(() => open(find(forged), "alice", seal(a, "alice", key))).problem).toBe("tampered")
  })

  test("a flipped bit in the ciphertext, the tag or the IV is refused as tampered", () => {
    const stored = seal(a, "alice", key)
    const len = Buffer.from(stored.split(":")[3], "base64").length
    for (const bad of [flip(stored, 3, 0), flip(stored, 3, len - 1), flip(stored, 2, 5)]) {
      const e = problem(() => open(find(a), "alice", bad))
      expect(e.problem).toBe("tampered")
      expect(e.message).toContain("altered or copied from another identity")
    }
  })

  test("the name is authenticated: a row copied to another identity does not open", () => {
    const stored = seal(a, "alice", key)
    expect(problem(() => open(find(a), "mallory", stored)).problem).toBe("tampered")
    expect(problem(() => open(find(a), "Alice", stored)).problem).toBe("tampered")
  })

  test("a key in clear and a malformed row are refused, each with its own reason", () => {
    expect(isSealed(key)).toBe(false)
    expect(sealedWith(key)).toBeUndefined()
    expect(problem(() => open(find(a), "alice", key)).problem).toBe("clear")
    for (const bad of [
      "v1:",
      "v1:abc:def:ghi",
      `v1:${a.id}:AAAAAAAAAAAAAAAA:AAAA`,
      `v2:${a.id}:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAA`,
    ]) {
      expect(["format", "clear"]).toContain(problem(() => open(find(a), "alice", bad)).problem)
    }
  })

  test("a memory keyring seals with its first secret, finds the others, and promotes a new one", () => {
    const k = memoryKeyring(a, b)
    expect(k.current()).toBe(a)
    expect(k.find(b.id)).toBe(b)
    expect(k.find("nonexist")).toBeUndefined()
    const c = newSecret()
    k.promote!(c)
    expect(k.current()).toBe(c)
    expect(memoryKeyring().current().bytes.length).toBe(32)
  })
})
