import { describe, expect, test } from "bun:test"
import * as v from "valibot"
import { testCoordinatorWakeups, testNotifier } from "../../../test/conformance/notifier.ts"
import { BROKER_PORTS, brokerTransports } from "../../../test/helpers/brokers.ts"
import { TcpProxy } from "../../../test/helpers/tcp-proxy.ts"
import { memoryKeyring } from "../../shared/auth/keyring.ts"
import { CoordinatorConfig } from "../../shared/config/server-schema.ts"
import { resolveTransports, Transports } from "../../shared/config/transports.ts"
import { newId } from "../../shared/ids.ts"
import { createLogger } from "../../shared/log.ts"
import type { BrokerKind, MqttSettings, RabbitSettings } from "../../shared/protocol/transports.ts"
import { createStore } from "../../store/index.ts"
import { COORDINATORS, openLink, seal } from "../../transports/index.ts"
import { startCoordinator } from "../index.ts"
import { BrokerNotifier, notifyKey } from "./broker.ts"

/** A coordinator's link and broker notifier on `kind` (through `port` when given: a proxy the test cuts). */
async function notifierOn(
  kind: BrokerKind,
  settings: MqttSettings | RabbitSettings,
  keys = memoryKeyring(),
  rejected: string[] = [],
) {
  const self = { identity: COORDINATORS, instance: newId() }
  const n = new BrokerNotifier({ kind, keys, onReject: (r) => rejected.push(r), deadlineMs: 5000 })
  const link = await openLink(kind, settings, {
    self,
    serveRequests: true,
    onMessage: async (channel, bytes) => {
      if (channel === "notify") n.receive(bytes)
    },
    onState: (connected, detail) => n.linkState(connected, detail),
  })
  await link.ready(10_000)
  n.attach(link, self)
  expect(await n.start()).toBe(true)
  const close = n.close.bind(n)
  n.close = async () => {
    await close()
    await link.close()
  }
  return n
}

const settingsOf = (kind: BrokerKind, port?: number) => {
  const t = resolveTransports(v.parse(Transports, brokerTransports(kind)), "/")
  const s = t[kind]!
  return port ? { ...s, port } : s
}

for (const kind of ["mqtt", "rabbitmq"] as const) {
  // The notifier contract over each broker: two coordinators' notifiers on one installation's names.
  testNotifier(`${kind} broker`, {
    remote: true,
    async pair(proxied) {
      const settings = settingsOf(kind)
      const keys = memoryKeyring()
      const proxy = proxied ? TcpProxy.start({ host: "127.0.0.1", port: BROKER_PORTS[kind] }) : undefined
      const a = await notifierOn(kind, settings, keys)
      const b = await notifierOn(kind, proxy ? { ...settings, port: proxy.port } : settings, keys)
      return { a, b, proxy }
    },
  })

  describe(`${kind} broker notifier: hostile messages`, () => {
    test("a notification signed with another secret, or not a list of topics, is dropped and counted", async () => {
      const settings = settingsOf(kind)
      const rejected: string[] = []
      const b = await notifierOn(kind, settings, memoryKeyring(), rejected)
      try {
        const t = `job:${newId()}:output`
        const sub = b.subscribe(t)
        const other = memoryKeyring().current()
        const from = { identity: COORDINATORS, instance: newId() }
        const link = await openLink(kind, settings, { self: from, serveRequests: false, onMessage: async () => {} })
        await link.ready(10_000)
        const body = new TextEncoder().encode(JSON.stringify([t]))
        await link.publish(
          "notify",
          seal(notifyKey(other), { t: "notify", who: `_secret:${other.id}`, from, id: newId(), seq: 0 }, body),
        )
        await link.publish("notify", new Uint8Array([1, 2, 3]))
        const deadline = Date.now() + 10_000
        while (rejected.length < 2 && Date.now() < deadline) await Bun.sleep(10)
        expect(rejected).toEqual(["unsigned", "malformed"])
        // Nothing woke the subscriber.
        const t0 = performance.now()
        await sub.wait(100)
        expect(performance.now() - t0).toBeGreaterThanOrEqual(90)
        sub.close()
        await link.close()
      } finally {
        await b.close()
      }
    })
  })
}

// Push wake-ups for MariaDB: the change sequence is read only every minute, so only the broker can wake
// the other coordinator within the test's 10 s.
testCoordinatorWakeups("mysql", {
  over: { transports: brokerTransports("mqtt", { enabled: ["mqtt", "http_polling"] }), notifier: "mqtt" },
  notifier: "mqtt",
  interval: 60_000,
})

describe("broker notifier configuration", () => {
  test("a broker notifier whose broker is not enabled is a configuration error", async () => {
    const config = v.parse(CoordinatorConfig, { host: "127.0.0.1", port: 0, notifier: "rabbitmq" })
    const store = await createStore({ database: { engine: "sqlite", path: ":memory:" }, keys: memoryKeyring() })
    await store.migrate()
    await expect(startCoordinator(config, { log: createLogger({ level: "error" }), base: "/", store })).rejects.toThrow(
      "notifier: rabbitmq is not in transports.enabled_transports",
    )
  })
})
