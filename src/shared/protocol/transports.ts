/**
 * Names shared by the transports' configuration (shared/config/transports.ts) and their adapters
 * (src/transports/broker/): which transports exist, and what a name in a topic or queue may be.
 */

/** The transport names of `transports.enabled_transports`, as in the reference. */
export const TRANSPORT_NAMES = ["http_polling", "mqtt", "rabbitmq"] as const
export type TransportName = (typeof TRANSPORT_NAMES)[number]
export type BrokerKind = Exclude<TransportName, "http_polling">

/**
 * A name part that goes into a topic or queue name: 1-64 letters, digits, '_' or '-' (what `client_id`
 * allows). No MQTT wildcard (`+`, `#`), no separator (`/`, `.`), nothing empty.
 */
export const NAME_PART = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

/** A prefix of topic or queue names: 1-4 name parts joined by '/' (MQTT) or '.' (RabbitMQ). */
export const PREFIX = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}([./][A-Za-z0-9][A-Za-z0-9_-]{0,63}){0,3}$/

/** Settings of an MQTT broker (config `transports.transport_settings.mqtt`, resolved: passwords read). */
export interface MqttSettings {
  host: string
  port: number
  username?: string
  password?: string
  use_tls: boolean
  /** PEM text of the CA that signs the broker's certificate (read from ca_file). */
  ca?: string
  /** Every topic starts with it (default `dffmpeg`). */
  topic_prefix: string
}

/** Settings of a RabbitMQ broker (config `transports.transport_settings.rabbitmq`, resolved). */
export interface RabbitSettings {
  host: string
  port: number
  username: string
  password: string
  vhost: string
  use_tls: boolean
  ca?: string
  /** Exchange of the request channel (default `dffmpeg.workers`). */
  workers_exchange: string
  /** Exchange of the peer channels (default `dffmpeg.jobs`). */
  jobs_exchange: string
  /** Every queue name starts with it (default `dffmpeg`), so two installations can share a vhost. */
  queue_prefix: string
}
