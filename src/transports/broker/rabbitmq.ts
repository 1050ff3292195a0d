import { type AsyncMessage, Connection, type Consumer, type Publisher } from "rabbitmq-client"
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
import { MESSAGE_WINDOW_MS } from "./envelope.ts"
import {
  type BrokerLink,
  type Channel,
  type LinkOptions,
  MAX_MESSAGE_BYTES,
  type PeerAddress,
  type RabbitSettings,
  checkPeer,
} from "./types.ts"

/** A dead process's peer queue (and what was queued in it) is deleted after this long without a consumer. */
const PEER_QUEUE_EXPIRES_MS = 60_000
/** Requests a coordinator holds unacknowledged at once (the rest wait in the queue for any coordinator). */
const REQUEST_PREFETCH = 64
/** Unacknowledged peer messages (replies, stream chunks) held at once. */
const PEER_PREFETCH = 256
const CONNECT_TIMEOUT_MS = 10_000
/** Opening a channel (publisher or consumer set-up) that takes longer fails, so a publish never hangs. */
const ACQUIRE_TIMEOUT_MS = 2_000
const HEARTBEAT_S = 30
/** The server's default frame_max: big messages go in fewer frames than the client default (8 KiB). */
const FRAME_MAX = 131_072

/** RabbitMQ names of one installation: queues under `queue_prefix`, the two exchanges from the settings. */
export function rabbitNames(s: RabbitSettings) {
  const prefix = checkPrefix("queue_prefix", s.queue_prefix)
  return {
    workers: checkPrefix("workers_exchange", s.workers_exchange),
    jobs: checkPrefix("jobs_exchange", s.jobs_exchange),
    requestQueue: `${prefix}.requests`,
    requestKey: "requests",
    peerQueue: (p: PeerAddress) => `${prefix}.peer.${checkPeer(p).identity}.${p.instance}`,
    peerKey: (p: PeerAddress) => `peer.${checkPeer(p).identity}.${p.instance}`,
    /** Bound to every coordinator's own queue: the broker notifier's wake-ups reach them all. */
    notifyKey: "notify",
  }
}

/**
 * The RabbitMQ link: one connection, a confirming publisher, and a consumer per channel. rabbitmq-client
 * redeclares each consumer's exchanges, queue and bindings on every reconnect. The peer queue is not
 * exclusive (an exclusive queue dies with the connection, losing what is published during a reconnect);
 * `x-expires` removes it once its process is gone.
 */
export function rabbitLink(settings: RabbitSettings, opts: LinkOptions, log?: Logger): BrokerLink {
  const names = rabbitNames(settings)
  const self = checkPeer(opts.self)
  const where = brokerWhere("rabbitmq", settings)
  const state = new LinkState("RabbitMQ", where, opts.onState)
  const pending = new Pending()
  let closed = false
  let closing: Promise<void> | undefined
  let wasUp = false

  const conn = new Connection({
    hostname: settings.host,
    port: settings.port,
    username: settings.username,
    password: settings.password,
    vhost: settings.vhost,
    tls: settings.use_tls ? (settings.ca ? { ca: settings.ca } : true) : undefined,
    connectionName: `dffmpeg ${self.identity} ${self.instance}`,
    connectionTimeout: CONNECT_TIMEOUT_MS,
    acquireTimeout: ACQUIRE_TIMEOUT_MS,
    heartbeat: HEARTBEAT_S,
    frameMax: FRAME_MAX,
    retryLow: RECONNECT_MIN_MS,
    retryHigh: RECONNECT_MAX_MS,
    noDelay: true,
  })

  const exchanges = [
    { exchange: names.workers, type: "topic", durable: true },
    { exchange: names.jobs, type: "topic", durable: true },
  ]
  const requestQueue = { queue: names.requestQueue, durable: true }
  const requestBinding = { exchange: names.workers, queue: names.requestQueue, routingKey: names.requestKey }

  const ready = new Map<Consumer, boolean>()
  const update = (detail: string) => state.set(conn.ready && [...ready.values()].every(Boolean), detail)

  const consume = (channel: "requests" | "peer", consumer: Consumer) => {
    ready.set(consumer, false)
    consumer.on("ready", () => {
      ready.set(consumer, true)
      update("connected")
    })
    consumer.on("error", (err) => {
      if (closed) return
      // Set-up failed, the server cancelled the consumer, or the connection dropped: it sets up again.
      ready.set(consumer, false)
      log?.[wasUp ? "warn" : "debug"]("broker consumer error", { where, channel, detail: describe(err) })
      update(describe(err))
    })
  }

  const handler = (queue: "requests" | "peer") => async (msg: AsyncMessage) => {
    // A coordinator's own queue also hears the notify channel (its own binding).
    const channel: Channel = queue === "peer" && msg.routingKey === names.notifyKey ? "notify" : queue
    if (closed) return
    const body = msg.body
    const bytes =
      body instanceof Uint8Array ? body : typeof body === "string" ? new TextEncoder().encode(body) : undefined
    if (!bytes) return log?.warn("broker message without a byte body dropped", { where, channel })
    if (bytes.byteLength > MAX_MESSAGE_BYTES) {
      log?.warn("oversized broker message dropped", { where, channel, bytes: bytes.byteLength })
      opts.onDropped?.("oversized")
      return
    }
    // Returning (not throwing) acks the message, and only once the handler has settled.
    try {
      await opts.onMessage(channel, bytes, msg.redelivered)
    } catch (e) {
      log?.error("broker message handler failed", { where, channel, error: e })
    }
  }

  const peerQueue = names.peerQueue(self)
  const consumers: Consumer[] = [
    conn.createConsumer(
      {
        queue: peerQueue,
        queueOptions: {
          durable: false,
          exclusive: false,
          autoDelete: false,
          arguments: { "x-expires": PEER_QUEUE_EXPIRES_MS },
        },
        qos: { prefetchCount: PEER_PREFETCH },
        concurrency: PEER_PREFETCH,
        exchanges,
        queueBindings: [
          { exchange: names.jobs, queue: peerQueue, routingKey: names.peerKey(self) },
          ...(opts.serveRequests ? [{ exchange: names.jobs, queue: peerQueue, routingKey: names.notifyKey }] : []),
        ],
      },
      handler("peer"),
    ),
  ]
  if (opts.serveRequests)
    consumers.push(
      conn.createConsumer(
        {
          queue: names.requestQueue,
          queueOptions: requestQueue,
          qos: { prefetchCount: REQUEST_PREFETCH },
          concurrency: REQUEST_PREFETCH,
          exchanges,
          queueBindings: [requestBinding],
        },
        handler("requests"),
      ),
    )
  consume("peer", consumers[0]!)
  if (consumers[1]) consume("requests", consumers[1])

  // The request queue is declared by publishers too: requests sent while no coordinator runs wait in it.
  const publisher: Publisher = conn.createPublisher({
    confirm: true,
    maxAttempts: 1,
    exchanges,
    queues: [requestQueue],
    queueBindings: [requestBinding],
  })

  conn.on("connection", () => {
    if (wasUp) log?.info("broker reconnected", { where })
    wasUp = true
    update("connecting channels")
  })
  conn.on("error", (err) => {
    if (closed) return
    const detail = describe(err)
    for (const c of consumers) ready.set(c, false)
    pending.rejectAll(`disconnected from the RabbitMQ broker at ${where}: ${detail}`)
    // Before the first connection, a refusal is not worth waiting out: ready fails at once.
    if (!wasUp) state.error(detail, definite(detail))
    else if (state.connected) log?.warn("broker disconnected", { where, detail })
    update(detail)
  })

  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true
      state.abort()
      pending.rejectAll(`the RabbitMQ link to ${where} was closed`)
      const channels = () => Promise.allSettled([...consumers.map((c) => c.close()), publisher.close()])
      if (conn.ready) {
        // Consumers first: their close waits for handlers in flight; then the socket.
        await channels()
        await conn.close()
      } else {
        // Never connected (or reconnecting): closing the connection first fails the channel set-ups that
        // wait for it, which would otherwise hold each close for ACQUIRE_TIMEOUT_MS. (Only once: a second
        // close of a connection closed while connecting waits for a socket event that already happened.)
        await conn.close()
        await channels()
      }
      state.set(false, "closed")
    })()
    return closing
  }

  return {
    kind: "rabbitmq",
    where,
    get connected() {
      return state.connected
    },
    ready: (timeoutMs, keepTrying = false) => state.ready(closed, timeoutMs, keepTrying, close),
    publish(to, bytes) {
      try {
        checkSize(bytes)
        const envelope =
          to === "requests"
            ? // A request nobody took within the tunnel's 30 s window would be refused as stale: not kept longer.
              { exchange: names.workers, routingKey: names.requestKey, expiration: String(MESSAGE_WINDOW_MS) }
            : to === "notify"
              ? { exchange: names.jobs, routingKey: names.notifyKey }
              : { exchange: names.jobs, routingKey: names.peerKey(to) }
        if (closed) throw new Error(`the RabbitMQ link to ${where} was closed`)
        if (!state.connected) throw new Error(`not connected to the RabbitMQ broker at ${where}`)
        const body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
        return pending.track<void>((resolve, reject) => {
          publisher.send({ ...envelope, durable: to === "requests" }, body).then(resolve, reject)
        })
      } catch (e) {
        return Promise.reject(e)
      }
    },
    close,
  }
}
