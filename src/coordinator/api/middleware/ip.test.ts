import { describe, expect, test } from "bun:test"
import { Hono } from "hono"
import { DffmpegError } from "../../../shared/errors.ts"
import { parseCidr, type Cidr } from "../../../shared/net/cidr.ts"
import type { AuthEnv } from "./hmac.ts"
import { MALFORMED_FORWARDED_FOR } from "../../../../test/helpers/forwarded.ts"
import { forwardedPeer, ipAllowList } from "./ip.ts"

const trusted: Cidr[] = ["127.0.0.1", "::1", "192.168.7.0/24"].map((t) => parseCidr(t)!)

describe("forwardedPeer (X-Forwarded-For from a trusted proxy)", () => {
  test.each([
    ["a single hop", "10.0.0.5", "10.0.0.5"],
    ["a public single hop", "8.8.8.8", "8.8.8.8"],
    ["blanks around the commas", " 8.8.4.4 ,\t10.0.0.5 ", "10.0.0.5"],
    [
      "a chain through trusted proxies: the right-most untrusted hop",
      "8.8.8.8, 10.0.0.5, 192.168.7.20, 127.0.0.1",
      "10.0.0.5",
    ],
    [
      "the right-most untrusted hop wins over a spoofed private one further left",
      "10.0.0.5, 8.8.8.8, 192.168.7.1",
      "8.8.8.8",
    ],
    ["hops left of the client are never read, even garbage", "garbage, unknown, 8.8.8.8:1, 10.0.0.5", "10.0.0.5"],
    ["only trusted proxies: the left-most", "192.168.7.9, 127.0.0.1", "192.168.7.9"],
    ["IPv6", "2001:db8::1", "2001:db8::1"],
    ["IPv6 in capitals with zero-padded groups", "2001:0DB8::0001", "2001:0DB8::0001"],
    ["IPv4-mapped IPv6 of a trusted proxy is that proxy", "10.0.0.5, ::ffff:192.168.7.3", "10.0.0.5"],
    ["IPv4-mapped IPv6 client", "::ffff:10.0.0.5", "::ffff:10.0.0.5"],
  ])("%s", (_what, header, ip) => {
    expect(forwardedPeer(header, trusted)).toEqual({ ip })
  })

  test.each(MALFORMED_FORWARDED_FOR)("%s is no address", (_what, header) => {
    const peer = forwardedPeer(header, trusted)
    expect(peer.ip).toBeUndefined()
    expect(peer).toHaveProperty("reason")
  })

  test("a malformed hop is only fatal where it must be read: right of the client", () => {
    expect(forwardedPeer("8.8.8.8:4711, 10.0.0.5", trusted)).toEqual({ ip: "10.0.0.5" })
    expect(forwardedPeer("10.0.0.5, 8.8.8.8:4711", trusted).ip).toBeUndefined()
    expect(forwardedPeer("10.0.0.5, unknown, 127.0.0.1", trusted).ip).toBeUndefined()
  })
})

describe("ipAllowList", () => {
  const app = new Hono<AuthEnv>()
  app.use("/*", ipAllowList(["10.0.0.0/8"], ["127.0.0.1", "::1", "192.168.7.0/24"], "the page", "allowed_page_ips"))
  app.get("/", (c) => c.text("ok"))
  app.onError((err, c) =>
    err instanceof DffmpegError
      ? c.json({ error: { code: err.code, message: err.message } }, err.status as 403)
      : c.text("boom", 500),
  )
  const get = async (socket: string | undefined, forwarded?: string) => {
    const server = { requestIP: () => (socket ? { address: socket, family: "IPv4", port: 40000 } : null) }
    const res = await app.fetch(
      new Request("http://x.test/", { headers: forwarded === undefined ? {} : { "X-Forwarded-For": forwarded } }),
      { server } as never,
    )
    return {
      status: res.status,
      body:
        res.status === 200 ? await res.text() : ((await res.json()) as { error: { code: string; message: string } }),
    }
  }

  test("the socket's address, without a header or from an untrusted peer", async () => {
    expect((await get("10.1.1.1")).status).toBe(200)
    expect((await get("10.1.1.1", "garbage")).status).toBe(200)
    expect((await get("8.8.8.8", "10.0.0.5")).status).toBe(403)
    expect((await get("127.0.0.1")).status).toBe(403)
    expect((await get(undefined)).status).toBe(403)
  })

  test("from a trusted proxy, the forwarded client", async () => {
    expect((await get("127.0.0.1", "10.0.0.5")).status).toBe(200)
    expect((await get("::ffff:127.0.0.1", "10.0.0.5, 127.0.0.1")).status).toBe(200)
    expect(await get("127.0.0.1", "8.8.8.8")).toEqual({
      status: 403,
      body: { error: { code: "E_FORBIDDEN", message: "the page is not open to 8.8.8.8 (see allowed_page_ips)" } },
    })
  })

  // Only what an HTTP header can carry (Headers refuses control characters and non-ASCII).
  const sendable = MALFORMED_FORWARDED_FOR.filter(([, h]) => /^[\x20-\x7e\t]*$/.test(h))
  test("most cases can be sent", () => expect(sendable.length).toBe(MALFORMED_FORWARDED_FOR.length - 2))

  test.each(sendable)("from a trusted proxy, %s is 403 JSON", async (_what, header) => {
    // A hop the client chose on the left cannot rescue it: the malformed one is read first.
    const res = await get("127.0.0.1", header === "" || header.trim() === "" ? header : `10.0.0.5, ${header}`)
    expect(res.status).toBe(403)
    expect(res.body).toMatchObject({
      error: { code: "E_FORBIDDEN", message: expect.stringContaining("is not open to this peer (X-Forwarded-For") },
    })
  })
})
