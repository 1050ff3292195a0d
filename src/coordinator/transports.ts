import { decodeKey } from "../shared/auth/hmac.ts"
import { brokerWhere, type ResolvedTransports } from "../shared/config/transports.ts"
import { UnavailableError } from "../shared/errors.ts"
import { newId } from "../shared/ids.ts"
import type { Logger } from "../shared/log.ts"
import type { BrokerKind, TransportName } from "../shared/protocol/transports.ts"
import type { Store } from "../store/types.ts"
import type { BrokerNotifier } from "./notify/broker.ts"
import { COORDINATORS, createTunnelServer, openLink, type BrokerLink } from "../transports/index.ts"

/** How long a coordinator waits for each broker at start before it gives up with one error line. */
export const BROKER_START_TIMEOUT_MS = 10_000

/** One broker this coordinator serves the API on, as /health and the metrics show it. */
export interface BrokerState {
  kind: BrokerKind
  where: string
  connected: boolean
  /** Requests being answered over it now. */
  open: number
  /** When it was last connected or lost, and why (the link's words). */
  since: number
  detail: string
}

export interface CoordinatorTransports {
  /** Whether a transport can carry a peer's traffic now: enabled, and for a broker, connected. */
  serves(t: TransportName): boolean
  list(): BrokerState[]
  close(): Promise<void>
}

/**
 * Connects to every broker in `transports.enabled_transports` and serves the API on each through the
 * tunnel (src/transports/broker/): requests are handled by `fetch` (the app) exactly as over HTTP, told
 * which broker they came by. A broker that cannot be reached at start is an UnavailableError (the
 * coordinator exits with one line); one lost later is reconnected by its link, with backoff, while
 * /health and `dffmpeg_transport_connected` say so and the peers that can fall back to HTTP do.
 */
export async function startTransports(o: {
  transports: ResolvedTransports
  store: Store
  fetch: (req: Request, kind: BrokerKind) => Promise<Response>
  onReject: (kind: BrokerKind, reason: string) => void
  log: Logger
  /** Wake-ups across coordinators over one of the brokers (config `notifier`). */
  notifier?: BrokerNotifier
}): Promise<CoordinatorTransports> {
  const enabled = o.transports.enabled
  const brokers: { link: BrokerLink; state: BrokerState; tunnel: ReturnType<typeof createTunnelServer> }[] = []
  const keyOf = async (identity: string) => {
    const cred = await o.store.getCredential(identity).catch(() => undefined)
    if (!cred) return undefined
    try {
      return decodeKey(cred.key)
    } catch {
      return undefined
    }
  }
  const close = async () => {
    for (const b of brokers) b.tunnel.close()
    await Promise.all(brokers.map((b) => b.link.close().catch(() => {})))
  }
  for (const kind of ["mqtt", "rabbitmq"] as const) {
    const settings = o.transports[kind]
    if (!enabled.includes(kind) || !settings) continue
    const self = { identity: COORDINATORS, instance: newId() }
    const state: BrokerState = {
      kind,
      where: brokerWhere(kind, settings),
      connected: false,
      open: 0,
      since: Date.now(),
      detail: "connecting",
    }
    const log = o.log.withTag(kind)
    const notifier = o.notifier?.kind === kind ? o.notifier : undefined
    let tunnel!: ReturnType<typeof createTunnelServer>
    const link = await openLink(
      kind,
      settings,
      {
        self,
        serveRequests: true,
        onMessage: async (channel, bytes, redelivered) => {
          if (channel !== "notify") return tunnel.receive(channel, bytes, redelivered)
          if (notifier) notifier.receive(bytes)
        },
        onDropped: (reason) => o.onReject(kind, reason),
        onState: (connected, detail) => {
          notifier?.linkState(connected, detail)
          if (connected === state.connected) return
          Object.assign(state, { connected, detail, since: Date.now() })
          if (connected) log.info(`connected to the broker at ${state.where}`)
          else log.warn(`lost the broker at ${state.where}; reconnecting`, { reason: detail })
        },
      },
      log,
    )
    tunnel = createTunnelServer({
      link,
      self,
      keyOf,
      fetch: (req) => o.fetch(req, kind),
      onReject: (reason) => o.onReject(kind, reason),
      log,
    })
    brokers.push({ link, state, tunnel })
    try {
      await link.ready(BROKER_START_TIMEOUT_MS)
    } catch (err) {
      await close()
      throw new UnavailableError(`transports: ${(err as Error).message}`)
    }
    Object.assign(state, { connected: true, detail: "connected", since: Date.now() })
    notifier?.attach(link, self)
    log.info(`serving the API over ${kind} at ${state.where}`)
  }
  return {
    serves: (t) =>
      enabled.includes(t) && (t === "http_polling" || brokers.some((b) => b.state.kind === t && b.link.connected)),
    list: () => brokers.map((b) => ({ ...b.state, connected: b.link.connected, open: b.tunnel.open })),
    close,
  }
}
