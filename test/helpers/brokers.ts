import { createServer } from "node:net"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { BrokerKind } from "../../src/shared/protocol/transports.ts"

/** The loopback test brokers (scripts/setup.sh starts them): Mosquitto 1883, RabbitMQ 5672 guest/guest. */
export const BROKER_PORTS: Record<BrokerKind, number> = { mqtt: 1883, rabbitmq: 5672 }

let n = 0
/**
 * A `transports:` block for `kind` on the loopback broker (or `port`), with names of its own (topic prefix,
 * queue prefix, exchanges), so tests in parallel files never see each other's messages.
 */
export function brokerTransports(
  kind: BrokerKind,
  o: { enabled?: string[]; port?: number; tag?: string } = {},
): Record<string, unknown> {
  const tag = o.tag ?? `t${process.pid}x${Date.now().toString(36)}x${n++}`
  const settings =
    kind === "mqtt"
      ? { host: "127.0.0.1", port: o.port ?? BROKER_PORTS.mqtt, topic_prefix: `dfft/${tag}` }
      : {
          host: "127.0.0.1",
          port: o.port ?? BROKER_PORTS.rabbitmq,
          queue_prefix: `dfft.${tag}`,
          workers_exchange: `dfft.${tag}.workers`,
          jobs_exchange: `dfft.${tag}.jobs`,
        }
  return { enabled_transports: o.enabled ?? [kind], transport_settings: { [kind]: settings } }
}

/** A TCP port nothing listens on now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

/** A Mosquitto of a test's own on `port` (tests that restart the broker never touch the shared one). */
export class OwnMosquitto {
  private proc?: ReturnType<typeof Bun.spawn>
  private readonly conf: string
  /** `tls`: the listener speaks MQTT over TLS with this certificate and key (PEM files). */
  constructor(
    readonly port: number,
    tls?: { cert: string; key: string },
  ) {
    const dir = mkdtempSync(join(tmpdir(), "dffmpeg-mosquitto-"))
    this.conf = join(dir, "mosquitto.conf")
    const certs = tls ? `certfile ${tls.cert}\nkeyfile ${tls.key}\n` : ""
    // As root, Mosquitto would drop to its own user, which cannot read a test's private key file.
    const user = process.getuid?.() === 0 ? "user root\n" : ""
    writeFileSync(this.conf, `${user}listener ${port} 127.0.0.1\n${certs}allow_anonymous true\npersistence false\n`)
  }
  /** Starts it and waits until it accepts connections. */
  async start(): Promise<void> {
    this.proc = Bun.spawn(["mosquitto", "-c", this.conf], { stdout: "ignore", stderr: "ignore" })
    const until = Date.now() + 10_000
    for (;;) {
      const ok = await Bun.connect({ hostname: "127.0.0.1", port: this.port, socket: { data() {} } })
        .then((s) => (s.end(), true))
        .catch(() => false)
      if (ok) return
      if (Date.now() > until) throw new Error(`mosquitto did not start on port ${this.port}`)
      await Bun.sleep(50)
    }
  }
  async stop(): Promise<void> {
    this.proc?.kill("SIGKILL")
    await this.proc?.exited
    this.proc = undefined
  }
}
