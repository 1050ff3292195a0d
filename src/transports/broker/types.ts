/**
 * Broker transports (MQTT, RabbitMQ): the seam between the broker adapters (mqtt.ts, rabbitmq.ts: how
 * bytes reach a broker and come back) and the tunnel (envelope.ts, requester.ts, server.ts: what the
 * bytes mean). The design, in docs/protocol.md "Broker transports":
 *
 * - The API is the protocol: a peer (worker, client, shim, admin) sends its signed API request as one
 *   broker message to the coordinators; exactly one coordinator takes it (a shared subscription / one
 *   shared queue), runs it through the same Hono app the HTTP listener serves, and sends the response
 *   back to that one peer process as a head message and numbered body chunks, with a credit window the
 *   peer opens by acknowledging chunks (memory per stream is bounded on both sides).
 * - Every message is an envelope signed with HMAC-SHA256 by the identity's key (the peer signs what it
 *   sends with its key; the coordinator signs what it sends to a peer with that peer's key), checked
 *   before use: unsigned, tampered, stale, replayed and wrongly-addressed messages are dropped and counted.
 * - The database stays the only source of truth: a lost broker message is a request that times out or a
 *   stream that stalls, and the peer repeats it (idempotent requests) or resumes it after its cursor,
 *   exactly as over HTTP after a lost connection.
 */

/** The broker transports, by their configuration names. */
export type BrokerKind = "mqtt" | "rabbitmq"
/** Every transport name a configuration may list (`transports.enabled_transports`). */
export type TransportName = "http_polling" | BrokerKind

/** Which exchange (RabbitMQ) a peer's traffic goes through: workers, or callers (clients, shims, admins). */
export type PeerRole = "worker" | "client"

/** Identities and instances in channel names: no wildcard, separator or empty part can be built from them. */
export const IDENTITY_PART = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/
/** A process instance: a ULID (Crockford base32, 26 characters). */
export const INSTANCE_PART = /^[0-9A-HJKMNP-TV-Z]{26}$/

/**
 * Where a message goes. Adapters map each to their own names (docs/protocol.md has the table):
 * - `request`: a peer's message to the coordinators (published by the peer, with its identity in the name
 *   so that broker ACLs can bind an identity to its own request channel);
 * - `requests`: what coordinators consume: every peer's `request`, each message to exactly one coordinator;
 * - `peer`: messages to one process of an identity (responses, chunks);
 * - `notify`: every coordinator (fan-out; the notifier across coordinators).
 */
export type Channel =
  | { kind: "request"; role: PeerRole; identity: string }
  | { kind: "requests" }
  | { kind: "peer"; role: PeerRole; identity: string; instance: string }
  | { kind: "notify" }

/** Where a consumed message came from, as the broker's names say (checked against the envelope's sender). */
export interface Delivery {
  body: Uint8Array
  /** For `requests`: the identity the request channel names. */
  identity?: string
}

/** A message handler; its promise settling is the message's acknowledgement (RabbitMQ acks after it). */
export type Handler = (d: Delivery) => Promise<void> | void

/** Largest message body a link sends or takes (bytes); a larger one is refused before it goes out. */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024 + 64 * 1024

/** One connection to a broker, reconnecting by itself with backoff for as long as it is open. */
export interface BrokerLink {
  readonly kind: BrokerKind
  /** host:port (never credentials), for logs and /health. */
  readonly display: string
  /** Whether the link is up now (connected, channels declared, consumers subscribed). */
  readonly connected: boolean
  /**
   * Sends `body` to `channel` and resolves once the broker took it (MQTT QoS 1 PUBACK, RabbitMQ publisher
   * confirm). Rejects with UnavailableError when the broker did not take it within `timeoutMs` (default
   * 5000), and with InvalidError for a name part that fails IDENTITY_PART/INSTANCE_PART or a body over
   * MAX_MESSAGE_BYTES.
   */
  publish(channel: Channel, body: Uint8Array, opts?: { timeoutMs?: number }): Promise<void>
  /**
   * Consumes `channel` (`requests`, `peer` of this process, or `notify`) until the returned function is
   * called. Consumers are declared again after every reconnect (durable topology for `requests`).
   */
  consume(channel: Channel, handler: Handler): Promise<() => Promise<void>>
  /** Called on every change of `connected` (true after a reconnect: the time to resync). */
  onStatus(fn: (connected: boolean, reason?: string) => void): () => void
  /** Stops reconnecting and closes the connection (publishes in flight settle first). */
  close(): Promise<void>
}

/** `transports.transport_settings.<kind>` after defaults (shared/config). */
export interface BrokerSettings {
  host: string
  port: number
  username?: string
  /** Already read from password_file when one was given. */
  password?: string
  use_tls: boolean
  /** PEM of the CA that signs the broker's certificate (ca_file, read). */
  ca?: string
  /** MQTT: prefix of every topic (no leading or trailing '/'). */
  topic_prefix: string
  /** RabbitMQ. */
  vhost: string
  workers_exchange: string
  jobs_exchange: string
}

export interface LinkOptions {
  /** This process: whose identity and which instance (its `peer` channel, its MQTT client id). */
  identity: string
  instance: string
  /** The first connection's deadline (ms); later losses are retried forever with backoff. */
  connectTimeoutMs?: number
  log?: import("../../shared/log.ts").Logger
}
