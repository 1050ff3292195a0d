/**
 * IP addresses and CIDR ranges for allow-lists. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a
 * dual-stack socket reports for an IPv4 peer) match IPv4 ranges, so a list never silently fails.
 */
export interface Cidr {
  v: 4 | 6
  /** Network address, masked. */
  net: bigint
  bits: number
  /** As written in the config, for messages. */
  text: string
}

interface Addr {
  v: 4 | 6
  n: bigint
}

function parseV4(s: string): bigint | undefined {
  const parts = s.split(".")
  if (parts.length !== 4) return undefined
  let n = 0n
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255 || (p.length > 1 && p.startsWith("0"))) return undefined
    n = (n << 8n) | BigInt(p)
  }
  return n
}

function parseV6(s: string): bigint | undefined {
  const zone = s.indexOf("%")
  if (zone !== -1) s = s.slice(0, zone)
  // A trailing dotted quad (`::ffff:10.0.0.1`) is the last two groups written in IPv4 notation.
  const lastColon = s.lastIndexOf(":")
  const quad = s.slice(lastColon + 1)
  if (quad.includes(".")) {
    const v4 = parseV4(quad)
    if (v4 === undefined) return undefined
    s = `${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  }
  if (!/^[0-9a-fA-F:]+$/.test(s) || s.split("::").length > 2) return undefined
  const group = (g: string) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? BigInt("0x" + g) : undefined)
  const split = (x: string) => (x === "" ? [] : x.split(":"))
  let groups: (bigint | undefined)[]
  if (s.includes("::")) {
    const [a, b] = s.split("::")
    const head = split(a).map(group)
    const rest = split(b).map(group)
    const missing = 8 - head.length - rest.length
    if (missing < 1) return undefined
    groups = [...head, ...Array<bigint>(missing).fill(0n), ...rest]
  } else groups = split(s).map(group)
  if (groups.length !== 8 || groups.some((g) => g === undefined)) return undefined
  return groups.reduce<bigint>((n, g) => (n << 16n) | g!, 0n)
}

/** Parses an address; IPv4-mapped IPv6 becomes IPv4. Brackets (`[::1]`) are accepted. */
export function parseIp(raw: string): Addr | undefined {
  const s = raw.trim().replace(/^\[(.*)\]$/, "$1")
  const v4 = parseV4(s)
  if (v4 !== undefined) return { v: 4, n: v4 }
  const v6 = s.includes(":") ? parseV6(s) : undefined
  if (v6 === undefined) return undefined
  if (v6 >> 32n === 0xffffn) return { v: 4, n: v6 & 0xffffffffn }
  return { v: 6, n: v6 }
}

/**
 * One key per client for throttling: IPv4 (mapped IPv6 too) as its dotted quad, IPv6 as its /64 (a
 * site's or a host's whole prefix: whoever holds one address of it usually holds all 2^64). Undefined
 * when `addr` is not an address.
 */
export function addressKey(addr: string): string | undefined {
  const a = parseIp(addr)
  if (!a) return undefined
  if (a.v === 4) return [24n, 16n, 8n, 0n].map((s) => Number((a.n >> s) & 0xffn)).join(".")
  return [112n, 96n, 80n, 64n].map((s) => ((a.n >> s) & 0xffffn).toString(16)).join(":") + "::/64"
}

/** Longest textual IPv6 address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`). */
const MAX_ADDRESS = 45

/**
 * Parses one X-Forwarded-For hop strictly: a bare address exactly as a proxy writes its peer's, or
 * undefined. Refused: a port (`1.2.3.4:80`, `[::1]:443`), brackets, an IPv6 zone (`fe80::1%eth0`),
 * padding or blanks, words (`unknown`), and the non-canonical IPv4 forms other parsers read
 * differently (`010.1.1.1`, `0x7f.1`, `127.1`, `2130706433`). IPv4-mapped IPv6 becomes IPv4.
 */
export function parseBareIp(s: string): Addr | undefined {
  if (s.length === 0 || s.length > MAX_ADDRESS || !/^[0-9A-Fa-f:.]+$/.test(s)) return undefined
  return parseIp(s)
}

/** `10.0.0.0/8`, `::1/128`, or a bare address (a single host). Undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const [ip, len, extra] = text.trim().split("/")
  if (extra !== undefined) return undefined
  const a = parseIp(ip)
  if (!a) return undefined
  // A mapped range written as IPv6 (`::ffff:10.0.0.0/104`) is the IPv4 range it denotes.
  const max = a.v === 4 ? 32 : 128
  let bits = max
  if (len !== undefined) {
    if (!/^\d{1,3}$/.test(len)) return undefined
    bits = Number(len)
    if (a.v === 4 && ip.includes(":")) bits -= 96
    if (bits < 0 || bits > max) return undefined
  }
  const width = BigInt(max)
  const mask = bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << (width - BigInt(bits))
  return { v: a.v, net: a.n & mask, bits, text: text.trim() }
}

export function inCidr(addr: string, range: Cidr): boolean {
  const a = parseIp(addr)
  if (!a || a.v !== range.v) return false
  const width = range.v === 4 ? 32n : 128n
  const mask = range.bits === 0 ? 0n : ((1n << BigInt(range.bits)) - 1n) << (width - BigInt(range.bits))
  return (a.n & mask) === range.net
}

/** True when `addr` is inside any of `ranges`. */
export const allowed = (addr: string | undefined, ranges: Cidr[]): boolean =>
  !!addr && ranges.some((r) => inCidr(addr, r))

/** Loopback and private ranges: the default for the dashboard and metrics allow-lists. */
export const LOCAL_RANGES = [
  "127.0.0.0/8",
  "::1/128",
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "169.254.0.0/16",
  "fc00::/7",
  "fe80::/10",
]
