import { MAX_FORWARDED_FOR } from "../../src/coordinator/api/middleware/ip.ts"

/** Every malformed hop a trusted proxy might pass on: each must make the peer unknown. */
export const MALFORMED_FORWARDED_FOR: [string, string][] = [
  ["IPv4 with a port", "8.8.8.8:4711"],
  ["bracketed IPv6 with a port", "[2001:db8::1]:443"],
  ["bracketed IPv6 without a port", "[2001:db8::1]"],
  ["the word unknown", "unknown"],
  ["garbage", "garbage"],
  ["an empty header", ""],
  ["only blanks", "   "],
  ["an empty element between commas", "10.0.0.5,,127.0.0.1"],
  ["a trailing empty element", "10.0.0.5,"],
  ["an IPv6 zone id", "fe80::1%eth0"],
  ["a zero-padded IPv4 octet", "010.1.1.1"],
  ["a hex IPv4 octet", "0x7f.0.0.1"],
  ["a short IPv4 form", "127.1"],
  ["an IPv4 address as one number", "2130706433"],
  ["an octet over 255", "10.0.0.256"],
  ["blanks inside a hop", "10.0.0 .5"],
  ["a hostname", "localhost"],
  ["an RFC 7239 obfuscated node", "_hidden"],
  ["a mapped address with a port", "::ffff:10.0.0.5:80"],
  ["a control character", "10.0.0.5\u0000"],
  ["non-ASCII digits", "１０.0.0.5"],
  ["an overlong header", `${"10.0.0.5, ".repeat(Math.ceil(MAX_FORWARDED_FOR / 10))}10.0.0.5`],
]
