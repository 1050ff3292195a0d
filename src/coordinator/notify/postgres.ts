import pg from "pg"
import type { Logger } from "../../shared/log.ts"
import { pgOptions } from "../../store/postgres/index.ts"
import type { ServerConnection } from "../../store/server/connection.ts"
import { carried, EVERY_TOPIC, type Link, type LinkEvents, RemoteNotifier } from "./remote.ts"

/** The one channel every coordinator of a database listens on (NOTIFY is per database). */
export const CHANNEL = "dffmpeg"
/** A NOTIFY payload must be shorter than 8000 bytes (PostgreSQL's default build). */
export const PAYLOAD_MAX_BYTES = 7999

/**
 * The topics as payloads of at most `max` bytes: each the sender's `origin`, then one topic a line.
 * Topics are at most 128 bytes (remote.ts `carried`), so every one fits in a payload.
 */
export function payloads(origin: string, topics: Iterable<string>, max = PAYLOAD_MAX_BYTES): string[] {
  const out: string[] = []
  const head = Buffer.byteLength(origin)
  let cur = ""
  let bytes = head
  for (const t of topics) {
    const b = Buffer.byteLength(t) + 1
    if (cur && bytes + b > max) {
      out.push(origin + cur)
      cur = ""
      bytes = head
    }
    cur += `\n${t}`
    bytes += b
  }
  if (cur) out.push(origin + cur)
  return out
}

/**
 * The topics of a payload another coordinator sent, or undefined for one of `origin`'s own (they come
 * back to their sender) or one that is not a list of topics. Anyone who may log in to the database can
 * NOTIFY on the channel: a line that is no topic is dropped, and a topic woken needlessly costs a read.
 */
export function topicsOf(payload: string, origin: string): string[] | undefined {
  if (payload.length > PAYLOAD_MAX_BYTES) return undefined
  const lines = payload.split("\n")
  if (lines.length < 2 || lines[0] === origin) return undefined
  return lines.slice(1).filter((t) => t === EVERY_TOPIC || carried(t))
}

export interface PostgresNotifierOptions {
  connection: ServerConnection
  log?: Logger
  /** This process's tag (default: random). */
  origin?: string
  /** Period of the listening connection's round trip that finds a silently dead connection (ms). */
  heartbeatMs?: number
}

/**
 * Wake-ups across the coordinators of one PostgreSQL database: LISTEN on a connection of its own
 * (outside the store's pool: a listening connection must stay open), and one `pg_notify` statement per
 * tick for everything notified in it, split into payloads below PostgreSQL's limit.
 *
 * Sent from the change hook, after the commit: NOTIFY inside the writing transaction would deliver at
 * its commit too, and no sooner, so the receiver's guarantee is the same (it reads the change it is told
 * of). Sending inside the transaction would also survive the coordinator dying right after its commit,
 * but it would put one more statement in every writing transaction and a database lock at its commit
 * (PostgreSQL serialises the commits of notifying transactions), for a wake-up the waiters' own timers
 * already guarantee (hub.ts).
 */
export class PostgresNotifier extends RemoteNotifier {
  readonly kind = "postgres"
  private readonly connection: ServerConnection

  constructor(opts: PostgresNotifierOptions) {
    super({
      log: opts.log,
      origin: opts.origin,
      heartbeatMs: opts.heartbeatMs,
      deadlineMs: Math.max(1000, opts.connection.connectTimeoutMs),
    })
    this.connection = opts.connection
  }

  protected async open(events: LinkEvents): Promise<Link> {
    // Named apart from the store's connections in pg_stat_activity.
    const client = new pg.Client({ ...pgOptions(this.connection), application_name: "dffmpeg notifier" })
    client.on("error", (err) => events.lost(err))
    client.on("end", () => events.lost(new Error("the connection ended")))
    client.on("notification", (m) => {
      if (m.channel !== CHANNEL || m.payload === undefined) return
      const topics = topicsOf(m.payload, this.origin)
      if (topics?.length) events.received(topics)
    })
    const destroy = () => {
      // The socket itself: end() waits for the server's answer, which a dead connection never gives.
      const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream
      if (stream) stream.destroy()
      else client.end().catch(() => {})
    }
    try {
      await client.connect()
      await client.query(`LISTEN ${CHANNEL}`)
    } catch (err) {
      destroy()
      throw err
    }
    return {
      send: async (topics) => {
        this.stats.statements++
        await client.query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", [
          CHANNEL,
          payloads(this.origin, topics),
        ])
      },
      ping: async () => {
        await client.query("SELECT 1")
      },
      close: () => client.end(),
      destroy,
    }
  }
}
