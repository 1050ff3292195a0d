import type { Logger } from "../../shared/log.ts"
import type { BrokerKind, BrokerLink, LinkOptions, MqttSettings, RabbitSettings } from "./types.ts"

/** The settings each broker kind takes. */
export interface BrokerSettings {
  mqtt: MqttSettings
  rabbitmq: RabbitSettings
}

/**
 * Opens the link of one broker kind (it starts connecting at once; await `ready`). The adapters are
 * imported on first use, so a process without brokers never loads mqtt or rabbitmq-client.
 */
export async function openLink<K extends BrokerKind>(
  kind: K,
  settings: BrokerSettings[K],
  opts: LinkOptions,
  log?: Logger,
): Promise<BrokerLink> {
  switch (kind) {
    case "mqtt": {
      const { mqttLink } = await import("./mqtt.ts")
      return mqttLink(settings as MqttSettings, opts, log)
    }
    case "rabbitmq": {
      const { rabbitLink } = await import("./rabbitmq.ts")
      return rabbitLink(settings as RabbitSettings, opts, log)
    }
  }
  throw new Error(`unknown broker kind: ${String(kind)}`)
}
