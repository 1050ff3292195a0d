/**
 * The broker link: the one thing a broker transport (MQTT, RabbitMQ) must do for dffmpeg. It moves opaque,
 * already-signed byte messages between two kinds of channel and says whether it is connected; the tunnel
 * (tunnel.ts) builds the API on top of it, so the adapters know nothing of jobs, keys or HTTP.
 *
 * - The **request channel** is shared by every coordinator on the broker: a message published to it reaches
 *   exactly one of the coordinators that consume it (an MQTT shared subscription, one durable RabbitMQ queue).
 * - A **peer channel** belongs to one running process (`PeerAddress`: its identity and a per-process
 *   instance id): replies and stream chunks for that process go there, and only it consumes it.
 *
 * Delivery is at least once and may reorder across reconnects; the tunnel signs, numbers and dedupes every
 * message, and the database stays the truth: a lost message is retried by whoever waits for its answer.
 */

export {
  NAME_PART,
  PREFIX,
  TRANSPORT_NAMES,
  type BrokerKind,
  type MqttSettings,
  type RabbitSettings,
  type TransportName,
} from "../../shared/protocol/transports.ts"
import { NAME_PART, type BrokerKind } from "../../shared/protocol/transports.ts"

/** One process's channel: the identity it authenticates as and its instance id (a ULID, per process). */
export interface PeerAddress {
  identity: string
  instance: string
}

/** The identity part of a coordinator's own peer channel (not a valid user name: users cannot take it). */
export const COORDINATORS = "_coordinators"

/** Largest message a link publishes or accepts (header and body): bigger ones are refused, never sent. */
export const MAX_MESSAGE_BYTES = 17 * 1024 * 1024

/**
 * Where a message came: the shared request channel, this process's own channel, or (coordinators only)
 * the notify channel, which every coordinator of the broker hears (the broker notifier,
 * coordinator/notify/broker.ts).
 */
export type Channel = "requests" | "peer" | "notify"

export interface LinkOptions {
  /** The process's own channel; the link consumes it, and nothing else of the peer channels. */
  self: PeerAddress
  /** A coordinator: also consume the shared request channel and hear the notify channel. */
  serveRequests: boolean
  /**
   * Called for every message that arrives, with the channel it came on. The link acknowledges the message
   * to the broker only after the promise settles (RabbitMQ; MQTT acks QoS 1 on receipt), and never lets a
   * rejection escape. Messages over MAX_MESSAGE_BYTES are dropped before this is called (and `onDropped`).
   */
  onMessage(channel: Channel, bytes: Uint8Array, redelivered?: boolean): Promise<void>
  /** A message dropped by the link itself (oversized), for the rejected-messages metric. */
  onDropped?(reason: "oversized"): void
  /** Connected (and subscribed) or not: every change, after the first connection too. */
  onState?(connected: boolean, detail: string): void
}

export interface BrokerLink {
  readonly kind: BrokerKind
  /** Where the broker is, for logs (`mqtt://host:port`, `amqp://host:port/vhost`), never with a password. */
  readonly where: string
  /** True while connected and subscribed to every channel this link consumes. */
  readonly connected: boolean
  /**
   * Resolves once connected and subscribed; rejects with an Error whose message says why (refused,
   * authentication failed, TLS, timed out) when the first connection does not succeed within `timeoutMs`
   * (at once when the broker refused it). Then the link is closed, unless `keepTrying`: it goes on
   * connecting in the background (`onState` says when it is up). Once up, the link reconnects by
   * itself, with backoff, for as long as it is open.
   */
  ready(timeoutMs: number, keepTrying?: boolean): Promise<void>
  /**
   * Publishes one message to the request channel, the notify channel (every coordinator hears it) or a
   * peer's channel, and resolves once the broker took it (MQTT PUBACK at QoS 1, RabbitMQ publisher
   * confirm). Rejects at once when not connected (a caller that waits for an answer retries or fails over; nothing is queued
   * in memory without bound).
   */
  publish(to: "requests" | "notify" | PeerAddress, bytes: Uint8Array): Promise<void>
  /** Disconnects; pending publishes reject; no more `onMessage` after it resolves. */
  close(): Promise<void>
}

/** Throws when a peer address would not make a safe topic or queue name part. */
export function checkPeer(p: PeerAddress): PeerAddress {
  if ((p.identity !== COORDINATORS && !NAME_PART.test(p.identity)) || !NAME_PART.test(p.instance))
    throw new Error(`not a valid broker channel name: ${JSON.stringify(p)}`)
  return p
}
