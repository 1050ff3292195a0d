import { describe, expect, test } from "bun:test"
import { LOCAL_RANGES, addressKey, allowed, inCidr, parseCidr, parseIp } from "./cidr.ts"

describe("parseIp", () => {
  test.each([
    ["127.0.0.1", 4, 0x7f000001n],
    ["::1", 6, 1n],
    ["[::1]", 6, 1n],
    ["::ffff:10.0.0.1", 4, 0x0a000001n],
    ["::FFFF:a00:1", 4, 0x0a000001n],
    ["fe80::1%eth0", 6, (0xfe80n << 112n) | 1n],
    ["2001:db8::", 6, 0x20010db8n << 96n],
    ["1:2:3:4:5:6:7:8", 6, 0x00010002000300040005000600070008n],
  ])("%s", (text, v, n) => {
    expect(parseIp(text)).toEqual({ v: v as 4 | 6, n })
  })

  test.each([
    "",
    "1.2.3",
    "1.2.3.256",
    "01.2.3.4",
    "1.2.3.4.5",
    "::1::2",
    "1:2:3:4:5:6:7:8:9",
    "g::1",
    "abc",
    "1:2:3:4:5:6:7::8:9",
    "::ffff:1.2.3.999",
  ])("rejects %p", (text) => {
    expect(parseIp(text)).toBeUndefined()
  })
})

describe("parseCidr / inCidr", () => {
  test("IPv4 ranges and bare hosts", () => {
    const r = parseCidr("10.0.0.0/8")!
    expect(inCidr("10.255.1.2", r)).toBe(true)
    expect(inCidr("11.0.0.1", r)).toBe(false)
    expect(inCidr("::ffff:10.1.2.3", r)).toBe(true)
    const host = parseCidr("192.168.1.5")!
    expect(inCidr("192.168.1.5", host)).toBe(true)
    expect(inCidr("192.168.1.6", host)).toBe(false)
    // Host bits in the network address are masked off.
    expect(inCidr("172.16.9.9", parseCidr("172.16.3.4/12")!)).toBe(true)
    expect(inCidr("8.8.8.8", parseCidr("0.0.0.0/0")!)).toBe(true)
  })

  test("IPv6 ranges never match IPv4 addresses and vice versa", () => {
    const ula = parseCidr("fc00::/7")!
    expect(inCidr("fd12:3456::1", ula)).toBe(true)
    expect(inCidr("fe80::1", ula)).toBe(false)
    expect(inCidr("10.0.0.1", parseCidr("::/0")!)).toBe(false)
    expect(inCidr("::1", parseCidr("0.0.0.0/0")!)).toBe(false)
  })

  test("a mapped range written in IPv6 is its IPv4 range", () => {
    const r = parseCidr("::ffff:10.0.0.0/104")!
    expect(r).toMatchObject({ v: 4, bits: 8 })
    expect(inCidr("10.9.9.9", r)).toBe(true)
  })

  test.each(["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/8/8", "x/8", "10.0.0.0/-1"])("rejects %p", (text) => {
    expect(parseCidr(text)).toBeUndefined()
  })

  test("the local default allows loopback and private peers, not public ones", () => {
    const ranges = LOCAL_RANGES.map((t) => parseCidr(t)!)
    for (const ip of ["127.0.0.1", "::1", "10.1.1.1", "172.31.0.1", "192.168.0.10", "fd00::5", "::ffff:192.168.1.1"])
      expect(allowed(ip, ranges)).toBe(true)
    for (const ip of ["8.8.8.8", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8"]) expect(allowed(ip, ranges)).toBe(false)
    expect(allowed(undefined, ranges)).toBe(false)
  })
})

describe("addressKey", () => {
  test.each([
    ["10.0.0.5", "10.0.0.5"],
    ["::ffff:10.0.0.5", "10.0.0.5"],
    ["::FFFF:a00:5", "10.0.0.5"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:0DB8:0001:0002::ffff", "2001:db8:1:2::/64"],
    ["::1", "0:0:0:0::/64"],
  ])("%s → %s", (addr, key) => {
    expect(addressKey(addr)).toBe(key)
  })

  test("not an address: undefined", () => {
    expect(addressKey("-")).toBeUndefined()
  })
})
