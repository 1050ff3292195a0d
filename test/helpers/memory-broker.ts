import type { BrokerLink, LinkOptions, PeerAddress } from "../../src/transports/broker/types.ts"
import { MAX_MESSAGE_BYTES, checkPeer } from "../../src/transports/broker/types.ts"

/**
 * An in-process broker with the delivery a real one gives the tunnel (src/transports/broker/types.ts):
 * each request to exactly one serving link (round robin), each peer message to its one channel. Tests
 * see every message (`tap`), can drop or inject messages, and take a link down and up.
 */
export class MemoryBroker {
  private readonly links = new Set<MemoryLink>()
  private turn = 0
  /** Every message published, in order, with where it went. */
  readonly sent: { to: "requests" | PeerAddress; bytes: Uint8Array }[] = []
  /** Returns false to drop a message (tests of loss). */
  filter: (to: "requests" | PeerAddress, bytes: Uint8Array) => boolean = () => true

  link(opts: LinkOptions): MemoryLink {
    const l = new MemoryLink(this, opts)
    this.links.add(l)
    return l
  }
  remove(l: MemoryLink) {
    this.links.delete(l)
  }
  /** `redelivered`: as RabbitMQ marks a request it hands out again after a consumer was lost. */
  deliver(to: "requests" | PeerAddress, bytes: Uint8Array, redelivered = false) {
    this.sent.push({ to, bytes })
    if (!this.filter(to, bytes)) return
    const up = [...this.links].filter((l) => l.connected)
    if (to === "requests") {
      const servers = up.filter((l) => l.opts.serveRequests)
      if (!servers.length) return
      const l = servers[this.turn++ % servers.length]!
      queueMicrotask(() => void l.opts.onMessage("requests", bytes, redelivered))
      return
    }
    for (const l of up)
      if (l.opts.self.identity === to.identity && l.opts.self.instance === to.instance)
        queueMicrotask(() => void l.opts.onMessage("peer", bytes))
  }
}

export class MemoryLink implements BrokerLink {
  readonly kind = "mqtt" as const
  readonly where = "memory://broker"
  connected = true
  constructor(
    private readonly broker: MemoryBroker,
    readonly opts: LinkOptions,
  ) {
    checkPeer(opts.self)
  }
  async ready() {}
  async publish(to: "requests" | PeerAddress, bytes: Uint8Array) {
    if (!this.connected) throw new Error("not connected")
    if (to !== "requests") checkPeer(to)
    if (bytes.length > MAX_MESSAGE_BYTES) throw new Error("too large")
    this.broker.deliver(to, bytes.slice())
  }
  /** Takes the link down or up, as a lost broker connection would. */
  setConnected(up: boolean) {
    this.connected = up
    this.opts.onState?.(up, up ? "connected" : "lost")
  }
  async close() {
    this.connected = false
    this.broker.remove(this)
  }
}
