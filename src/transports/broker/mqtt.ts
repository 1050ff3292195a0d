import mqtt, { type IClientOptions, type MqttClient } from "mqtt"
import type { Logger } from "../../shared/log.ts"
import { PREFIX, type MqttSettings } from "../../shared/protocol/transports.ts"
import { PUBLISH_TIMEOUT_MS, untilUp, within } from "./_link.ts"
import { checkPeer, MAX_MESSAGE_BYTES, type BrokerLink, type LinkOptions, type PeerAddress } from "./types.ts"

/** First reconnect delay; it doubles up to RECONNECT_MAX_MS while the broker stays away. */
const RECONNECT_MIN_MS = 250
const RECONNECT_MAX_MS = 5000
/** How long a dead process's persistent session (its peer channel) outlives it on the broker. */
const SESSION_EXPIRY_SECONDS = 60

/** Why a connection attempt failed, in words (mqtt.js errors carry a code, CONNACK refusals a reason). */
function reasonOf(err: Error & { code?: string | number }): string {
  const code = err.code
  if (code === "ECONNREFUSED") return "connection refused"
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "host not found"
  if (code === "ETIMEDOUT") return "timed out"
  if (code === 4 || code === 134 || code === 5 || code === 135 || /not authori[sz]ed|bad user name/i.test(err.message))
    return "the broker refused the user name or password"
  return err.message || String(code)
}

/**
 * The MQTT link (mqtt.js, QoS 1): the process's own channel `<topic_prefix>/peer/<identity>/<instance>` on a
 * persistent session (MQTT 5, expiring SESSION_EXPIRY_SECONDS after the process is gone, so a reconnect
 * loses nothing sent meanwhile), and for a coordinator the request channel `<topic_prefix>/requests`
 * through a shared subscription on a separate clean session: Mosquitto keeps handing shared-subscription
 * messages to a persistent session whose process died, so requests would wait for a coordinator that is
 * gone. Subscriptions are made again on every connection; reconnects back off from 250 ms to 5 s.
 */
export function mqttLink(settings: MqttSettings, opts: LinkOptions, log?: Logger): BrokerLink {
  checkPeer(opts.self)
  if (!PREFIX.test(settings.topic_prefix)) throw new Error(`not a valid topic_prefix: ${settings.topic_prefix}`)
  const prefix = settings.topic_prefix
  const requests = `${prefix}/requests`
  const group = prefix.replace(/[/.]/g, "_")
  const peerTopic = (p: PeerAddress) => `${prefix}/peer/${checkPeer(p).identity}/${p.instance}`
  const own = peerTopic(opts.self)
  const host = settings.host.includes(":") ? `[${settings.host}]` : settings.host
  const where = `${settings.use_tls ? "mqtts" : "mqtt"}://${host}:${settings.port}`

  // Not a URL string: a compiled binary would print url.parse()'s deprecation warning on stderr.
  const base: IClientOptions = {
    host: settings.host,
    port: settings.port,
    protocol: settings.use_tls ? "mqtts" : "mqtt",
    ...(settings.ca ? { ca: settings.ca } : {}),
    ...(settings.username !== undefined ? { username: settings.username } : {}),
    ...(settings.password !== undefined ? { password: settings.password } : {}),
    protocolVersion: 5,
    reconnectPeriod: RECONNECT_MIN_MS,
    connectTimeout: 5000,
    keepalive: 15,
    resubscribe: false,
  }
  const id = `dff-${opts.self.identity}-${opts.self.instance}`

  interface Conn {
    client: MqttClient
    topic: string
    channel: "requests" | "peer"
    subscribed: boolean
  }
  const conns: Conn[] = []
  let closed = false
  let lastError = "no answer yet"
  let wasConnected = false
  /** A connection closed before the link was ever up: at start, that is a broker we cannot reach. */
  let failedEarly = false
  const isConnected = () => !closed && conns.every((c) => c.client.connected && c.subscribed)
  const report = (detail: string) => {
    const now = isConnected()
    if (now === wasConnected) return
    wasConnected = now
    opts.onState?.(now, detail)
  }

  const open = (clientId: string, topic: string, channel: "requests" | "peer", persistent: boolean) => {
    const client = mqtt.connect({
      ...base,
      clientId,
      clean: !persistent,
      properties: {
        ...(persistent ? { sessionExpiryInterval: SESSION_EXPIRY_SECONDS } : {}),
        maximumPacketSize: MAX_MESSAGE_BYTES + 64 * 1024,
      },
    })
    const c: Conn = { client, topic, channel, subscribed: false }
    conns.push(c)
    client.on("connect", () => {
      client.options.reconnectPeriod = RECONNECT_MIN_MS
      client
        .subscribeAsync(topic, { qos: 1 })
        .then(() => {
          c.subscribed = true
          report("connected")
        })
        .catch((err: Error) => {
          lastError = `subscribing to ${topic} failed: ${err.message}`
          log?.warn("MQTT subscribe failed", { topic, reason: err.message })
        })
    })
    client.on("close", () => {
      c.subscribed = false
      if (!wasConnected) failedEarly = true
      // Backing off while the broker stays away.
      client.options.reconnectPeriod = Math.min(
        RECONNECT_MAX_MS,
        (client.options.reconnectPeriod ?? 0) * 2 || RECONNECT_MIN_MS,
      )
      report(lastError === "no answer yet" ? "the connection closed" : lastError)
    })
    client.on("error", (err) => {
      lastError = reasonOf(err as Error & { code?: string })
    })
    client.on("message", (_topic, payload) => {
      const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength)
      if (bytes.length > MAX_MESSAGE_BYTES) return opts.onDropped?.("oversized")
      opts
        .onMessage(channel, bytes)
        .catch((err: Error) => log?.warn("a broker message failed", { reason: err.message }))
    })
  }
  open(id, own, "peer", true)
  if (opts.serveRequests) open(`${id}-r`, `$share/${group}/${requests}`, "requests", false)

  const close = async () => {
    if (closed) return
    closed = true
    await Promise.all(conns.map((c) => c.client.endAsync(true).catch(() => {})))
  }

  return {
    kind: "mqtt",
    where,
    get connected() {
      return isConnected()
    },
    ready: (timeoutMs, keepTrying = false) =>
      untilUp({
        broker: "MQTT",
        where,
        timeoutMs,
        keepTrying,
        up: isConnected,
        refused: () => failedEarly,
        closed: () => closed,
        lastError: () => lastError,
        close,
        onUp: () => (wasConnected = true),
      }),
    async publish(to, bytes) {
      if (!isConnected()) throw new Error(`not connected to the MQTT broker at ${where}`)
      if (bytes.length > MAX_MESSAGE_BYTES) throw new Error(`a message of ${bytes.length} bytes is over the limit`)
      const topic = to === "requests" ? requests : peerTopic(to)
      await within(
        conns[0]!.client.publishAsync(topic, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { qos: 1 }),
        PUBLISH_TIMEOUT_MS,
        `no PUBACK from ${where} within ${PUBLISH_TIMEOUT_MS} ms`,
      )
    },
    close,
  }
}
