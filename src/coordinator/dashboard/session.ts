import { decodeKey, sha256Hex, signaturesEqual } from "../../shared/auth/hmac.ts"
import { isName } from "../../shared/ids.ts"
import { addressKey } from "../../shared/net/cidr.ts"
import type { User } from "../../shared/protocol/schemas.ts"
import type { Store } from "../../store/index.ts"

/**
 * Dashboard sign-in sessions without server-side state: the cookie is `name.expiry.mac` where `mac` is
 * HMAC-SHA256(the user's own key, "name|expiry"). Every coordinator sharing the database can check it,
 * and it dies with the key (rotation) or the user (removal). The message cannot collide with a signed
 * API request, whose canonical string starts with the scheme tag and holds newlines.
 */
export const SESSION_COOKIE = "dffmpeg_session"

export interface Session {
  name: string
  /** When the session ends (ms). */
  expiresAt: number
}

const TOKEN = /^([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/

function mac(key: string, name: string, expiry: number): string | undefined {
  let raw: Buffer
  try {
    raw = decodeKey(key)
  } catch {
    // A user with an unusable key cannot sign in, exactly as with the signed API.
    return undefined
  }
  return new Bun.CryptoHasher("sha256", raw).update(`${name}|${expiry}`).digest("base64url")
}

/** The cookie value for `name` until `expiresAt` (ms, rounded down to whole seconds). */
export function issueSession(name: string, key: string, expiresAt: number): string | undefined {
  const expiry = Math.floor(expiresAt / 1000)
  const sig = mac(key, name, expiry)
  return sig && `${name}.${expiry}.${sig}`
}

/** The session a cookie proves: an admin whose current key made it, not yet expired. */
export async function verifySession(store: Store, token: string, now: number): Promise<Session | undefined> {
  const m = TOKEN.exec(token)
  if (!m) return undefined
  const [, name, expiry, sig] = m
  const expiresAt = Number(expiry) * 1000
  if (expiresAt <= now) return undefined
  const cred = await store.getCredential(name)
  if (!cred || cred.role !== "admin") return undefined
  const expected = mac(cred.key, name, Number(expiry))
  if (!expected || !signaturesEqual(expected, sig)) return undefined
  return { name, expiresAt }
}

export type SignIn =
  | { ok: true; user: User & { key: string } }
  | { ok: false; reason: "refused" | "not-admin"; role?: User["role"] }

/**
 * Checks a name and key typed into the sign-in form. The keys are compared through their SHA-256
 * digests in constant time, so neither the key's length nor a matching prefix shows in the timing.
 */
export async function signIn(store: Store, name: string, key: string): Promise<SignIn> {
  const cred = isName(name) ? await store.getCredential(name) : undefined
  const typed = sha256Hex(key.trim())
  if (!cred || !signaturesEqual(sha256Hex(cred.key.trim()), typed)) return { ok: false, reason: "refused" }
  if (cred.role !== "admin") return { ok: false, reason: "not-admin", role: cred.role }
  return { ok: true, user: cred }
}

export interface ThrottleOptions {
  now: () => number
  /** Failures of one address or name before it must wait. */
  freeAttempts?: number
  /** First wait; each further failure doubles it, up to `maxMs`. */
  baseMs?: number
  maxMs?: number
  /** A key whose last failure is older than this starts afresh. */
  forgetMs?: number
  /** Most addresses and names remembered; only keys that make nobody wait are forgotten to make room. */
  maxEntries?: number
}

export interface SignInThrottle {
  /** Milliseconds `ip` and `name` must still wait before a sign-in is checked (the longer of the two); 0: go ahead. */
  wait(ip: string, name: string): number
  failed(ip: string, name: string): void
  /** A success clears both the address and the name. */
  succeeded(ip: string, name: string): void
  /** Keys remembered (addresses plus names). */
  readonly size: number
}

interface Strikes {
  failures: number
  last: number
  until: number
}

/**
 * Exponential backoff for dashboard sign-in, per client address (an IPv6 client by its /64) and per
 * user name independently, so
 * neither many names from one address nor one name from many addresses can be guessed quickly. After
 * `freeAttempts` failures a key waits `baseMs`, then twice as long after each further failure (capped
 * at `maxMs`). Memory is bounded by `maxEntries` (a Map in least-recently-failed order); to make room only
 * a key that is not making anyone wait is forgotten (least recently failed first), never one still
 * throttling: otherwise a flood of failures under fresh names and addresses would wipe the throttle of
 * the name under attack. When every remembered key is still throttling, a new key is throttled too
 * (it waits until the first wait ends) rather than let in unremembered.
 */
export function createSignInThrottle(o: ThrottleOptions): SignInThrottle {
  const free = o.freeAttempts ?? 5
  const base = o.baseMs ?? 1000
  const max = o.maxMs ?? 15 * 60_000
  const forget = o.forgetMs ?? 60 * 60_000
  const cap = o.maxEntries ?? 10_000
  const keys = new Map<string, Strikes>()
  // Every spelling of one IPv4 address, and a whole IPv6 /64, is one key.
  const keysOf = (ip: string, name: string) => [`ip ${addressKey(ip) ?? ip}`, `name ${name}`]
  const live = (k: string, now: number) => {
    const s = keys.get(k)
    if (s && now - s.last > forget) keys.delete(k)
    return keys.get(k)
  }
  /**
   * Forgets keys that make nobody wait until `n` more fit; 0 when they do, else how long until the
   * first remembered wait ends (the table is full of keys that are still throttling).
   */
  const makeRoom = (n: number, now: number): number => {
    if (keys.size + n <= cap) return 0
    let soonest = Infinity
    for (const [k, s] of keys) {
      if (s.until <= now || now - s.last > forget) keys.delete(k)
      else soonest = Math.min(soonest, s.until)
      if (keys.size + n <= cap) return 0
    }
    return Math.max(1, soonest - now)
  }
  return {
    wait(ip, name) {
      const now = o.now()
      const ks = keysOf(ip, name)
      const known = ks.map((k) => live(k, now))
      const full = makeRoom(known.filter((s) => !s).length, now)
      return Math.max(full, ...known.map((s) => (s?.until ?? 0) - now))
    },
    failed(ip, name) {
      const now = o.now()
      for (const k of keysOf(ip, name)) {
        let s = live(k, now)
        // Filled up since `wait` (concurrent sign-ins): a key that cannot be remembered is not added.
        if (!s && makeRoom(1, now) > 0) continue
        s ??= { failures: 0, last: now, until: 0 }
        s.failures++
        s.last = now
        if (s.failures >= free) s.until = now + Math.min(max, base * 2 ** Math.min(s.failures - free, 40))
        // Re-inserted at the end: the Map's first key is the least recently failed.
        keys.delete(k)
        keys.set(k, s)
      }
    },
    succeeded(ip, name) {
      for (const k of keysOf(ip, name)) keys.delete(k)
    },
    get size() {
      return keys.size
    },
  }
}

/** Default life of a sign-in link (`dffmpeg admin dashboard-link --ttl`), and the longest allowed. */
export const LINK_TTL_MS = 10 * 60_000
export const MAX_LINK_TTL_MS = 24 * 3600_000

/** The link's token: 32 random bytes (256 bits), base64url. */
const LINK_TOKEN = /^[A-Za-z0-9_-]{43}$/

/**
 * A one-time sign-in link's token for `user`: random, and stored only as its SHA-256 (so a copy of the
 * database signs nobody in, and every coordinator on the database takes it). Valid `ttlMs`.
 */
export async function createSignInLink(store: Store, user: string, ttlMs: number, now: number): Promise<string> {
  const token = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url")
  await store.addSignInLink(sha256Hex(token), user, now + ttlMs, now)
  return token
}

/**
 * The admin a link's token signs in, using it up; undefined when it is malformed, unknown, already
 * used or expired, or its user is no longer an admin (all the same to the browser: ask for a new link).
 */
export async function useSignInLink(
  store: Store,
  token: string,
  now: number,
): Promise<(User & { key: string }) | undefined> {
  if (!LINK_TOKEN.test(token)) return undefined
  const name = await store.takeSignInLink(sha256Hex(token), now)
  if (!name) return undefined
  const cred = await store.getCredential(name)
  return cred?.role === "admin" ? cred : undefined
}

/** Where the dashboard is: `dashboard_url`, else `origin` (the address a request reached) with `path_base`. */
export function dashboardBase(config: { dashboard_url?: string; path_base: string }, origin: string): string {
  if (config.dashboard_url)
    return config.dashboard_url.endsWith("/") ? config.dashboard_url : `${config.dashboard_url}/`
  const base = config.path_base.replace(/^\/+|\/+$/g, "")
  return `${origin.replace(/\/+$/, "")}/${base ? `${base}/` : ""}`
}

/** The URL a sign-in link's token is used at: `dashboard/link?token=…` under the dashboard's base. */
export const signInUrl = (base: string, token: string) => `${base}dashboard/link?token=${token}`
