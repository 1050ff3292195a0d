import type { Keyring, Secret } from "../../shared/auth/keyring.ts"
import { newId } from "../../shared/ids.ts"
import type { Logger } from "../../shared/log.ts"
import type { BrokerKind } from "../../shared/protocol/transports.ts"
import {
  COORDINATORS,
  open,
  peek,
  Rejected,
  seal,
  SeenNonces,
  type BrokerLink,
  type PeerAddress,
  type RejectReason,
} from "../../transports/index.ts"
import { carried, EVERY_TOPIC, MAX_PENDING, RemoteNotifier, type Link, type LinkEvents } from "./remote.ts"

/** What `who` of a notification says: the coordinator secret whose derived key signed it. */
const WHO = /^_secret:([A-Za-z0-9_-]{8})$/

/**
 * The key notifications are signed with: derived from the coordinator secret, which every coordinator of
 * one database shares (its secret file) and no worker, client or broker user has.
 */
export function notifyKey(secret: Secret): Uint8Array {
  return new Bun.CryptoHasher("sha256", secret.bytes).update("dffmpeg broker notifications").digest() as Uint8Array
}

/**
 * Wake-ups across the coordinators of one database through the broker they serve on (config `notifier:
 * mqtt` or `rabbitmq`): the topics notified in one tick go out as one signed message on the notify
 * channel, which every coordinator hears at once; a coordinator skips its own. For MySQL/MariaDB this is
 * push instead of reading the change sequence every `notify_interval_ms`. The link is the coordinator's
 * own (coordinator/transports.ts attaches it); while it is down the notifier counts as disconnected, and
 * when it is back every local waiter re-reads (remote.ts), as after any lost connection.
 */
export class BrokerNotifier extends RemoteNotifier {
  readonly kind: BrokerKind
  private broker?: BrokerLink
  private self?: PeerAddress
  private events?: LinkEvents
  private readonly keys: Keyring
  private readonly nonces = new SeenNonces(50_000)
  private readonly onReject?: (reason: RejectReason) => void
  /** `open` calls waiting for the link to be attached and up. */
  private readonly waiting = new Set<() => void>()

  constructor(o: {
    kind: BrokerKind
    keys: Keyring
    log?: Logger
    deadlineMs?: number
    onReject?: (reason: RejectReason) => void
  }) {
    super({ log: o.log, deadlineMs: o.deadlineMs ?? 10_000 })
    this.kind = o.kind
    this.keys = o.keys
    this.onReject = o.onReject
  }

  /** The coordinator's link to the broker (connected), and its own channel's address. */
  attach(link: BrokerLink, self: PeerAddress): void {
    this.broker = link
    this.self = self
    this.wake()
  }

  private wake(): void {
    for (const w of [...this.waiting]) w()
  }

  /** The link went down or came back (its onState). */
  linkState(connected: boolean, detail: string): void {
    if (connected) this.wake()
    else this.events?.lost(new Error(`the ${this.kind} broker link was lost: ${detail}`))
  }

  protected async open(events: LinkEvents): Promise<Link> {
    // Until the link is attached and up: `connect` gives up after its deadline and tries again.
    while (!this.broker?.connected)
      await new Promise<void>((resolve) => {
        const done = () => {
          this.waiting.delete(done)
          clearTimeout(timer)
          resolve()
        }
        // Looked at again now and then: a wait whose attempt was given up does not stay behind for good.
        const timer = setTimeout(done, 1000)
        this.waiting.add(done)
      })
    const link = this.broker!
    const self = this.self!
    this.events = events
    return {
      send: async (topics) => {
        const secret = this.keys.current()
        const body = new TextEncoder().encode(JSON.stringify(topics))
        const who = `_secret:${secret.id}`
        await link.publish(
          "notify",
          seal(notifyKey(secret), { t: "notify", who, from: self, id: newId(), seq: 0 }, body),
        )
      },
      close: async () => {
        this.events = undefined
      },
      destroy: () => {
        this.events = undefined
      },
    }
  }

  /** A message of the notify channel (every coordinator's, this one's own included). */
  receive(bytes: Uint8Array): void {
    try {
      const p = peek(bytes)
      const id = WHO.exec(p.header.who)?.[1]
      const secret = id ? this.keys.find(id) : undefined
      const msg = open(p, secret ? notifyKey(secret) : undefined)
      const h = msg.header
      if (h.t !== "notify" || h.from.identity !== COORDINATORS) throw new Rejected("misaddressed", `a ${h.t}`)
      if (!this.nonces.remember(h.nonce, Date.now())) throw new Rejected("replayed", "nonce seen")
      // Its own: the local waiters were woken when it notified.
      if (this.self && h.from.instance === this.self.instance) return
      const topics = JSON.parse(new TextDecoder().decode(msg.body)) as unknown
      if (
        !Array.isArray(topics) ||
        topics.length > MAX_PENDING + 1 ||
        !topics.every((t) => typeof t === "string" && (t === EVERY_TOPIC || carried(t)))
      )
        throw new Rejected("malformed", "not a list of topics")
      this.events?.received(topics)
    } catch (err) {
      const reason = err instanceof Rejected ? err.reason : "malformed"
      this.onReject?.(reason)
      this.log?.debug("notification dropped", { reason, detail: (err as Error).message })
    }
  }
}
