import { describe, expect, test } from "bun:test"
import * as v from "valibot"
import { startCoordinator } from "../../src/coordinator/index.ts"
import { generateKey } from "../../src/shared/auth/hmac.ts"
import { CoordinatorConfig } from "../../src/shared/config/server-schema.ts"
import { resolveTransports, Transports } from "../../src/shared/config/transports.ts"
import { createApiClient } from "../../src/shared/http/client.ts"
import { createLogger } from "../../src/shared/log.ts"
import type { BrokerKind } from "../../src/shared/protocol/transports.ts"
import { createSqliteStore } from "../../src/store/sqlite/index.ts"
import { createWorkerTransport, openPeerTransports } from "../../src/transports/index.ts"
import type { WorkerTransport } from "../../src/transports/types.ts"
import { testTransport } from "../conformance/transport.ts"
import { brokerTransports, freePort, OwnMosquitto } from "../helpers/brokers.ts"
import { makePki } from "../helpers/tls.ts"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { UnavailableError } from "../../src/shared/errors.ts"

const log = createLogger({ level: "error" })

/**
 * A coordinator that serves the API on `kind` only (HTTP is not among its transports), and a worker that
 * reaches it only through the broker: its HTTP target is a port nothing listens on, so a request that
 * did not go through the broker fails.
 */
async function brokerPair(
  kind: BrokerKind,
  timing: { pollWaitSeconds: number; heartbeatSeconds: number },
  transports: Record<string, unknown> = brokerTransports(kind),
) {
  const store = createSqliteStore({ path: ":memory:" })
  await store.migrate()
  const key = generateKey()
  await store.addUser("w1", "worker", key, Date.now())
  const config = v.parse(CoordinatorConfig, {
    host: "127.0.0.1",
    port: 0,
    poll_wait_seconds: timing.pollWaitSeconds,
    heartbeat_interval: timing.heartbeatSeconds,
    transports,
  })
  const service = await startCoordinator(config, { log, base: "/", store })
  const peers = await openPeerTransports({
    transports: resolveTransports(v.parse(Transports, transports), "/"),
    identity: "w1",
    key,
    log,
  })
  const through = (instance?: string): WorkerTransport => {
    const inner = createWorkerTransport({
      coordinators: [{ url: "http://127.0.0.1:9" }],
      client: "w1",
      key,
      fetch: peers.fetch,
      instance,
    })
    // The conformance registration names no transports; this worker offers the broker.
    return { ...inner, register: (reg) => inner.register({ transports: [kind], ...reg }) }
  }
  const worker = through()
  return {
    worker,
    process: through,
    workerName: "w1",
    store,
    key,
    service,
    peers,
    close: async () => {
      await peers.close()
      await service.stop()
    },
  }
}

for (const kind of ["mqtt", "rabbitmq"] as const) {
  testTransport(`${kind} (the API through the broker tunnel)`, (timing) => brokerPair(kind, timing))

  describe(`${kind}: negotiation and health`, () => {
    test("register answers the broker it picked; /health and the metrics show the broker connected", async () => {
      const pair = await brokerPair(kind, { pollWaitSeconds: 0.2, heartbeatSeconds: 0.1 })
      try {
        const reply = await pair.worker.register({ binaries: [], paths: [], maxJobs: 1, version: "t" })
        expect(reply.transport).toBe(kind)
        expect((await pair.store.getWorker("w1"))?.transport).toBe(kind)
        const health = (await (await fetch(`${pair.service.url}/health`)).json()) as {
          components: { transports: Record<string, { status: string; connected: boolean }> }
        }
        expect(health.components.transports[kind]).toMatchObject({ status: "ok", connected: true })
        const metrics = await (await fetch(`${pair.service.url}/metrics`)).text()
        expect(metrics).toContain(`dffmpeg_transport_connected{transport="${kind}"} 1`)
      } finally {
        await pair.close()
      }
    })

    test("a worker that offers only HTTP to a coordinator serving only the broker is refused with both lists", async () => {
      const pair = await brokerPair(kind, { pollWaitSeconds: 0.2, heartbeatSeconds: 0.1 })
      try {
        const err = await pair.worker
          .register({ binaries: [], paths: [], maxJobs: 1, version: "t", transports: ["http_polling"] })
          .catch((e: unknown) => e)
        expect((err as Error).message).toContain(
          `no common transport: the peer offers http_polling; this coordinator serves ${kind}`,
        )
      } finally {
        await pair.close()
      }
    })

    test("a poll over HTTP from a worker registered for the broker is told to register again", async () => {
      const pair = await brokerPair(kind, { pollWaitSeconds: 0.2, heartbeatSeconds: 0.1 })
      try {
        await pair.worker.register({ binaries: [], paths: [], maxJobs: 1, version: "t" })
        const http = createApiClient({ url: pair.service.url, client: "w1", key: pair.key })
        const res = await http.request("GET", "/api/v1/worker/poll", { query: { wait: 0 } })
        expect(res.status).toBe(409)
        expect(await res.text()).toContain(`registered for ${kind} but polled over http_polling`)
      } finally {
        await pair.close()
      }
    })
  })
}

describe("MQTT over TLS (a Mosquitto of the test's own with a certificate for 127.0.0.1)", () => {
  test("with ca_file the coordinator and the worker connect over mqtts and the API works; a CA that did not sign it is refused with one line", async () => {
    const pki = makePki(mkdtempSync(join(tmpdir(), "dffmpeg-mqtts-")))
    const port = await freePort()
    const broker = new OwnMosquitto(port, { cert: pki.cert, key: pki.key })
    await broker.start()
    try {
      const tls = (ca: string) => {
        const t = brokerTransports("mqtt", { port }) as { transport_settings: { mqtt: Record<string, unknown> } }
        Object.assign(t.transport_settings.mqtt, { use_tls: true, ca_file: ca })
        return t
      }
      const pair = await brokerPair("mqtt", { pollWaitSeconds: 0.2, heartbeatSeconds: 0.1 }, tls(pki.ca))
      try {
        const reply = await pair.worker.register({ binaries: [], paths: [], maxJobs: 1, version: "t" })
        expect(reply.transport).toBe("mqtt")
        const health = (await (await fetch(`${pair.service.url}/health`)).json()) as {
          components: { transports: { mqtt: { broker: string } } }
        }
        expect(health.components.transports.mqtt.broker).toBe(`mqtts://127.0.0.1:${port}`)
      } finally {
        await pair.close()
      }
      const err = await brokerPair("mqtt", { pollWaitSeconds: 0.2, heartbeatSeconds: 0.1 }, tls(pki.wrongCa)).catch(
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(UnavailableError)
      expect((err as Error).message).toContain(`cannot connect to the MQTT broker at mqtts://127.0.0.1:${port}`)
    } finally {
      await broker.stop()
    }
  }, 60_000)
})
