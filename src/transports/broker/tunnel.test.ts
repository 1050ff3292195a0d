import { afterEach, describe, expect, test } from "bun:test"
import { MemoryBroker, type MemoryLink } from "../../../test/helpers/memory-broker.ts"
import { decodeKey, generateKey } from "../../shared/auth/hmac.ts"
import { newId } from "../../shared/ids.ts"
import { peek, seal, type RejectReason } from "./envelope.ts"
import { createRequester, type Requester } from "./requester.ts"
import { createTunnelServer } from "./server.ts"
import { CHUNK, MAX_BODY_BYTES_IN_FLIGHT, MAX_REQUEST_BODY, type TunnelTiming, WINDOW } from "./tunnel.ts"
import { COORDINATORS, type PeerAddress } from "./types.ts"

const timing: TunnelTiming = { keepMs: 50, stallMs: 400, leaseMs: 400 }
const keys = new Map([
  ["alice", decodeKey(generateKey())],
  ["bob", decodeKey(generateKey())],
])

/** Polls `cond` until it holds, or fails after `ms`. */
async function until(cond: () => boolean, ms = 3000, what = "the condition") {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(5)
  }
}

interface Rig {
  broker: MemoryBroker
  requester: Requester
  peerLink: MemoryLink
  serverLinks: MemoryLink[]
  rejected: RejectReason[]
  peerRejected: RejectReason[]
  requests: Request[]
  close(): void
}

const closers: (() => void)[] = []
afterEach(() => {
  for (const c of closers.splice(0)) c()
})

/** A broker, `servers` coordinators serving `handler`, and alice's requester. */
function rig(handler: (req: Request) => Promise<Response> | Response, servers = 1, who = "alice"): Rig {
  const broker = new MemoryBroker()
  const rejected: RejectReason[] = []
  const peerRejected: RejectReason[] = []
  const requests: Request[] = []
  const tunnels: ReturnType<typeof createTunnelServer>[] = []
  const serverLinks = Array.from({ length: servers }, () => {
    const self = { identity: COORDINATORS, instance: newId() }
    let t!: ReturnType<typeof createTunnelServer>
    const link = broker.link({
      self,
      serveRequests: true,
      onMessage: async (ch, b, again) => {
        if (ch !== "notify") await t.receive(ch, b, again)
      },
    })
    t = createTunnelServer({
      link,
      self,
      keyOf: async (id) => keys.get(id),
      fetch: async (req) => {
        requests.push(req)
        return handler(req)
      },
      onReject: (r) => rejected.push(r),
      timing,
    })
    tunnels.push(t)
    return link
  })
  const self: PeerAddress = { identity: who, instance: newId() }
  let requester!: Requester
  const peerLink = broker.link({
    self,
    serveRequests: false,
    onMessage: async (_ch, b) => {
      const r = requester.receive(b)
      if (r) peerRejected.push(r)
    },
  })
  requester = createRequester(peerLink, self, keys.get(who)!, timing)
  const close = () => {
    for (const t of tunnels) t.close()
    requester.abortAll("test over")
  }
  closers.push(close)
  return { broker, requester, peerLink, serverLinks, rejected, peerRejected, requests, close }
}

/** An answer that sends 10 bytes and never ends; `aborted()` says whether the app saw its request end. */
function endlessAnswer() {
  let aborted = false
  const handler = (req: Request) =>
    new Response(
      new ReadableStream({
        start(c) {
          c.enqueue(new Uint8Array(10))
          req.signal.addEventListener("abort", () => (aborted = true))
        },
      }),
    )
  return { handler, aborted: () => aborted }
}

const dataSent = (b: MemoryBroker) => b.sent.filter((m) => m.to !== "requests" && peek(m.bytes).header.t === "data")

describe("broker tunnel", () => {
  test("a request and its answer: method, path, query, headers, body and status arrive intact", async () => {
    const r = rig(async (req) => {
      const body = new Uint8Array(await req.arrayBuffer())
      return new Response(body.toReversed(), {
        status: 201,
        headers: {
          "x-seen": `${req.method} ${new URL(req.url).pathname}${new URL(req.url).search} ${req.headers.get("x-dffmpeg-client-id")}`,
        },
      })
    })
    const sent = crypto.getRandomValues(new Uint8Array(3 * CHUNK + 17))
    const res = await r.requester.fetch("http://coordinator:8000/base/api/v1/x?a=1&b=2", {
      method: "POST",
      headers: { "x-dffmpeg-client-id": "alice", "content-type": "application/octet-stream" },
      body: sent,
    })
    expect(res.status).toBe(201)
    expect(res.headers.get("x-seen")).toBe("POST /base/api/v1/x?a=1&b=2 alice")
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(sent.toReversed())
    // The answer went in pieces of at most CHUNK bytes (the first may ride with the head): 4 in all.
    const pieces = r.broker.sent
      .filter((m) => m.to !== "requests")
      .map((m) => peek(m.bytes))
      .filter((m) => (m.header.t === "head" || m.header.t === "data") && m.body.length)
    expect(pieces.length).toBe(4)
    expect(pieces.every((m) => m.body.length <= CHUNK)).toBe(true)
    expect(r.rejected).toEqual([])
    expect(r.requester.open).toBe(0)
  })

  test("a slow reader holds the answer to WINDOW chunks in flight; reading lets the rest come", async () => {
    let pulled = 0
    const r = rig(
      () =>
        new Response(
          new ReadableStream({
            pull(c) {
              if (++pulled > 40) return c.close()
              c.enqueue(new Uint8Array(CHUNK).fill(pulled))
            },
          }),
        ),
    )
    const res = await r.requester.fetch("http://c/api/v1/stream", {})
    const reader = res.body!.getReader()
    expect((await reader.read()).value![0]).toBe(1)
    // The coordinator goes quiet once the window is full: it says so with a keep-alive, and sends no more data.
    await until(() => dataSent(r.broker).length >= WINDOW, 3000, "a full window")
    const keeps = () => r.broker.sent.filter((m) => m.to !== "requests" && peek(m.bytes).header.t === "keep").length
    const k = keeps()
    await until(() => keeps() > k + 1, 3000, "two keep-alives")
    expect(dataSent(r.broker).length).toBeLessThanOrEqual(WINDOW + 1)
    let n = 1
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      expect(value[0]).toBe(++n)
    }
    expect(n).toBe(40)
  })

  test("the requester's cancel reaches the app's request signal", async () => {
    const { handler, aborted } = endlessAnswer()
    const r = rig(handler)
    const res = await r.requester.fetch("http://c/api/v1/stream", {})
    const reader = res.body!.getReader()
    await reader.read()
    await reader.cancel()
    await until(aborted, 3000, "the abort")
  })

  test("aborting before the answer (a long poll) aborts the request on the coordinator", async () => {
    let aborted = false
    const r = rig(
      (req) =>
        new Promise<Response>((resolve) =>
          req.signal.addEventListener("abort", () => {
            aborted = true
            resolve(new Response("late"))
          }),
        ),
    )
    const ac = new AbortController()
    const pending = r.requester.fetch("http://c/api/v1/worker/poll", { signal: ac.signal })
    // The coordinator speaks (keep-alive) before the requester knows where to send its cancel.
    await until(() => r.broker.sent.some((m) => m.to !== "requests"), 3000, "the coordinator's keep-alive")
    ac.abort()
    await expect(pending).rejects.toThrow()
    await until(() => aborted, 3000, "the abort")
  })

  test("a coordinator that goes silent fails the request as a timed-out connection", async () => {
    const r = rig(() => new Promise<Response>(() => {}))
    const pending = r.requester.fetch("http://c/api/v1/x", {})
    await until(() => r.broker.sent.some((m) => m.to !== "requests"), 3000, "a keep-alive")
    r.serverLinks[0]!.setConnected(false)
    const err = (await pending.catch((e: unknown) => e)) as Error & { code?: string }
    expect(err.code).toBe("ETIMEDOUT")
  })

  test("no coordinator serving: the request times out; a link that is down refuses at once", async () => {
    const r = rig(() => new Response("x"))
    r.serverLinks[0]!.setConnected(false)
    const err = (await r.requester.fetch("http://c/x", {}).catch((e: unknown) => e)) as Error & { code?: string }
    expect(err.code).toBe("ETIMEDOUT")
    r.peerLink.setConnected(false)
    const down = (await r.requester.fetch("http://c/x", {}).catch((e: unknown) => e)) as Error & { code?: string }
    expect(down.code).toBe("ECONNREFUSED")
  })

  test("a requester that goes away: its answer ends after the lease", async () => {
    const { handler, aborted } = endlessAnswer()
    const r = rig(handler)
    const res = await r.requester.fetch("http://c/api/v1/stream", {})
    void res.body!.getReader().read()
    r.peerLink.setConnected(false)
    await until(aborted, 3000, "the lease to end the answer")
  })

  test("an answer all there at once is one message (head, body, fin); a streamed one is not", async () => {
    const r = rig(() => Response.json({ ok: true }))
    const res = await r.requester.fetch("http://c/x", {})
    expect(await res.json()).toEqual({ ok: true })
    const answer = r.broker.sent
      .filter((m) => m.to !== "requests")
      .map((m) => peek(m.bytes).header)
      .filter((h) => h.t !== "keep")
    expect(answer.map((h) => [h.t, h.fin])).toEqual([["head", true]])
    expect(r.requester.open).toBe(0)
  })

  test("a lost chunk breaks the stream (never silently missing bytes)", async () => {
    const r = rig(() => new Response(new Uint8Array(3 * CHUNK)))
    let seen = 0
    r.broker.filter = (to, bytes) => !(to !== "requests" && peek(bytes).header.t === "data" && ++seen === 2)
    const res = await r.requester.fetch("http://c/x", {})
    const err = (await res.arrayBuffer().catch((e: unknown) => e)) as Error & { code?: string }
    expect(err.code).toBe("ECONNRESET")
  })

  test("a redelivered request refused as a replay (another coordinator took it, then died) fails as a reset, never as a refusal", async () => {
    const r = rig((req) =>
      req.headers.get("x-replay") ? new Response("replayed request", { status: 401 }) : new Response("ok"),
    )
    // The first delivery went to a coordinator that was lost: the broker hands the same bytes out again.
    r.broker.filter = (to) => to !== "requests"
    const pending = r.requester.fetch("http://c/x", { method: "POST", headers: { "x-replay": "1" }, body: "b" })
    await until(() => r.broker.sent.length === 1)
    r.broker.filter = () => true
    r.broker.deliver("requests", r.broker.sent[0]!.bytes, true)
    const err = (await pending.catch((e: unknown) => e)) as Error & { code?: string }
    expect(err.code).toBe("ECONNRESET")
    expect(err.message).toContain("outcome is unknown")
    // Not redelivered, a 401 is the app's answer, as over HTTP.
    const res = await r.requester.fetch("http://c/x", { method: "POST", headers: { "x-replay": "1" }, body: "b" })
    expect(res.status).toBe(401)
  })

  test("request bodies held at once are bounded: past MAX_BODY_BYTES_IN_FLIGHT a request fails as a reset, and is served once room is back", async () => {
    const release: (() => void)[] = []
    const r = rig(async (req) => {
      await req.arrayBuffer()
      await new Promise<void>((ok) => release.push(ok))
      return new Response("done")
    })
    const body = new Uint8Array(MAX_REQUEST_BODY)
    const held = Math.floor(MAX_BODY_BYTES_IN_FLIGHT / MAX_REQUEST_BODY)
    const pending = Array.from({ length: held }, () => r.requester.fetch("http://c/x", { method: "POST", body }))
    await until(() => release.length === held, 5000, "the held requests")
    const err = (await r.requester.fetch("http://c/x", { method: "POST", body }).catch((e: unknown) => e)) as Error & {
      code?: string
    }
    expect(err.code).toBe("ECONNRESET")
    expect(err.message).toContain("try again")
    for (const ok of release.splice(0)) ok()
    for (const p of pending) expect(await (await p).text()).toBe("done")
    const again = r.requester.fetch("http://c/x", { method: "POST", body })
    await until(() => release.length === 1, 5000, "the request served again")
    release[0]!()
    expect(await (await again).text()).toBe("done")
  })

  test("with two coordinators each request is served once and its acks reach the one serving it", async () => {
    const r = rig(() => new Response(new Uint8Array(12 * CHUNK)), 2)
    for (let i = 0; i < 4; i++) {
      const res = await r.requester.fetch("http://c/x", {})
      expect((await res.arrayBuffer()).byteLength).toBe(12 * CHUNK)
    }
    expect(r.requests.length).toBe(4)
    expect(r.rejected).toEqual([])
  })

  describe("hostile messages are dropped and counted", () => {
    const request = (
      who: string,
      key: Uint8Array,
      from: PeerAddress,
      extra: Record<string, unknown> = {},
      now?: number,
    ) =>
      seal(
        key,
        {
          t: "req",
          who,
          from,
          id: newId(),
          seq: 0,
          m: "GET",
          p: "/api/v1/x",
          h: [["x-dffmpeg-client-id", who]],
          ...extra,
        },
        new Uint8Array(),
        now,
      )
    const inject = (r: Rig, bytes: Uint8Array) => r.broker.deliver("requests", bytes)
    const self = { identity: "alice", instance: newId() }

    test.each([
      ["a changed byte", (b: Uint8Array) => ((b[b.length - 40]! ^= 1), b), "signature"],
      ["garbage", () => new Uint8Array([1, 2, 3]), "malformed"],
    ] as const)("%s", async (_n, mangle, reason) => {
      const r = rig(() => new Response("x"))
      inject(r, mangle(request("alice", keys.get("alice")!, self)))
      await until(() => r.rejected.length === 1)
      expect(r.rejected).toEqual([reason])
      expect(r.requests).toEqual([])
    })

    test("an identity the coordinator has no key for", async () => {
      const r = rig(() => new Response("x"))
      inject(r, request("mallory", decodeKey(generateKey()), { identity: "mallory", instance: newId() }))
      await until(() => r.rejected.length === 1)
      expect(r.rejected).toEqual(["unsigned"])
    })

    test("a replayed message, and one from another time", async () => {
      const r = rig(() => new Response("x"))
      const once = request("alice", keys.get("alice")!, self)
      inject(r, once)
      await until(() => r.requests.length === 1)
      inject(r, once)
      inject(r, request("alice", keys.get("alice")!, self, {}, Date.now() - 120_000))
      await until(() => r.rejected.length === 2)
      expect(r.rejected.sort()).toEqual(["replayed", "stale"])
      expect(r.requests.length).toBe(1)
    })

    test("bob signing a request of alice's, or sending his for her channel", async () => {
      const r = rig(() => new Response("x"))
      inject(r, request("bob", keys.get("bob")!, self))
      inject(
        r,
        seal(keys.get("bob")!, {
          t: "req",
          who: "bob",
          from: { identity: "bob", instance: newId() },
          id: newId(),
          seq: 0,
          m: "GET",
          p: "/x",
          h: [["x-dffmpeg-client-id", "alice"]],
        }),
      )
      await until(() => r.rejected.length === 2)
      expect(r.rejected).toEqual(["misaddressed", "misaddressed"])
      expect(r.requests).toEqual([])
    })

    test("a peer drops answers signed for someone else or addressed to another process", async () => {
      const r = rig(() => new Promise<Response>(() => {}))
      const pending = r.requester.fetch("http://c/x", {})
      pending.catch(() => {})
      await until(() => r.broker.sent.some((m) => m.to !== "requests"))
      const to = r.broker.sent.find((m) => m.to !== "requests")!.to as PeerAddress
      const id = peek(r.broker.sent[0]!.bytes).header.id
      const from = { identity: COORDINATORS, instance: newId() }
      r.broker.deliver(to, seal(keys.get("bob")!, { t: "head", who: "bob", from, to, id, seq: 0, s: 200 }))
      r.broker.deliver(
        to,
        seal(keys.get("alice")!, {
          t: "head",
          who: "alice",
          from,
          to: { ...to, instance: newId() },
          id,
          seq: 0,
          s: 200,
        }),
      )
      await until(() => r.peerRejected.length === 2)
      expect(r.peerRejected).toEqual(["unsigned", "misaddressed"])
    })
  })
})
