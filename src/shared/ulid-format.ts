const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/

/**
 * Whether `s` is a ULID (26 Crockford base32 characters). Apart from ids.ts, which makes them with the
 * ulid package: modules the proxy loads (shared/protocol/schemas.ts) check ids without bundling it.
 */
export function isUlid(s: string): boolean {
  return ULID.test(s)
}
