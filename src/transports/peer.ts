import { brokerWhere, type ResolvedTransports } from "../shared/config/transports.ts"
import { decodeKey } from "../shared/auth/hmac.ts"
import { UnavailableError } from "../shared/errors.ts"
import { newId } from "../shared/ids.ts"
import { createLogger, type Logger } from "../shared/log.ts"
import type { BrokerKind, TransportName } from "../shared/protocol/transports.ts"
import { openLink } from "./broker/index.ts"
import { createRequester, type Requester } from "./broker/requester.ts"
import type { BrokerLink } from "./broker/types.ts"

/** How long a peer waits for each broker at start before it gives up with one error line. */
export const PEER_START_TIMEOUT_MS = 10_000
/** A broker that no coordinator answered on is skipped (HTTP fallback) for this long before it is tried again. */
export const UNANSWERED_MS = 30_000

type Fetch = (url: string, init: RequestInit & { tls?: { ca: string } }) => Promise<Response>

/** How a worker, client or admin reaches its coordinators: HTTP and the brokers of its `transports:` block. */
export interface PeerTransports {
  /** `createApiClient`'s `fetch`: each request over the transport in use (see `current`). */
  fetch: Fetch
  /** The transports that can carry a request now, in the order of preference (registrations send it). */
  usable(): TransportName[]
  /** Uses `t` from now on (the coordinator's pick at registration), while it is usable. */
  pin(t: TransportName): void
  /** The transport requests go by now: the pinned one if usable, else the first usable one. */
  readonly current: TransportName
  /** Called when a broker link is lost or comes back (a worker registers again: its channel changed). */
  onChange(cb: () => void): void
  close(): Promise<void>
}

interface Broker {
  kind: BrokerKind
  link: BrokerLink
  requester: Requester
  /** Until when it is skipped: no coordinator answered on it. */
  skipUntil: number
}

/**
 * Opens a link to every broker in `enabled` (waiting for each, PEER_START_TIMEOUT_MS at most: one that
 * cannot be reached is an UnavailableError, one clear line, unless the list has another transport to use
 * meanwhile) and returns the fetch that sends each request
 * over the transport in use. A request over a broker that fails without any answer (its link is down, or
 * no coordinator serves that broker) is sent again over the next usable transport of the list, HTTP
 * included when it is listed: jobs keep moving, and the broker is skipped for UNANSWERED_MS.
 */
export async function openPeerTransports(o: {
  transports: ResolvedTransports
  identity: string
  key: string
  log: Logger
}): Promise<PeerTransports> {
  const enabled = o.transports.enabled
  const key = decodeKey(o.key)
  const brokers = new Map<BrokerKind, Broker>()
  const listeners: (() => void)[] = []
  const changed = () => {
    for (const l of listeners) l()
  }
  const instance = newId()
  const close = async () => {
    await Promise.all([...brokers.values()].map((b) => b.link.close().catch(() => {})))
  }
  for (const kind of ["mqtt", "rabbitmq"] as const) {
    const settings = o.transports[kind]
    if (!enabled.includes(kind) || !settings) continue
    const self = { identity: o.identity, instance }
    const log = o.log.withTag(kind)
    let b!: Broker
    let up = false
    const link = await openLink(
      kind,
      settings,
      {
        self,
        serveRequests: false,
        onMessage: async (_channel, bytes) => {
          const reason = b.requester.receive(bytes)
          if (reason) log.debug("broker message dropped", { reason })
        },
        onState: (connected, detail) => {
          if (connected === up) return
          up = connected
          if (!connected) {
            log.warn(`lost the broker at ${brokerWhere(kind, settings)}; reconnecting`, { reason: detail })
            b.requester.abortAll(detail)
          } else {
            log.info(`connected to the broker at ${brokerWhere(kind, settings)}`)
            b.skipUntil = 0
          }
          changed()
        },
      },
      log,
    )
    b = { kind, link, requester: createRequester(link, self, key), skipUntil: 0 }
    brokers.set(kind, b)
    // With another transport to fall back on, a broker away at start is a warning: its link keeps
    // trying, and requests use the next transport until it is up. Without one, it is one error line.
    const fallback = enabled.some((t) => t !== kind)
    try {
      await link.ready(PEER_START_TIMEOUT_MS, fallback)
      up = true
    } catch (err) {
      if (!fallback) {
        await close()
        throw new UnavailableError(`transports: ${(err as Error).message}`)
      }
      log.warn(`${(err as Error).message}; using the next transport until it is up`)
    }
  }

  /** Connected now (HTTP always is, as far as this process can tell before it tries). */
  const isUp = (t: TransportName) => t === "http_polling" || !!brokers.get(t)?.link.connected
  /** Skipped for a while: no coordinator answered on it. */
  const skipped = (t: TransportName, now = Date.now()) => t !== "http_polling" && (brokers.get(t)?.skipUntil ?? 0) > now
  // The connected transports in the order of preference, the skipped ones last: a broker that is the only
  // way left is still used (and offered), never dropped.
  const usable = () => {
    const live = enabled.filter(isUp)
    return [...live.filter((t) => !skipped(t)), ...live.filter((t) => skipped(t))]
  }
  let pinned: TransportName | undefined
  const current = (): TransportName =>
    pinned && isUp(pinned) && !skipped(pinned) ? pinned : (usable()[0] ?? enabled[0]!)

  const fetch: Fetch = async (url, init) => {
    const first = current()
    const order = [first, ...usable().filter((t) => t !== first)]
    let last: unknown
    for (const t of order) {
      if (t === "http_polling") return globalThis.fetch(url, init)
      const b = brokers.get(t)!
      try {
        return await b.requester.fetch(url, init)
      } catch (err) {
        const code = (err as { code?: string }).code
        // Unanswered: the link is down, or nobody took the request. Anything else went wrong on the way.
        if (
          init.signal?.aborted ||
          (code !== "ECONNREFUSED" && !(code === "ETIMEDOUT" && (err as { unanswered?: boolean }).unanswered))
        )
          throw err
        if (code === "ETIMEDOUT" && usable().some((u) => u !== t)) {
          b.skipUntil = Date.now() + UNANSWERED_MS
          o.log.warn(`no coordinator answered over ${t}; using the next transport for ${UNANSWERED_MS / 1000} s`)
          changed()
        }
        last = err
      }
    }
    throw last
  }

  return {
    fetch,
    usable,
    pin(t) {
      pinned = t
    },
    get current() {
      return current()
    },
    onChange(cb) {
      listeners.push(cb)
    },
    close,
  }
}

/**
 * `openPeerTransports` for a client or an admin command: it logs nothing (a proxy's stderr is ffmpeg's);
 * what fails reaches the caller as the request's error.
 */
export function openClientTransports(o: Omit<Parameters<typeof openPeerTransports>[0], "log">) {
  const log = createLogger({ level: "error" })
  log.level = -1
  return openPeerTransports({ ...o, log })
}
