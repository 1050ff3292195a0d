import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { Connection } from "rabbitmq-client"
import { ulid } from "ulid"
import { waitFor } from "../../../test/helpers/bin.ts"
import { TcpProxy } from "../../../test/helpers/tcp-proxy.ts"
import { makePki } from "../../../test/helpers/tls.ts"
import { type BrokerSettings, openLink } from "./index.ts"
import { mqttTopics } from "./mqtt.ts"
import { rabbitNames } from "./rabbitmq.ts"
import {
  type BrokerKind,
  type BrokerLink,
  type Channel,
  COORDINATORS,
  MAX_MESSAGE_BYTES,
  type MqttSettings,
  type PeerAddress,
  type RabbitSettings,
} from "./types.ts"

// Real brokers on loopback (scripts/setup.sh --services starts them); every test uses its own names.
const MQTT_HOST = "127.0.0.1"
const MQTT_PORT = 1883
const AMQP_HOST = "127.0.0.1"
const AMQP_PORT = 5672
const READY_MS = 10_000

const rand = () => `t${Math.random().toString(36).slice(2, 10)}`
const enc = (s: string) => new TextEncoder().encode(s)
const dec = (b: Uint8Array) => new TextDecoder().decode(b)

/** What the shared suite needs from a broker kind: fresh settings, and a raw client to send what a link would refuse. */
interface Fixture<K extends BrokerKind> {
  kind: K
  settings(over?: Partial<BrokerSettings[K]>): BrokerSettings[K]
  /** Publishes bytes to a peer's channel with a plain client (bypassing the link's size check). */
  rawToPeer(s: BrokerSettings[K], to: PeerAddress, bytes: Uint8Array): Promise<void>
  /** Removes what the settings created on the shared broker. */
  cleanup(s: BrokerSettings[K]): Promise<void>
}

const mqttFixture: Fixture<"mqtt"> = {
  kind: "mqtt",
  settings: (over) => ({ host: MQTT_HOST, port: MQTT_PORT, use_tls: false, topic_prefix: `${rand()}/d`, ...over }),
  async rawToPeer(s, to, bytes) {
    const c = await mqtt.connectAsync({ host: s.host, port: s.port, protocol: "mqtt", reconnectPeriod: 0 })
    try {
      await c.publishAsync(mqttTopics(s.topic_prefix).peer(to), Buffer.from(bytes), { qos: 1 })
    } finally {
      await c.endAsync()
    }
  },
  cleanup: async () => {},
}

const admin = () =>
  new Connection({ hostname: AMQP_HOST, port: AMQP_PORT, username: "guest", password: "guest", vhost: "/" })

const rabbitFixture: Fixture<"rabbitmq"> = {
  kind: "rabbitmq",
  settings: (over) => {
    const p = rand()
    return {
      host: AMQP_HOST,
      port: AMQP_PORT,
      username: "guest",
      password: "guest",
      vhost: "/",
      use_tls: false,
      workers_exchange: `${p}.workers`,
      jobs_exchange: `${p}.jobs`,
      queue_prefix: p,
      ...over,
    }
  },
  async rawToPeer(s, to, bytes) {
    const c = admin()
    const pub = c.createPublisher({ confirm: true })
    try {
      await pub.send({ exchange: s.jobs_exchange, routingKey: rabbitNames(s).peerKey(to) }, Buffer.from(bytes))
    } finally {
      await pub.close()
      await c.close()
    }
  },
  async cleanup(s) {
    const c = admin()
    try {
      await c.queueDelete(rabbitNames(s).requestQueue)
      await c.exchangeDelete({ exchange: s.workers_exchange })
      await c.exchangeDelete({ exchange: s.jobs_exchange })
    } finally {
      await c.close()
    }
  },
}

/** A link and everything it reported. */
interface Probe {
  link: BrokerLink
  self: PeerAddress
  got: { channel: Channel; text: string }[]
  dropped: number
  states: boolean[]
  texts(channel: Channel): string[]
}

const open: BrokerLink[] = []

async function probe<K extends BrokerKind>(
  fx: Fixture<K>,
  s: BrokerSettings[K],
  opts: { identity?: string; serveRequests?: boolean; ready?: boolean } = {},
): Promise<Probe> {
  const self = { identity: opts.identity ?? "alice", instance: ulid() }
  const p: Probe = {
    self,
    got: [],
    dropped: 0,
    states: [],
    link: undefined as unknown as BrokerLink,
    texts: (channel) => p.got.filter((g) => g.channel === channel).map((g) => g.text),
  }
  p.link = await openLink(fx.kind, s, {
    self,
    serveRequests: !!opts.serveRequests,
    onMessage: async (channel, bytes) => void p.got.push({ channel, text: dec(bytes) }),
    onDropped: () => void p.dropped++,
    onState: (connected) => void p.states.push(connected),
  })
  open.push(p.link)
  if (opts.ready !== false) await p.link.ready(READY_MS)
  return p
}

afterAll(async () => {
  await Promise.all(open.map((l) => l.close()))
})

function suite<K extends BrokerKind>(fx: Fixture<K>) {
  describe(`${fx.kind} link`, () => {
    const made: BrokerSettings[K][] = []
    const fresh = (over?: Partial<BrokerSettings[K]>) => {
      const s = fx.settings(over)
      made.push(s)
      return s
    }
    afterAll(async () => {
      await Promise.all(open.map((l) => l.close()))
      for (const s of made) await fx.cleanup(s)
    })

    test("a peer's request reaches the coordinator, and its reply reaches the peer", async () => {
      const s = fresh()
      const coord = await probe(fx, s, { identity: COORDINATORS, serveRequests: true })
      const peer = await probe(fx, s)
      expect(coord.link.connected).toBe(true)
      expect(coord.states).toEqual([true])
      await peer.link.publish("requests", enc("hello"))
      await waitFor(() => coord.got.length === 1, { what: "the request" })
      await coord.link.publish(peer.self, enc("reply"))
      await waitFor(() => peer.got.length === 1, { what: "the reply" })
      expect({ coord: coord.got, peer: peer.got }).toEqual({
        coord: [{ channel: "requests", text: "hello" }],
        peer: [{ channel: "peer", text: "reply" }],
      })
    })

    test("with two coordinators each request reaches exactly one of them", async () => {
      const s = fresh()
      const a = await probe(fx, s, { identity: COORDINATORS, serveRequests: true })
      const b = await probe(fx, s, { identity: COORDINATORS, serveRequests: true })
      const peer = await probe(fx, s)
      const sent = Array.from({ length: 20 }, (_, i) => `r${i}`)
      await Promise.all(sent.map((t) => peer.link.publish("requests", enc(t))))
      const all = () => [...a.texts("requests"), ...b.texts("requests")]
      await waitFor(() => all().length >= 20, { what: "20 requests" })
      // A fence on each coordinator's own channel: once it arrives, a late duplicate would have shown too.
      await Promise.all([a.link.publish(a.self, enc("fence")), b.link.publish(b.self, enc("fence"))])
      await waitFor(() => a.texts("peer").length === 1 && b.texts("peer").length === 1, { what: "fences" })
      expect(all().sort()).toEqual(sent.sort())
      console.log(`${fx.kind}: 20 requests split ${a.texts("requests").length}/${b.texts("requests").length}`)
    })

    test("a message to a peer address reaches only that peer", async () => {
      const s = fresh()
      const coord = await probe(fx, s, { identity: COORDINATORS, serveRequests: true })
      const one = await probe(fx, s)
      const two = await probe(fx, s) // same identity, another instance
      const other = await probe(fx, s, { identity: "bob" })
      await coord.link.publish(one.self, enc("for one"))
      await waitFor(() => one.got.length === 1, { what: "the message" })
      await coord.link.publish(two.self, enc("fence two"))
      await coord.link.publish(other.self, enc("fence bob"))
      await waitFor(() => two.got.length === 1 && other.got.length === 1, { what: "fences" })
      expect([one.texts("peer"), two.texts("peer"), other.texts("peer"), coord.got]).toEqual([
        ["for one"],
        ["fence two"],
        ["fence bob"],
        [],
      ])
    })

    test("publishing to an invalid address rejects", async () => {
      const peer = await probe(fx, fresh())
      const instance = ulid()
      const bad: PeerAddress[] = [
        { identity: "a/b", instance },
        { identity: "a.b", instance },
        { identity: "+", instance },
        { identity: "#", instance },
        { identity: "", instance },
        { identity: "x".repeat(65), instance },
        { identity: "alice", instance: "" },
        { identity: "alice", instance: "a b" },
      ]
      const results = await Promise.allSettled(bad.map((to) => peer.link.publish(to, enc("x"))))
      expect(results.map((r) => r.status)).toEqual(bad.map(() => "rejected"))
      expect(String((results[0] as PromiseRejectedResult).reason)).toContain("not a valid broker channel name")
    })

    test("an oversized message is dropped and counted, and the link goes on", async () => {
      const s = fresh()
      const peer = await probe(fx, s)
      await expect(peer.link.publish(peer.self, new Uint8Array(MAX_MESSAGE_BYTES + 1))).rejects.toThrow(
        /over the .*-byte limit/,
      )
      await fx.rawToPeer(s, peer.self, new Uint8Array(MAX_MESSAGE_BYTES + 1))
      await fx.rawToPeer(s, peer.self, enc("after"))
      await waitFor(() => peer.got.length === 1, { timeoutMs: 20_000, what: "the message after" })
      expect({ dropped: peer.dropped, got: peer.texts("peer") }).toEqual({ dropped: 1, got: ["after"] })
    }, 30_000)

    test("a message of exactly the limit is delivered", async () => {
      const s = fresh()
      const peer = await probe(fx, s)
      const big = new Uint8Array(MAX_MESSAGE_BYTES).fill(97)
      await peer.link.publish(peer.self, big)
      await waitFor(() => peer.got.length === 1, { timeoutMs: 20_000, what: "the big message" })
      expect({ dropped: peer.dropped, bytes: peer.got[0]!.text.length }).toEqual({
        dropped: 0,
        bytes: MAX_MESSAGE_BYTES,
      })
    }, 30_000)

    test("ready rejects within its timeout naming the broker when nothing listens", async () => {
      const s = fresh({ port: 1 } as Partial<BrokerSettings[K]>)
      const p = await probe(fx, s, { ready: false })
      const t0 = Date.now()
      const err = await p.link.ready(1_500).then(
        () => undefined,
        (e: Error) => e,
      )
      const took = Date.now() - t0
      expect(err?.message).toMatch(/^cannot connect to the (MQTT|RabbitMQ) broker at (mqtt|amqp):\/\/127\.0\.0\.1:1/)
      expect(err?.message).toContain("connection refused")
      expect(took).toBeLessThan(3_000)
      expect(p.link.connected).toBe(false)
      // The failed link is closed: it publishes nothing and close is a no-op.
      await expect(p.link.publish("requests", enc("x"))).rejects.toThrow(/closed/)
      await p.link.close()
    })

    test("ready names an unknown host", async () => {
      const p = await probe(fx, fresh({ host: "no-such-host.invalid" } as Partial<BrokerSettings[K]>), {
        ready: false,
      })
      await expect(p.link.ready(3_000)).rejects.toThrow(/no-such-host\.invalid.*host not found/)
    })

    test("publishing while not connected rejects at once", async () => {
      const p = await probe(fx, fresh({ port: 1 } as Partial<BrokerSettings[K]>), { ready: false })
      const t0 = Date.now()
      await expect(p.link.publish("requests", enc("x"))).rejects.toThrow(/not connected/)
      expect(Date.now() - t0).toBeLessThan(100)
      await p.link.close()
    })

    test("close is idempotent, rejects later publishes and reports the link down", async () => {
      const s = fresh()
      const p = await probe(fx, s, { serveRequests: true, identity: COORDINATORS })
      await Promise.all([p.link.close(), p.link.close()])
      await p.link.close()
      expect({ connected: p.link.connected, states: p.states }).toEqual({ connected: false, states: [true, false] })
      await expect(p.link.publish("requests", enc("x"))).rejects.toThrow(/closed/)
      await expect(p.link.ready(100)).rejects.toThrow(/closed/)
    })

    test("peer messages sent while its connection is cut wait for it on the broker", async () => {
      const s = fresh()
      const proxy = TcpProxy.start({ host: s.host, port: s.port })
      try {
        const coord = await probe(fx, s, { identity: COORDINATORS, serveRequests: true })
        const peer = await probe(fx, { ...s, port: proxy.port })
        proxy.cut()
        await waitFor(() => !peer.link.connected, { what: "the peer link down" })
        await coord.link.publish(peer.self, enc("sent while cut"))
        proxy.restore()
        await waitFor(() => peer.link.connected, { timeoutMs: 15_000, what: "the peer link back" })
        await waitFor(() => peer.got.length === 1, { what: "the queued message" })
        expect({ states: peer.states, got: peer.texts("peer") }).toEqual({
          states: [true, false, true],
          got: ["sent while cut"],
        })
      } finally {
        proxy.stop()
      }
    }, 30_000)

    test("requests sent while a coordinator is cut off all go to the live one", async () => {
      const s = fresh()
      const proxy = TcpProxy.start({ host: s.host, port: s.port })
      try {
        const live = await probe(fx, s, { identity: COORDINATORS, serveRequests: true })
        const cut = await probe(fx, { ...s, port: proxy.port }, { identity: COORDINATORS, serveRequests: true })
        const peer = await probe(fx, s)
        proxy.cut()
        await waitFor(() => !cut.link.connected, { what: "the cut coordinator down" })
        const sent = Array.from({ length: 10 }, (_, i) => `r${i}`)
        for (const t of sent) await peer.link.publish("requests", enc(t))
        await waitFor(() => live.texts("requests").length === 10, { what: "10 requests at the live coordinator" })
        proxy.restore()
        await waitFor(() => cut.link.connected, { timeoutMs: 15_000, what: "the cut coordinator back" })
        // A fence through the reconnected coordinator's own channel: anything held for it would come first.
        await live.link.publish(cut.self, enc("fence"))
        await waitFor(() => cut.texts("peer").length === 1, { what: "the fence" })
        expect({ live: live.texts("requests").sort(), cut: cut.texts("requests") }).toEqual({
          live: sent.sort(),
          cut: [],
        })
      } finally {
        proxy.stop()
      }
    }, 30_000)

    for (const mode of ["fail", "use"] as const)
      test(`a process that ${mode === "fail" ? "fails ready" : "uses and closes a link"} exits by itself`, async () => {
        const s = mode === "fail" ? fresh({ port: 1 } as Partial<BrokerSettings[K]>) : fresh()
        const script = join(import.meta.dir, "../../../test/helpers/broker-exit.ts")
        const child = Bun.spawn(["bun", script, fx.kind, JSON.stringify(s), mode], { stdout: "ignore", stderr: "pipe" })
        try {
          await waitFor(() => child.exitCode !== null, { timeoutMs: 10_000, what: "the child to exit" })
        } finally {
          child.kill()
        }
        const err = await new Response(child.stderr).text()
        expect({ code: child.exitCode, err }).toEqual({
          code: 0,
          err:
            mode === "fail"
              ? expect.stringMatching(
                  /^dffmpeg: cannot connect to the \w+ broker at \w+:\/\/127\.0\.0\.1:1\S*: connection refused\n$/,
                )
              : "closed got=1\n",
        })
      }, 15_000)

    test("publish → receive latency (printed, not asserted)", async () => {
      const s = fresh()
      const coord = await probe(fx, s, { identity: COORDINATORS, serveRequests: true })
      const peer = await probe(fx, s)
      const times: number[] = []
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now()
        await peer.link.publish("requests", enc(`m${i}`))
        await waitFor(() => coord.got.length === i + 1, { intervalMs: 0, what: `message ${i}` })
        times.push(performance.now() - t0)
      }
      times.sort((x, y) => x - y)
      const at = (q: number) => times[Math.floor(q * (times.length - 1))]!.toFixed(2)
      console.log(`${fx.kind}: publish → receive over 200 messages: p50 ${at(0.5)} ms, p99 ${at(0.99)} ms`)
      expect(coord.got.length).toBe(200)
    }, 30_000)
  })
}

suite(mqttFixture)
suite(rabbitFixture)

/** A free TCP port on loopback (the OS picks it; we release it for the broker to take). */
function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
  const port = s.port
  s.stop(true)
  return port
}

async function accepts(port: number): Promise<boolean> {
  try {
    const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } })
    s.end()
    return true
  } catch {
    return false
  }
}

describe("mqtt link across a broker restart", () => {
  const dir = mkdtempSync(join(tmpdir(), "dffmpeg-mosquitto-"))
  const port = freePort()
  const conf = join(dir, "mosquitto.conf")
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`)
  let broker: ReturnType<typeof Bun.spawn> | undefined
  const start = async () => {
    broker = Bun.spawn(["mosquitto", "-c", conf], { stdout: "ignore", stderr: "ignore" })
    await waitFor(() => accepts(port), { what: `mosquitto on port ${port}` })
  }
  const stop = async () => {
    broker?.kill()
    await broker?.exited
    broker = undefined
  }
  afterAll(async () => {
    await Promise.all(open.map((l) => l.close()))
    await stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test("goes down with the broker, reconnects when it is back, and messages flow again", async () => {
    await start()
    const s = mqttFixture.settings({ port })
    const coord = await probe(mqttFixture, s, { identity: COORDINATORS, serveRequests: true })
    const peer = await probe(mqttFixture, s)
    await stop()
    await waitFor(() => !coord.link.connected && !peer.link.connected, { what: "links down" })
    expect({ coord: coord.states, peer: peer.states }).toEqual({ coord: [true, false], peer: [true, false] })
    await expect(peer.link.publish("requests", enc("while down"))).rejects.toThrow(/not connected/)
    await start()
    await waitFor(() => coord.link.connected && peer.link.connected, { timeoutMs: 15_000, what: "links back" })
    expect({ coord: coord.states, peer: peer.states }).toEqual({
      coord: [true, false, true],
      peer: [true, false, true],
    })
    // The broker lost every session (persistence false): both links subscribed again.
    await peer.link.publish("requests", enc("after restart"))
    await waitFor(() => coord.got.length === 1, { what: "the request after the restart" })
    await coord.link.publish(peer.self, enc("reply after restart"))
    await waitFor(() => peer.got.length === 1, { what: "the reply after the restart" })
    expect([coord.texts("requests"), peer.texts("peer")]).toEqual([["after restart"], ["reply after restart"]])
  }, 30_000)
})

describe("mqtt link reconnect backoff", () => {
  test("waits 250 ms after the first failed attempt and doubles the wait after each one", async () => {
    // A listener that accepts and closes at once: every attempt fails after its TCP connect.
    const at: number[] = []
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(s) {
          at.push(performance.now())
          s.end()
        },
        data() {},
      },
    })
    try {
      const p = await probe(mqttFixture, mqttFixture.settings({ port: server.port }), { ready: false })
      await waitFor(() => at.length >= 5, { timeoutMs: 8_000, what: "5 connection attempts" })
      await p.link.close()
      const gaps = at.slice(1, 5).map((t, i) => t - at[i]!)
      console.log(`mqtt reconnect gaps: ${gaps.map((g) => g.toFixed(0)).join(", ")} ms`)
      expect(gaps.map((g, i) => g >= 0.8 * 250 * 2 ** i && g < 250 * 2 ** i + 400)).toEqual([true, true, true, true])
    } finally {
      server.stop(true)
    }
  }, 15_000)
})

describe("mqtt link over TLS with a password", () => {
  const dir = mkdtempSync(join(tmpdir(), "dffmpeg-mosquitto-tls-"))
  const pki = makePki(dir)
  const port = freePort()
  const passwords = join(dir, "passwords")
  const made = Bun.spawnSync(["mosquitto_passwd", "-b", "-c", passwords, "dffmpeg", "s3cret"])
  if (made.exitCode !== 0) throw new Error(`mosquitto_passwd failed: ${made.stderr.toString()}`)
  const conf = join(dir, "mosquitto.conf")
  // `user root`: mosquitto started as root otherwise drops to its own user, which cannot read this temp dir.
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      `cafile ${pki.ca}`,
      `certfile ${pki.cert}`,
      `keyfile ${pki.key}`,
      "allow_anonymous false",
      `password_file ${passwords}`,
      "persistence false",
      ...(process.getuid?.() === 0 ? ["user root"] : []),
      "",
    ].join("\n"),
  )
  const broker = Bun.spawn(["mosquitto", "-c", conf], { stdout: "ignore", stderr: "pipe" })
  const base = (): MqttSettings => ({
    ...mqttFixture.settings({ port, use_tls: true, ca: readFileSync(pki.ca, "utf8") }),
    username: "dffmpeg",
    password: "s3cret",
  })
  afterAll(async () => {
    await Promise.all(open.map((l) => l.close()))
    broker.kill()
    await broker.exited
    rmSync(dir, { recursive: true, force: true })
  })

  test("connects with the CA and the password, and messages flow", async () => {
    await waitFor(() => accepts(port), { what: `mosquitto (TLS) on port ${port}` })
    const s = base()
    const coord = await probe(mqttFixture, s, { identity: COORDINATORS, serveRequests: true })
    const peer = await probe(mqttFixture, s)
    expect(peer.link.where).toBe(`mqtts://127.0.0.1:${port}`)
    await peer.link.publish("requests", enc("over tls"))
    await waitFor(() => coord.got.length === 1, { what: "the request" })
    expect(coord.texts("requests")).toEqual(["over tls"])
  })

  test("a wrong password fails ready at once, without the password in the message", async () => {
    await waitFor(() => accepts(port), { what: `mosquitto (TLS) on port ${port}` })
    const p = await probe(mqttFixture, { ...base(), password: "wrong-pw" }, { ready: false })
    const t0 = Date.now()
    const err = await p.link.ready(5_000).then(
      () => undefined,
      (e: Error) => e,
    )
    expect(err?.message).toBe(`cannot connect to the MQTT broker at mqtts://127.0.0.1:${port}: authentication failed`)
    expect(Date.now() - t0).toBeLessThan(2_000)
  })

  test("a CA that did not sign the broker's certificate fails ready with a TLS reason", async () => {
    await waitFor(() => accepts(port), { what: `mosquitto (TLS) on port ${port}` })
    const p = await probe(mqttFixture, { ...base(), ca: readFileSync(pki.wrongCa, "utf8") }, { ready: false })
    await expect(p.link.ready(1_500)).rejects.toThrow(
      /^cannot connect to the MQTT broker at mqtts:\/\/127\.0\.0\.1:\d+: TLS: /,
    )
  })
})

/** Erlang pids of this test's RabbitMQ connections (the link names them after its instance). */
function rabbitConnections(instance: string): string[] {
  const r = Bun.spawnSync(["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"])
  return r.stdout
    .toString()
    .split("\n")
    .filter((l) => l.includes(instance))
    .map((l) => l.split("\t")[0]!)
}

describe("rabbitmq link authentication", () => {
  test("a wrong password fails ready at once, without the password in the message", async () => {
    const s = rabbitFixture.settings({ password: "wrong-pw" })
    const p = await probe(rabbitFixture, s, { ready: false })
    const t0 = Date.now()
    const err = await p.link.ready(5_000).then(
      () => undefined,
      (e: Error) => e,
    )
    expect(err?.message).toBe(
      `cannot connect to the RabbitMQ broker at amqp://127.0.0.1:${AMQP_PORT}/: authentication failed`,
    )
    expect(Date.now() - t0).toBeLessThan(2_000)
  })
})

describe("rabbitmq link across a closed connection", () => {
  const s = rabbitFixture.settings()
  afterAll(async () => {
    await Promise.all(open.map((l) => l.close()))
    await rabbitFixture.cleanup(s)
  })

  test("reconnects, declares its exchanges and bindings again, and messages flow again", async () => {
    const coord = await probe(rabbitFixture, s, { identity: COORDINATORS, serveRequests: true })
    const peer = await probe(rabbitFixture, s)
    // Without the exchanges (and so the bindings) only a redeclaring link gets messages through again.
    const c = admin()
    await c.exchangeDelete({ exchange: s.workers_exchange })
    await c.exchangeDelete({ exchange: s.jobs_exchange })
    await c.close()
    const pids = [...rabbitConnections(coord.self.instance), ...rabbitConnections(peer.self.instance)]
    expect(pids.length).toBe(2)
    for (const pid of pids) {
      const r = Bun.spawnSync(["rabbitmqctl", "close_connection", pid, "test"])
      expect(r.exitCode).toBe(0)
    }
    await waitFor(() => coord.states.length >= 3 && peer.states.length >= 3, {
      timeoutMs: 15_000,
      what: "down and up again",
    })
    expect({ coord: coord.states, peer: peer.states }).toEqual({
      coord: [true, false, true],
      peer: [true, false, true],
    })
    await peer.link.publish("requests", enc("after reconnect"))
    await waitFor(() => coord.got.length === 1, { what: "the request after the reconnect" })
    await coord.link.publish(peer.self, enc("reply after reconnect"))
    await waitFor(() => peer.got.length === 1, { what: "the reply after the reconnect" })
    expect([coord.texts("requests"), peer.texts("peer")]).toEqual([["after reconnect"], ["reply after reconnect"]])
  }, 30_000)
})
