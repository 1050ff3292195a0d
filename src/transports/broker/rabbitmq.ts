import { Connection, type Consumer, type Publisher } from "rabbitmq-client"
import type { Logger } from "../../shared/log.ts"
import { PREFIX, type RabbitSettings } from "../../shared/protocol/transports.ts"
import { PUBLISH_TIMEOUT_MS, untilUp, within } from "./_link.ts"
import { checkPeer, MAX_MESSAGE_BYTES, type BrokerLink, type LinkOptions, type PeerAddress } from "./types.ts"

/** How long a dead process's queue (its peer channel) outlives it, and a request waits for a coordinator. */
const QUEUE_EXPIRES_MS = 60_000
const REQUEST_TTL_MS = 30_000
/** Requests a coordinator takes at once before acknowledging: long polls are acknowledged at once. */
const PREFETCH = 64

/** Why a connection failed, in words. */
function reasonOf(err: Error & { code?: string }): string {
  if (err.code === "ECONNREFUSED") return "connection refused"
  if (err.code === "ENOTFOUND" || err.code === "EAI_AGAIN") return "host not found"
  if (/ACCESS_REFUSED|PLAIN login refused|auth/i.test(`${err.code} ${err.message}`))
    return "the broker refused the user name or password"
  if (/NOT_ALLOWED|vhost/i.test(`${err.code} ${err.message}`))
    return `the vhost is not open to this user (${err.message})`
  return err.message || String(err.code)
}

/**
 * The RabbitMQ link (rabbitmq-client): durable topic exchanges `workers_exchange` (requests) and
 * `jobs_exchange` (peer channels), declared with their queues and bindings again on every reconnect. A
 * coordinator consumes the durable queue `<queue_prefix>.requests` (competing consumers; requests expire
 * after REQUEST_TTL_MS, when they would be refused as stale anyway); every process its own queue
 * `<queue_prefix>.peer.<identity>.<instance>`, not exclusive (a reconnect loses nothing) but expiring
 * QUEUE_EXPIRES_MS after its process is gone. Publishes wait for the publisher confirm; a message is
 * acknowledged only once its handler settled.
 */
export function rabbitLink(settings: RabbitSettings, opts: LinkOptions, log?: Logger): BrokerLink {
  checkPeer(opts.self)
  if (!PREFIX.test(settings.queue_prefix)) throw new Error(`not a valid queue_prefix: ${settings.queue_prefix}`)
  const qp = settings.queue_prefix
  const host = settings.host.includes(":") ? `[${settings.host}]` : settings.host
  const where = `${settings.use_tls ? "amqps" : "amqp"}://${host}:${settings.port}/${settings.vhost === "/" ? "" : encodeURIComponent(settings.vhost)}`
  const key = (p: PeerAddress) => `peer.${checkPeer(p).identity}.${p.instance}`
  const ownQueue = `${qp}.${key(opts.self)}`
  const requestQueue = `${qp}.requests`
  const exchanges = [
    { exchange: settings.workers_exchange, type: "topic", durable: true },
    { exchange: settings.jobs_exchange, type: "topic", durable: true },
  ]

  let lastError = "no answer yet"
  const rabbit = new Connection({
    hostname: settings.host,
    port: settings.port,
    username: settings.username,
    password: settings.password,
    vhost: settings.vhost,
    tls: settings.use_tls ? (settings.ca ? { ca: settings.ca, servername: settings.host } : true) : false,
    connectionName: `dffmpeg ${opts.self.identity} ${opts.self.instance}`,
    connectionTimeout: 5000,
    acquireTimeout: 5000,
    retryLow: 250,
    retryHigh: 5000,
    heartbeat: 15,
    frameMax: 131072,
  })
  rabbit.on("error", (err: Error & { code?: string }) => {
    lastError = reasonOf(err)
    log?.debug("RabbitMQ connection error", { reason: lastError })
  })

  const handler = (channel: "requests" | "peer") => async (msg: { body: unknown }) => {
    const body = msg.body
    const bytes =
      body instanceof Uint8Array
        ? body
        : typeof body === "string"
          ? new TextEncoder().encode(body)
          : new TextEncoder().encode(JSON.stringify(body))
    if (bytes.length > MAX_MESSAGE_BYTES) return opts.onDropped?.("oversized")
    // Acknowledged when this resolves: after the request's change was committed (the tunnel says when).
    await opts
      .onMessage(channel, bytes)
      .catch((err: Error) => log?.warn("a broker message failed", { reason: err.message }))
  }
  interface Sub {
    consumer: Consumer
    ready: boolean
  }
  const subs: Sub[] = []
  const consume = (
    queue: string,
    queueOptions: Record<string, unknown>,
    binding: { exchange: string; routingKey: string },
    channel: "requests" | "peer",
  ) => {
    const consumer = rabbit.createConsumer(
      {
        queue,
        queueOptions,
        qos: { prefetchCount: PREFETCH },
        concurrency: PREFETCH,
        requeue: false,
        exchanges,
        queueBindings: [{ queue, ...binding }],
      },
      handler(channel),
    )
    const s: Sub = { consumer, ready: false }
    consumer.on("ready", () => {
      s.ready = true
      check("connected")
    })
    consumer.on("error", (err: Error & { code?: string }) => {
      lastError = reasonOf(err)
      log?.warn("RabbitMQ consumer error", { queue, reason: lastError })
    })
    subs.push(s)
  }
  consume(
    ownQueue,
    { durable: false, exclusive: false, autoDelete: false, arguments: { "x-expires": QUEUE_EXPIRES_MS } },
    { exchange: settings.jobs_exchange, routingKey: key(opts.self) },
    "peer",
  )
  if (opts.serveRequests)
    consume(
      requestQueue,
      { durable: true, arguments: { "x-message-ttl": REQUEST_TTL_MS } },
      { exchange: settings.workers_exchange, routingKey: "requests" },
      "requests",
    )
  const publisher: Publisher = rabbit.createPublisher({ confirm: true, maxAttempts: 1, exchanges })

  let closed = false
  let was = false
  const isConnected = () => !closed && rabbit.ready && subs.every((s) => s.ready)
  const check = (detail: string) => {
    if (!rabbit.ready) for (const s of subs) s.ready = false
    const now = isConnected()
    if (now === was) return
    was = now
    opts.onState?.(now, now ? detail : lastError)
  }
  // The client says when it reconnected and resubscribed ("ready"), not always when it lost the connection.
  const watch = setInterval(() => check("connected"), 100)
  rabbit.on("connection", () => check("connected"))

  const close = async () => {
    if (closed) return
    closed = true
    clearInterval(watch)
    // Connected: consumers and publisher first, so in-flight handlers finish and are acknowledged. Not
    // connected: the connection first, or their close waits out acquireTimeout for a channel.
    const parts = () => Promise.all([...subs.map((s) => s.consumer.close()), publisher.close()]).catch(() => {})
    if (rabbit.ready) {
      await parts()
      await rabbit.close().catch(() => {})
    } else {
      await rabbit.close().catch(() => {})
      await parts()
    }
  }

  return {
    kind: "rabbitmq",
    where,
    get connected() {
      return isConnected()
    },
    ready: (timeoutMs, keepTrying = false) =>
      untilUp({
        broker: "RabbitMQ",
        where,
        timeoutMs,
        keepTrying,
        up: isConnected,
        // A refused connection or login is not worth waiting out.
        refused: () => lastError !== "no answer yet" && !rabbit.ready,
        closed: () => closed,
        lastError: () => lastError,
        close,
        onUp: () => (was = true),
      }),
    async publish(to, bytes) {
      if (!isConnected()) throw new Error(`not connected to the RabbitMQ broker at ${where}`)
      if (bytes.length > MAX_MESSAGE_BYTES) throw new Error(`a message of ${bytes.length} bytes is over the limit`)
      const envelope =
        to === "requests"
          ? { exchange: settings.workers_exchange, routingKey: "requests", expiration: String(REQUEST_TTL_MS) }
          : { exchange: settings.jobs_exchange, routingKey: key(to) }
      await within(
        publisher.send(
          { ...envelope, contentType: "application/octet-stream" },
          Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        ),
        PUBLISH_TIMEOUT_MS,
        `no confirm from ${where} within ${PUBLISH_TIMEOUT_MS} ms`,
      )
    },
    close,
  }
}
