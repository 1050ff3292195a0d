import { expect, test } from "bun:test"
import { generateKey } from "../../shared/auth/hmac.ts"
import { createSqliteStore } from "../../store/sqlite/index.ts"
import { issueSession, signIn, verifySession } from "./session.ts"

const T0 = 1_800_000_000_000

test("a session is name.expiry.mac, proves the admin until it expires, and only with the key that made it", async () => {
  const store = createSqliteStore({ path: ":memory:" })
  await store.migrate()
  const key = generateKey()
  await store.addUser("boss", "admin", key, T0)
  const token = issueSession("boss", key, T0 + 3600_000)!
  expect(token).toMatch(/^boss\.1800003600\.[A-Za-z0-9_-]{43}$/)
  expect(await verifySession(store, token, T0)).toEqual({ name: "boss", expiresAt: T0 + 3600_000 })
  expect(await verifySession(store, token, T0 + 3600_000)).toBeUndefined()
  expect(await verifySession(store, issueSession("boss", generateKey(), T0 + 3600_000)!, T0)).toBeUndefined()
  expect(issueSession("boss", "not a key", T0)).toBeUndefined()
  await store.close()
})

test("sign-in takes an admin's exact key (surrounding blanks aside)", async () => {
  const store = createSqliteStore({ path: ":memory:" })
  await store.migrate()
  const key = generateKey()
  await store.addUser("boss", "admin", key, T0)
  await store.addUser("cam", "worker", key, T0)
  expect((await signIn(store, "boss", `  ${key}\n`)).ok).toBe(true)
  expect(await signIn(store, "boss", key.slice(0, -2))).toEqual({ ok: false, reason: "refused" })
  expect(await signIn(store, "boss", "")).toEqual({ ok: false, reason: "refused" })
  expect(await signIn(store, "../boss", key)).toEqual({ ok: false, reason: "refused" })
  expect(await signIn(store, "cam", key)).toEqual({ ok: false, reason: "not-admin", role: "worker" })
  await store.close()
})
