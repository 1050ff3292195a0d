import type { Logger } from "../../shared/log.ts"
import type { BrokerKind, MqttSettings, RabbitSettings } from "../../shared/protocol/transports.ts"
import { mqttLink } from "./mqtt.ts"
import { rabbitLink } from "./rabbitmq.ts"
import type { BrokerLink, LinkOptions } from "./types.ts"

/** The link of a broker kind, with its resolved settings (shared/config/transports.ts). */
export function openLink(
  kind: BrokerKind,
  settings: MqttSettings | RabbitSettings,
  opts: LinkOptions,
  log?: Logger,
): BrokerLink {
  return kind === "mqtt"
    ? mqttLink(settings as MqttSettings, opts, log)
    : rabbitLink(settings as RabbitSettings, opts, log)
}
