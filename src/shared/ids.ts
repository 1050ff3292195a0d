import { monotonicFactory } from "ulid"

let factory: (() => string) | undefined
/**
 * Monotonic ULIDs: strictly increasing within one process, even inside one millisecond. Made on first use,
 * so that a bundle that only checks ids (the proxy's) leaves the ulid package out.
 */
export const newId = (): string => (factory ??= monotonicFactory())()

export { isUlid } from "./ulid-format.ts"

/** Identity names: safe in URLs, log lines, MQTT topics and AMQP routing keys. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

export function isName(s: string): boolean {
  return NAME.test(s)
}

/** A one-time token (32 random bytes, base64url, 43 characters). */
export function newToken(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url")
}
