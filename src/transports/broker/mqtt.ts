import mqtt, { type IClientOptions, type MqttClient } from "mqtt"
import type { Logger } from "../../shared/log.ts"
import { brokerWhere } from "../../shared/config/transports.ts"
import {
  LinkState,
  Pending,
  RECONNECT_MAX_MS,
  RECONNECT_MIN_MS,
  checkPrefix,
  checkSize,
  definite,
  describe,
} from "./_link.ts"
import {
  type BrokerLink,
  type Channel,
  type LinkOptions,
  MAX_MESSAGE_BYTES,
  type MqttSettings,
  type PeerAddress,
  checkPeer,
} from "./types.ts"

/** A dead process's persistent session (and the peer messages queued in it) expires after this long. */
const SESSION_EXPIRY_S = 60
/** Room for the MQTT header and properties above the payload limit, in the packet size we accept. */
const HEADER_SLACK = 64 * 1024
/** A TCP connect plus CONNACK that takes longer than this is a failed attempt. */
const CONNECT_TIMEOUT_MS = 10_000
const KEEPALIVE_S = 30

/** MQTT topic names of one installation (all under `topic_prefix`). */
export function mqttTopics(prefix: string) {
  checkPrefix("topic_prefix", prefix)
  return {
    requests: `${prefix}/requests`,
    /** Shared subscription: Mosquitto hands each request to one subscriber of the group. */
    sharedRequests: `$share/${prefix.replaceAll("/", "_")}/${prefix}/requests`,
    peer: (p: PeerAddress) => `${prefix}/peer/${checkPeer(p).identity}/${p.instance}`,
    /** Every coordinator subscribes (not shared): the broker notifier's wake-ups. */
    notify: `${prefix}/notify`,
  }
}

/**
 * A client id from the process's address: only name-part characters, at most 64 (the instance first, since
 * it is what makes the id unique per process; `role` keeps the two connections of a coordinator apart).
 */
export function mqttClientId(role: "p" | "r", self: PeerAddress): string {
  return `${role}-${self.instance}-${self.identity}`.slice(0, 64)
}

/**
 * The MQTT link. The peer channel is on a persistent session (clean: false, 60 s expiry), so replies sent
 * while this process reconnects wait for it on the broker. A coordinator consumes the request channel on
 * a second, clean-session connection: Mosquitto keeps handing shared-subscription messages to a
 * disconnected persistent session, where they would sit until it expires instead of going to a live
 * coordinator.
 */
export function mqttLink(settings: MqttSettings, opts: LinkOptions, log?: Logger): BrokerLink {
  const topics = mqttTopics(settings.topic_prefix)
  const self = checkPeer(opts.self)
  const protocol = settings.use_tls ? "mqtts" : "mqtt"
  const where = brokerWhere("mqtt", settings)
  const state = new LinkState("MQTT", where, opts.onState)
  const pending = new Pending()
  let closed = false
  let closing: Promise<void> | undefined

  interface Conn {
    name: "peer" | "requests"
    client: MqttClient
    subscribed: boolean
  }

  const update = (detail: string) =>
    state.set(
      conns.every((c) => c.client.connected && c.subscribed),
      detail,
    )

  const deliver = (channel: Channel, payload: Buffer) => {
    if (closed) return
    if (payload.byteLength > MAX_MESSAGE_BYTES) {
      log?.warn("oversized broker message dropped", { where, channel, bytes: payload.byteLength })
      opts.onDropped?.("oversized")
      return
    }
    opts
      .onMessage(channel, new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength))
      .catch((e) => log?.error("broker message handler failed", { where, channel, error: e }))
  }

  const open = (name: Conn["name"], subscriptions: string[], persistent: boolean): Conn => {
    const options: IClientOptions = {
      host: settings.host,
      port: settings.port,
      protocol,
      clientId: mqttClientId(name === "peer" ? "p" : "r", self),
      clean: !persistent,
      protocolVersion: 5,
      properties: {
        ...(persistent ? { sessionExpiryInterval: SESSION_EXPIRY_S } : {}),
        maximumPacketSize: MAX_MESSAGE_BYTES + HEADER_SLACK,
      },
      keepalive: KEEPALIVE_S,
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectPeriod: RECONNECT_MIN_MS,
      // A broker that refuses us (e.g. a password changed) is retried too, with the same backoff.
      reconnectOnConnackError: true,
      // We subscribe ourselves on every connection without a session, to know when it is done.
      resubscribe: false,
      ...(settings.use_tls && settings.ca ? { ca: settings.ca } : {}),
      ...(settings.username !== undefined ? { username: settings.username } : {}),
      ...(settings.password !== undefined ? { password: settings.password } : {}),
    }
    const client = mqtt.connect(options)
    const conn: Conn = { name, client, subscribed: false }
    let wasUp = false
    client.on("connect", (ack) => {
      // mqtt.js reads reconnectPeriod each time it schedules an attempt: back to the shortest delay.
      client.options.reconnectPeriod = RECONNECT_MIN_MS
      // Small packets go at once: Nagle's algorithm against the peer's delayed ACK costs 40 ms a round trip.
      ;(client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true)
      if (wasUp) log?.info("broker reconnected", { where, conn: name, session: ack.sessionPresent })
      wasUp = true
      if (persistent && ack.sessionPresent && conn.subscribed) return update("connected")
      conn.subscribed = false
      client.subscribe(subscriptions, { qos: 1 }, (err, granted) => {
        if (closed || !client.connected) return
        const refused = subscriptions.find((_, i) => (granted?.[i]?.qos ?? 128) > 2)
        if (err || refused !== undefined) {
          const code = granted?.find((g) => g.qos > 2)?.qos
          const detail = `subscribe to ${refused ?? subscriptions.join(", ")} failed: ${err ? describe(err) : `reason code ${code}`}`
          log?.warn("broker subscribe failed", { where, conn: name, detail })
          state.error(detail)
          // Retry on a new connection (the same backoff), rather than stay connected without a subscription.
          client.stream.destroy()
          return
        }
        conn.subscribed = true
        update("connected")
      })
    })
    client.on("reconnect", () => {
      client.options.reconnectPeriod = Math.min((client.options.reconnectPeriod ?? 0) * 2, RECONNECT_MAX_MS)
    })
    client.on("error", (err) => {
      const detail = describe(err)
      // Before the first connection, a refusal is not worth waiting out: ready fails at once.
      if (!wasUp) state.error(detail, definite(detail))
      // Before the first connection `ready` says it, once; after, a refused login is worth a warning.
      log?.[wasUp && detail === "authentication failed" ? "warn" : "debug"]("broker connection error", {
        where,
        conn: name,
        detail,
      })
    })
    client.on("close", () => {
      if (closed) return
      if (conn.name === "peer") pending.rejectAll(`disconnected from the MQTT broker at ${where}`)
      if (wasUp && state.connected) log?.warn("broker disconnected", { where, conn: name })
      update("disconnected")
    })
    client.on("message", (topic, payload) => deliver(topic === topics.notify ? "notify" : name, payload))
    return conn
  }

  const conns: Conn[] = [open("peer", [topics.peer(self)], true)]
  if (opts.serveRequests) conns.push(open("requests", [topics.sharedRequests, topics.notify], false))
  const peerClient = conns[0]!.client

  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true
      state.abort()
      pending.rejectAll(`the MQTT link to ${where} was closed`)
      await Promise.all(
        conns.map(
          (c) =>
            new Promise<void>((resolve) => {
              // Connected and nothing in flight: a clean DISCONNECT that also ends the persistent session,
              // so the broker stops queueing for a process that is gone. Otherwise drop the socket.
              const force = !c.client.connected || Object.keys(c.client.outgoing).length > 0
              c.client.end(force, { reasonCode: 0, properties: { sessionExpiryInterval: 0 } }, () => resolve())
            }),
        ),
      )
      state.set(false, "closed")
    })()
    return closing
  }

  return {
    kind: "mqtt",
    where,
    get connected() {
      return state.connected
    },
    ready: (timeoutMs, keepTrying = false) => state.ready(closed, timeoutMs, keepTrying, close),
    publish(to, bytes) {
      try {
        checkSize(bytes)
        const topic = to === "requests" ? topics.requests : to === "notify" ? topics.notify : topics.peer(to)
        if (closed) throw new Error(`the MQTT link to ${where} was closed`)
        if (!state.connected) throw new Error(`not connected to the MQTT broker at ${where}`)
        // QoS 1 for every message. (QoS 0 for requests saved 42 ms a round trip on a Mosquitto without
        // set_tcp_nodelay, but a request lost under load stranded a probe: docs/operations.md, "Brokers".)
        return pending.track<void>((resolve, reject) =>
          peerClient.publish(topic, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { qos: 1 }, (err) =>
            err ? reject(err) : resolve(),
          ),
        )
      } catch (e) {
        return Promise.reject(e)
      }
    },
    close,
  }
}
