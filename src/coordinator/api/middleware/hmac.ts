import { createMiddleware } from "hono/factory"
import {
  BODY_DIGEST_HEADER,
  FRAMES_DIGEST,
  FRAMES_DIGEST_MAX,
  HEADER,
  NONCE_GENERATION_MAX,
  NonceCache,
  WINDOW_SECONDS,
  decodeKey,
  framesBodyHash,
  sign,
  signaturesEqual,
} from "../../../shared/auth/hmac.ts"
import { AuthError, TooManyError } from "../../../shared/errors.ts"
import type { Role } from "../../../shared/protocol/schemas.ts"
import type { Logger } from "../../../shared/log.ts"
import type { Store } from "../../../store/index.ts"
import { readCapped, type BodyBudget, type BodyCap } from "../body.ts"

export interface Principal {
  name: string
  role: Role
}

export type AuthEnv = {
  /** `key`: the verified identity's key (to sign responses to it). */
  /**
   * `digests`: for a body signed by its frames' digests (BODY_DIGEST_HEADER), each frame's payload
   * SHA-256, in order, from the pass that checked the signature.
   */
  Variables: { principal: Principal; body: Uint8Array; path: string; key: Buffer; digests?: Uint8Array[] }
  /** `transport`: the broker a request came through (the tunnel); absent over HTTP. */
  Bindings: {
    server?: import("bun").Server<unknown>
    transport?: import("../../../shared/protocol/transports.ts").BrokerKind
  }
}

/**
 * Verifies the request signature (see shared/auth/hmac.ts) and sets `principal`, `key` and the raw
 * `body`. Everything that can be checked from the headers is checked first (signature headers,
 * timestamp window, nonce format, a known identity with a usable key, the declared length against the
 * route's cap); only then is the body read, as it streams, hashed on the way and never past `cap`.
 * Refusals are 401 with one reason (413 for a body over the cap); nothing is written before this
 * middleware passes, but its nonce (one insert that skips duplicates): the store remembers it for every
 * coordinator on the database, behind a per-process cache that refuses a replay to this one at once. Neither keys nor signatures are ever logged.
 */
export function hmacAuth(deps: {
  store: Store
  log: Logger
  now: () => number
  cap: (method: string, path: string) => BodyCap
  budget?: BodyBudget
  stripBase: (p: string) => string
  onRefuse?: (reason: string) => void
}) {
  const nonces = new NonceCache()
  return createMiddleware<AuthEnv>(async (c, next) => {
    const h = (name: string) => c.req.header(name)
    const client = h(HEADER.client)
    const timestamp = h(HEADER.timestamp)
    const nonce = h(HEADER.nonce)
    const signature = h(HEADER.signature)
    /** `kind` is the short label counted in metrics (unsigned, clock, nonce, identity, key, signature, replay). */
    const refuse = (reason: string, kind: string): never => {
      deps.onRefuse?.(kind)
      deps.log.warn("request refused", { reason, client: client ?? "-", method: c.req.method, path: c.get("path") })
      throw new AuthError(reason)
    }
    c.set("path", deps.stripBase(new URL(c.req.url).pathname))
    if (!client || !timestamp || !nonce || !signature)
      refuse("request is not signed (X-DFFmpeg-Client-Id, -Timestamp, -Nonce and -Signature are required)", "unsigned")
    if (!/^\d{1,12}$/.test(timestamp!)) refuse("X-DFFmpeg-Timestamp must be unix seconds", "clock")
    const now = deps.now()
    if (Math.abs(now / 1000 - Number(timestamp)) > WINDOW_SECONDS)
      refuse(`request timestamp is more than ${WINDOW_SECONDS} s away from the coordinator's clock`, "clock")
    if (nonce!.length < 16 || nonce!.length > 64) refuse("X-DFFmpeg-Nonce must be 16-64 characters", "nonce")
    const cred = await deps.store.getCredential(client!)
    if (!cred) refuse("unknown identity", "identity")
    let key: Buffer
    try {
      key = decodeKey(cred!.key)
    } catch {
      return refuse("identity has an unusable key; rotate it", "key")
    }
    const cap = deps.cap(c.req.method, c.get("path"))
    // Signed by its frames' digests, the body is hashed frame by frame once it is in; otherwise as it streams.
    const byFrames = h(BODY_DIGEST_HEADER) === FRAMES_DIGEST
    const hasher = new Bun.CryptoHasher("sha256")
    const body = await readCapped(c.req.raw, cap, byFrames ? undefined : (chunk) => hasher.update(chunk), deps.budget)
    const framed = byFrames ? framesBodyHash(body) : undefined
    if (byFrames && !framed)
      refuse(`invalid signature (the body is not whole frames, or more than ${FRAMES_DIGEST_MAX} of them)`, "signature")
    const url = new URL(c.req.url)
    const expected = sign(key, {
      method: c.req.method,
      path: c.get("path"),
      query: url.searchParams,
      client: client!,
      timestamp: timestamp!,
      nonce: nonce!,
      bodyHash: framed ? framed.hash : hasher.digest("hex"),
    })
    if (!signaturesEqual(expected, signature!)) refuse("invalid signature", "signature")
    // The memory first (a replay to this coordinator costs no round trip), then, on a database several
    // coordinators share, the database: a nonce another coordinator on it took is a replay here too.
    const seen = nonces.remember(client!, nonce!, now)
    if (seen === "replay") refuse("replayed request (nonce already used)", "replay")
    if (seen === "new" && deps.store.shared && !(await deps.store.rememberNonce(client!, nonce!, now)))
      refuse("replayed request (nonce already used, at another coordinator)", "replay")
    if (seen === "full") {
      deps.onRefuse?.("nonces")
      throw new TooManyError(
        `more signed requests than the replay cache holds (${NONCE_GENERATION_MAX} a minute); try again shortly`,
      )
    }
    c.set("principal", { name: cred!.name, role: cred!.role })
    c.set("key", key)
    c.set("body", body)
    if (framed) c.set("digests", framed.digests)
    await next()
  })
}

/** 403 unless the caller has one of `roles`. */
export function requireRole(p: Principal, ...roles: Role[]): void {
  if (!roles.includes(p.role))
    throw new AuthError(`this route is for ${roles.join(" or ")} identities; ${p.name} is a ${p.role}`, 403)
}
