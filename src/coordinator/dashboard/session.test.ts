import { describe, expect, test } from "bun:test"
import { generateKey, sha256Hex } from "../../shared/auth/hmac.ts"
import { memoryStore } from "../../../test/helpers/fixtures.ts"
import {
  createSignInLink,
  createSignInThrottle,
  dashboardBase,
  issueSession,
  signIn,
  signInUrl,
  useSignInLink,
  verifySession,
} from "./session.ts"

const T0 = 1_800_000_000_000

test("a session is name.expiry.mac, proves the admin until it expires, and only with the key that made it", async () => {
  const store = await memoryStore()
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
  const store = await memoryStore()
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

describe("sign-in throttle", () => {
  const make = (over: Partial<Parameters<typeof createSignInThrottle>[0]> = {}) => {
    const clock = { t: T0 }
    const throttle = createSignInThrottle({
      now: () => clock.t,
      freeAttempts: 3,
      baseMs: 1000,
      maxMs: 8000,
      forgetMs: 60_000,
      ...over,
    })
    return { clock, throttle }
  }

  test("free attempts, then a wait that doubles with each failure up to the cap", () => {
    const { clock, throttle } = make()
    const waits: number[] = []
    for (let i = 0; i < 7; i++) {
      expect(throttle.wait("10.0.0.1", "boss")).toBe(0)
      throttle.failed("10.0.0.1", "boss")
      waits.push(throttle.wait("10.0.0.1", "boss"))
      clock.t += waits.at(-1)!
    }
    expect(waits).toEqual([0, 0, 1000, 2000, 4000, 8000, 8000])
  })

  test("the address and the name are throttled independently", () => {
    const { throttle } = make()
    // One address trying many names.
    for (const n of ["a", "b", "c"]) throttle.failed("10.0.0.1", n)
    expect(throttle.wait("10.0.0.1", "d")).toBe(1000)
    expect(throttle.wait("10.0.0.2", "d")).toBe(0)
    // One name tried from many addresses.
    for (const ip of ["10.0.1.1", "10.0.1.2", "10.0.1.3"]) throttle.failed(ip, "boss")
    expect(throttle.wait("10.0.9.9", "boss")).toBe(1000)
    expect(throttle.wait("10.0.9.9", "other")).toBe(0)
  })

  test("an IPv4 address in any spelling, and a whole IPv6 /64, count as one address", () => {
    const { throttle } = make()
    for (const ip of ["10.0.0.1", "::ffff:10.0.0.1", "::ffff:a00:1"]) throttle.failed(ip, `n${ip}`)
    expect(throttle.wait("10.0.0.1", "x")).toBe(1000)
    for (const ip of ["2001:db8:0:1::a", "2001:db8:0:1::b", "2001:db8:0:1:ffff::1"]) throttle.failed(ip, `n${ip}`)
    expect(throttle.wait("2001:db8:0:1::99", "x")).toBe(1000)
    expect(throttle.wait("2001:db8:0:2::a", "x")).toBe(0)
  })

  test("a success clears that address and that name; a quiet key is forgotten", () => {
    const { clock, throttle } = make()
    for (let i = 0; i < 3; i++) throttle.failed("10.0.0.1", "boss")
    throttle.succeeded("10.0.0.1", "boss")
    expect(throttle.wait("10.0.0.1", "boss")).toBe(0)
    throttle.failed("10.0.0.1", "boss")
    expect(throttle.wait("10.0.0.1", "boss")).toBe(0)
    for (let i = 0; i < 3; i++) throttle.failed("10.0.0.2", "cam")
    expect(throttle.wait("10.0.0.2", "cam")).toBe(1000)
    clock.t += 60_001
    expect(throttle.wait("10.0.0.2", "cam")).toBe(0)
    throttle.failed("10.0.0.2", "cam")
    expect(throttle.wait("10.0.0.2", "cam")).toBe(0)
  })

  test("memory is bounded: the least recently failed keys are forgotten first", () => {
    const { throttle } = make({ maxEntries: 100 })
    for (let i = 0; i < 3; i++) throttle.failed("10.0.0.1", "boss")
    for (let i = 0; i < 10_000; i++) {
      throttle.failed(`10.1.${i >> 8}.${i & 255}`, `n${i}`)
      if (i % 40 === 0) throttle.failed("10.0.0.1", "boss")
      expect(throttle.size).toBeLessThanOrEqual(100)
    }
    // Kept because it keeps failing; the flood's first keys are gone.
    expect(throttle.wait("10.0.0.1", "boss")).toBeGreaterThan(0)
    for (let i = 0; i < 3; i++) throttle.failed("10.1.0.0", "n0")
    expect(throttle.wait("10.1.0.0", "x")).toBe(1000)
  })

  test("a flood of fresh names and addresses cannot evict a key that is still throttling", () => {
    const { clock, throttle } = make({ maxEntries: 10_000, maxMs: 15 * 60_000 })
    for (let i = 0; i < 8; i++) throttle.failed("10.0.0.1", "boss")
    const before = throttle.wait("10.9.9.9", "boss")
    expect(before).toBe(32_000)
    // The red team's run: 5,500 failures, each under a new name from a new address (11,000 keys).
    for (let i = 0; i < 5500; i++) {
      expect(throttle.wait(`10.1.${i >> 8}.${i & 255}`, `n${i}`)).toBe(0)
      throttle.failed(`10.1.${i >> 8}.${i & 255}`, `n${i}`)
      expect(throttle.size).toBeLessThanOrEqual(10_000)
    }
    clock.t += 1000
    expect(throttle.wait("10.9.9.9", "boss")).toBe(before - 1000)
    expect(throttle.wait("10.0.0.1", "anyone")).toBe(before - 1000)
  })

  test("a table full of keys still throttling throttles new keys until the first wait ends", () => {
    const { clock, throttle } = make({ maxEntries: 100 })
    // 50 addresses × 50 names, 3 failures each: 100 keys, all waiting 1 s; the first ones 1 ms earlier.
    for (let i = 0; i < 50; i++) {
      for (let f = 0; f < 3; f++) throttle.failed(`10.2.0.${i}`, `n${i}`)
      if (i === 0) clock.t += 1
    }
    expect(throttle.size).toBe(100)
    // Neither key is known and none can be forgotten: refused, for as long as the soonest wait lasts.
    expect(throttle.wait("10.3.0.1", "boss")).toBe(999)
    // A failure that slipped past `wait` (concurrent sign-ins) is not let in by forgetting an active key.
    throttle.failed("10.3.0.1", "boss")
    expect(throttle.size).toBe(100)
    expect(throttle.wait("10.2.0.7", "n7")).toBe(1000)
    // Once waits end, their keys make room again.
    clock.t += 999
    expect(throttle.wait("10.3.0.1", "boss")).toBe(0)
    throttle.failed("10.3.0.1", "boss")
    expect(throttle.size).toBeLessThanOrEqual(100)
    expect(throttle.wait("10.2.0.7", "n7")).toBe(1)
  })
})

describe("sign-in links", () => {
  test("the base: dashboard_url as given (with its slash), else the address reached plus path_base", () => {
    expect(dashboardBase({ dashboard_url: "https://ff.example.org/x", path_base: "/y" }, "http://a:1")).toBe(
      "https://ff.example.org/x/",
    )
    expect(dashboardBase({ path_base: "" }, "http://127.0.0.1:8000")).toBe("http://127.0.0.1:8000/")
    expect(dashboardBase({ path_base: "/dffmpeg/" }, "http://h:8000/")).toBe("http://h:8000/dffmpeg/")
    expect(signInUrl("http://h/", "T")).toBe("http://h/dashboard/link?token=T")
  })

  test("a token is 256 random bits; the store keeps only its SHA-256; it is taken once", async () => {
    const store = await memoryStore()
    try {
      await store.addUser("boss", "admin", generateKey(), 0)
      await store.addUser("app", "client", generateKey(), 0)
      const t = await createSignInLink(store, "boss", 60_000, 1000)
      expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(Buffer.from(t, "base64url").length).toBe(32)
      expect(await createSignInLink(store, "boss", 60_000, 1000)).not.toBe(t)
      expect(await useSignInLink(store, t.slice(0, 42), 1001)).toBeUndefined()
      expect((await useSignInLink(store, t, 1001))?.name).toBe("boss")
      expect(await useSignInLink(store, t, 1002)).toBeUndefined()
      // A link for an identity that is not an admin signs nobody in.
      const c = await createSignInLink(store, "app", 60_000, 1000)
      expect(await useSignInLink(store, c, 1001)).toBeUndefined()
      // The hash is what is stored: taking it by the hash works (once), by the token does not.
      const d = await createSignInLink(store, "boss", 60_000, 1000)
      expect(await store.takeSignInLink(d, 1001)).toBeUndefined()
      expect(await store.takeSignInLink(sha256Hex(d), 1001)).toBe("boss")
    } finally {
      await store.close()
    }
  })
})
