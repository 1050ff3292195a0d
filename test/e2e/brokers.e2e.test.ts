import { afterEach, describe, expect, test } from "bun:test"
import { copyFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { BIN } from "../helpers/bin.ts"
import { brokerTransports, freePort, OwnMosquitto } from "../helpers/brokers.ts"
import { Cluster } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"

/**
 * Broker transports with the compiled binary as real processes: workers on different transports side by
 * side, a broker lost and back (a Mosquitto of the test's own), the HTTP fallback, liveness proven over
 * the negotiated channel, and start-up against a broker that is not there.
 */

interface WorkerRow {
  id: string
  status: string
  transport?: string
}

let c: Cluster | undefined
let broker: OwnMosquitto | undefined
afterEach(async () => {
  await c?.stop()
  await broker?.stop()
  c = undefined
  broker = undefined
})

const workers = async (cl: Cluster): Promise<WorkerRow[]> => {
  const r = await cl.admin(["workers", "ls", "--json"])
  if (r.code !== 0) throw new Error(r.err)
  return JSON.parse(r.out)
}
const workerRow = async (cl: Cluster, id: string) => (await workers(cl)).find((w) => w.id === id)

/** Polls until `cond` holds for worker `id`'s row, or fails with the cluster's logs. */
async function untilWorker(cl: Cluster, id: string, cond: (w: WorkerRow | undefined) => boolean, ms = 30_000) {
  const end = Date.now() + ms
  let last: WorkerRow | undefined
  while (Date.now() < end) {
    last = await workerRow(cl, id)
    if (cond(last)) return last
    await Bun.sleep(100)
  }
  throw new Error(`worker ${id} never reached the state; last ${JSON.stringify(last)}\n${cl.logs()}`)
}

/** A one-second transcode through the proxy; its output probed by local ffprobe. */
async function transcode(cl: Cluster, name: string) {
  const media = join(cl.clientMedia, "av.mkv")
  const out = join(cl.clientMedia, name)
  const r = await cl.run("ffmpeg", ["-v", "error", "-y", "-i", media, "-t", "1", "-c:v", "mpeg4", "-c:a", "aac", out])
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.err}\n${cl.logs()}`)
  const probe = await cl.local("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", out])
  expect(Number(probe.out)).toBeGreaterThan(0.5)
}

describe("broker transports (compiled binary)", () => {
  test("workers on MQTT, RabbitMQ and HTTP side by side: each registered on its own, jobs run on all", async () => {
    const mqtt = brokerTransports("mqtt")
    const rabbit = brokerTransports("rabbitmq")
    const both = {
      enabled_transports: ["mqtt", "rabbitmq", "http_polling"],
      transport_settings: {
        ...(mqtt.transport_settings as object),
        ...(rabbit.transport_settings as object),
      },
    }
    c = await Cluster.start({
      workers: 3,
      maxJobs: 1,
      startWorkers: false,
      coordinatorConfig: { transports: both, heartbeat_interval: 0.5 },
      clientConfig: { transports: both },
    })
    copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
    await c.startWorker("worker1", { transports: mqtt })
    await c.startWorker("worker2", { transports: rabbit })
    await c.startWorker("worker3", {})
    await untilWorker(c, "worker1", (w) => w?.status === "online" && w.transport === "mqtt")
    await untilWorker(c, "worker2", (w) => w?.status === "online" && w.transport === "rabbitmq")
    await untilWorker(c, "worker3", (w) => w?.status === "online" && w.transport === undefined)
    // Three at once on one-slot workers: one each.
    await Promise.all([transcode(c, "a.mp4"), transcode(c, "b.mp4"), transcode(c, "c.mp4")])
    const ran = new Set((await c.jobs()).map((j) => j.workerId))
    expect(ran).toEqual(new Set(["worker1", "worker2", "worker3"]))
  }, 120_000)

  test("the broker lost: a worker that lists HTTP after it falls back and jobs go on; it returns when the broker does", async () => {
    const port = await freePort()
    broker = new OwnMosquitto(port)
    await broker.start()
    const transports = brokerTransports("mqtt", { port, enabled: ["mqtt", "http_polling"] })
    c = await Cluster.start({
      workers: 1,
      startWorkers: false,
      coordinatorConfig: { transports, heartbeat_interval: 0.5, registration_interval: 1 },
      clientConfig: { transports },
    })
    copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
    await c.startWorker("worker1", { transports })
    await untilWorker(c, "worker1", (w) => w?.status === "online" && w.transport === "mqtt")
    await transcode(c, "before.mp4")
    await broker.stop()
    await untilWorker(c, "worker1", (w) => w?.status === "online" && w.transport === undefined)
    await c.coordinator.waitForLine(/lost the broker/)
    const health = (await (await fetch(`${c.url}/health`)).json()) as {
      components: { transports: { mqtt: { status: string } } }
    }
    expect(health.components.transports.mqtt.status).toBe("reconnecting")
    // The proxy finds the broker gone and uses HTTP.
    await transcode(c, "during.mp4")
    await broker.start()
    await untilWorker(c, "worker1", (w) => w?.status === "online" && w.transport === "mqtt")
    await transcode(c, "after.mp4")
    expect((await c.jobs()).filter((j) => j.status === "completed").length).toBe(3)
  }, 120_000)

  test("a worker that lists only the broker goes offline while the broker is lost, and comes back online after", async () => {
    const port = await freePort()
    broker = new OwnMosquitto(port)
    await broker.start()
    const transports = brokerTransports("mqtt", { port })
    c = await Cluster.start({
      workers: 1,
      startWorkers: false,
      coordinatorConfig: {
        transports: { ...transports, enabled_transports: ["mqtt", "http_polling"] },
        heartbeat_interval: 0.3,
        janitor: { interval: 0.2, jitter: 0 },
        poll_wait_seconds: 1,
      },
    })
    await c.startWorker("worker1", { transports })
    await untilWorker(c, "worker1", (w) => w?.status === "online" && w.transport === "mqtt")
    await broker.stop()
    await untilWorker(c, "worker1", (w) => w?.status === "offline")
    await broker.start()
    await untilWorker(c, "worker1", (w) => w?.status === "online" && w.transport === "mqtt")
  }, 120_000)

  test.each(["mqtt", "rabbitmq"] as const)(
    "%s not reachable at start: the coordinator and the worker each exit 4 with one line naming the broker",
    async (kind) => {
      const port = await freePort()
      const transports = brokerTransports(kind, { port })
      c = await Cluster.start({ workers: 1, startWorkers: false })
      const cfg = join(c.dir, "broken.yaml")
      writeFileSync(
        cfg,
        JSON.stringify({ host: "127.0.0.1", port: 0, database: { path: "./coordinator.db" }, transports }),
      )
      const coord = await c.exec([BIN, "coordinator", "--config", cfg], { timeoutMs: 30_000 })
      expect(coord.code).toBe(4)
      const lines = coord.err
        .trim()
        .split("\n")
        .filter((l) => /error|dffmpeg:/i.test(l))
      expect(lines.length).toBe(1)
      expect(lines[0]).toContain(`127.0.0.1:${port}`)
      const w = c.spawnWorker("worker1", { transports })
      expect(await w.exited).toBe(4)
      expect(w.log()).toContain(`127.0.0.1:${port}`)
    },
    60_000,
  )
})
