import { randomBytes } from "node:crypto"
import type { Logger } from "../../shared/log.ts"
import { backoff } from "../../shared/pause.ts"
import { Hub, type Hint, type Notifier, type Subscription } from "../hub.ts"

/**
 * What the notifiers across coordinators share (PostgreSQL's LISTEN/NOTIFY in postgres.ts, the change
 * sequence of MySQL/MariaDB in mysql.ts): a local `Hub` that wakes this process's waiters at once, with
 * their hints; the topics notified within one tick sent to the others in as few statements as the
 * engine allows; the others' topics woken here without a hint (hints are in-process only: see `Hint`);
 * one dedicated connection, reopened with jittered backoff when it fails, after which every topic
 * someone waits on here is woken blindly (a resync: notifications may have been missed, the store has
 * every change, the waiters re-read it).
 *
 * Topics go out from the store's change hook (coordinator/wakeups.ts), so after their change committed:
 * a coordinator woken by one reads the change. A coordinator that dies between its commit and the send
 * loses that wake-up; the other coordinators' waiters then find the change by their own timers, as any
 * lost wake-up (hub.ts).
 */

/** Longest topic carried between coordinators (bytes: the `changes` table's column is as wide). */
export const MAX_TOPIC_BYTES = 128
/**
 * Sent for what cannot be carried (a topic too long, or more queued than `MAX_PENDING` while the
 * connection is down): the receivers wake every topic they wait on.
 */
export const EVERY_TOPIC = "*"
/** Topics kept for sending while the connection is down; past that, one `EVERY_TOPIC` says it all. */
export const MAX_PENDING = 4096

/** Whether `t` can be carried as it is: 1 to 128 bytes, on one line. */
export const carried = (t: string): boolean =>
  t.length > 0 && Buffer.byteLength(t) <= MAX_TOPIC_BYTES && !t.includes("\n")

/** One connection of a notifier, as its engine opened it; `open` resolves once it listens. */
export interface Link {
  /** Sends `topics` (each carried, or `EVERY_TOPIC`) to the other coordinators. */
  send(topics: string[]): Promise<void>
  /** A round trip, run every heartbeat, for an engine that only listens (a silent dead connection). */
  ping?(): Promise<void>
  /** Ends the connection politely. */
  close(): Promise<void>
  /** Ends it at once (a connection that stopped answering). */
  destroy(): void
}

/** What a link tells its notifier. */
export interface LinkEvents {
  /** Topics other coordinators notified (each checked by `carried`, or `EVERY_TOPIC`). */
  received(topics: Iterable<string>): void
  /** The connection failed: the notifier drops it and opens another. */
  lost(err: unknown): void
}

export interface RemoteOptions {
  log?: Logger
  /** Longest a connection attempt, or one statement, may take before the connection is given up (ms). */
  deadlineMs: number
  /** Period of the link's `ping` (ms). */
  heartbeatMs?: number
  /** This process's tag in what it sends, so that its own notifications are ignored when they come back. */
  origin?: string
}

/** Counts of what went between coordinators (tests, and the documented figures). */
export interface RemoteStats {
  /** Statements that sent topics. */
  statements: number
  topicsSent: number
  topicsReceived: number
  /** Connections opened (the first and every reconnect). */
  connects: number
  /** Times every local topic was woken because notifications may have been missed. */
  resyncs: number
}

/** `p`, or a rejection once `ms` passed without it settling. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err))

export abstract class RemoteNotifier implements Notifier {
  abstract readonly kind: string
  readonly origin: string
  readonly stats: RemoteStats = { statements: 0, topicsSent: 0, topicsReceived: 0, connects: 0, resyncs: 0 }
  protected readonly log?: Logger
  protected readonly deadlineMs: number
  private readonly heartbeatMs: number
  private readonly hub = new Hub()
  private link?: Link
  private pending = new Set<string>()
  private flushing?: Promise<void>
  private tick?: ReturnType<typeof setImmediate>
  private retryTimer?: ReturnType<typeof setTimeout>
  private heartbeatTimer?: ReturnType<typeof setTimeout>
  private attempt = 0
  /** When the connection was lost (or the first attempt failed): set while it is down. */
  private downSince?: number
  private closed = false
  private closing?: Promise<void>
  private started?: Promise<boolean>
  private settleStart?: (connected: boolean) => void

  constructor(opts: RemoteOptions) {
    this.log = opts.log
    this.deadlineMs = opts.deadlineMs
    this.heartbeatMs = opts.heartbeatMs ?? 10_000
    this.origin = opts.origin ?? randomBytes(8).toString("hex")
  }

  /** Opens one connection; resolves once it listens (its changes from then on reach `events`). */
  protected abstract open(events: LinkEvents): Promise<Link>

  /**
   * Opens the connection; resolves at the end of the first attempt, true when it connected. A failed
   * attempt is retried in the background (the coordinator serves meanwhile, /health says so).
   */
  start(): Promise<boolean> {
    this.started ??= new Promise((resolve) => {
      this.settleStart = (ok) => {
        this.settleStart = undefined
        resolve(ok)
      }
      this.connect()
    })
    return this.started
  }

  get connected(): boolean {
    return this.link !== undefined
  }

  get size(): number {
    return this.hub.size
  }

  wait(topic: string, ms: number, signal?: AbortSignal): Promise<void> {
    return this.hub.wait(topic, ms, signal)
  }

  subscribe(topic: string): Subscription {
    return this.hub.subscribe(topic)
  }

  notify(topic: string, hint?: Hint): void {
    this.hub.notify(topic, hint)
    if (this.closed) return
    this.queue(carried(topic) ? topic : EVERY_TOPIC)
    // Everything notified in this tick (the changes of one commit, of every commit that ended in it)
    // goes out together; while a send is under way the next one gathers what comes meanwhile.
    if (this.link && !this.tick && !this.flushing)
      this.tick = setImmediate(() => {
        this.tick = undefined
        void this.flush()
      })
  }

  async close(): Promise<void> {
    if (this.closing) return this.closing
    this.closed = true
    clearTimeout(this.retryTimer)
    clearTimeout(this.heartbeatTimer)
    if (this.tick) clearImmediate(this.tick)
    this.settleStart?.(false)
    this.closing = (async () => {
      const link = this.link
      if (!link) return
      // What this process committed last still reaches the others.
      while (this.link === link && (this.flushing || this.pending.size)) await this.flush()
      this.link = undefined
      await within(link.close(), this.deadlineMs, "closing the notifier's connection").catch(() => link.destroy())
    })()
    return this.closing
  }

  /** Wakes the topics others notified, without a hint; `EVERY_TOPIC` wakes all. */
  private received(topics: Iterable<string>): void {
    for (const t of topics) {
      if (t === EVERY_TOPIC) this.resync()
      else {
        this.stats.topicsReceived++
        this.hub.notify(t)
      }
    }
  }

  /** Wakes every topic someone waits on here: they re-read the store, which has every change. */
  private resync(): void {
    this.stats.resyncs++
    for (const t of this.hub.topics()) this.hub.notify(t)
  }

  private queue(t: string): void {
    if (this.pending.has(EVERY_TOPIC)) return
    if (t === EVERY_TOPIC || this.pending.size >= MAX_PENDING) {
      this.pending.clear()
      this.pending.add(EVERY_TOPIC)
    } else this.pending.add(t)
  }

  /** Sends what is pending in one go; topics that did not go out stay pending for the next connection. */
  private flush(): Promise<void> {
    if (this.flushing) return this.flushing
    const link = this.link
    if (!link || this.pending.size === 0) return Promise.resolve()
    const topics = [...this.pending]
    this.pending.clear()
    this.flushing = within(link.send(topics), this.deadlineMs, "sending notifications")
      .then(
        () => {
          this.stats.topicsSent += topics.length
        },
        (err) => {
          // Perhaps sent all the same: a topic twice is a needless wake-up, a topic lost is a slow one.
          for (const t of topics) this.queue(t)
          this.lose(link, err)
        },
      )
      .finally(() => {
        this.flushing = undefined
        if (this.pending.size && this.link) void this.flush()
      })
    return this.flushing
  }

  private connect(): void {
    if (this.closed) return
    let link: Link | undefined
    let dead = false
    let failure: unknown
    const events: LinkEvents = {
      received: (topics) => {
        if (!dead && !this.closed) this.received(topics)
      },
      lost: (err) => {
        if (link) this.lose(link, err)
        else failure ??= err
      },
    }
    const opening = this.open(events)
    within(opening, this.deadlineMs, "connecting").then(
      (l) => {
        if (this.closed || failure !== undefined) {
          dead = true
          l.destroy()
          if (!this.closed) this.failed(failure)
          return
        }
        link = l
        this.link = l
        this.attempt = 0
        this.stats.connects++
        if (this.downSince !== undefined)
          this.log?.info(
            `notifier: connected to the database again after ${((Date.now() - this.downSince) / 1000).toFixed(1)} s; every waiter re-reads`,
          )
        this.downSince = undefined
        this.settleStart?.(true)
        // Whatever was notified while no connection listened is in the store: every waiter re-reads.
        this.resync()
        this.heartbeat(l)
        void this.flush()
      },
      (err) => {
        dead = true
        // An attempt given up by its deadline may still connect: that connection is closed at once.
        opening.then(
          (l) => l.destroy(),
          () => {},
        )
        if (!this.closed) this.failed(err)
      },
    )
  }

  private failed(err: unknown): void {
    this.settleStart?.(false)
    if (this.downSince === undefined) {
      this.downSince = Date.now()
      this.log?.warn(
        `notifier: cannot connect to the database (${message(err)}); retrying, and other coordinators' changes wake waiters by their timers until then`,
      )
    }
    this.retry()
  }

  private lose(link: Link, err: unknown): void {
    if (this.link !== link) return
    this.link = undefined
    clearTimeout(this.heartbeatTimer)
    link.destroy()
    this.downSince = Date.now()
    this.log?.warn(
      `notifier: lost its connection to the database (${message(err)}); reconnecting, and other coordinators' changes wake waiters by their timers until then`,
    )
    this.retry()
  }

  private retry(): void {
    if (this.closed) return
    // Jittered: coordinators that lost the database together do not all come back in the same instant.
    this.retryTimer = setTimeout(() => this.connect(), backoff(this.attempt++))
  }

  private heartbeat(link: Link): void {
    const ping = link.ping
    if (!ping) return
    this.heartbeatTimer = setTimeout(() => {
      if (this.link !== link) return
      within(ping.call(link), this.deadlineMs, "heartbeat").then(
        () => {
          if (this.link === link) this.heartbeat(link)
        },
        (err) => this.lose(link, err),
      )
    }, this.heartbeatMs)
  }
}
