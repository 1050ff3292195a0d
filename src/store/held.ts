/**
 * Attached stdout the coordinator keeps in memory instead of in its database (docs/performance.md, "The
 * in-memory relay"; docs/protocol.md, "Held output"). A held row is stored without its payload (`held` =
 * its size); the payload lives here, keyed by (job, epoch, sequence): a given sequence of an attempt
 * always carries the same bytes, so a repeated entry is harmless. The payload is dropped when the caller
 * acknowledges the row (it is deleted), written into the row when the job ends, and lost with the process
 * (the worker keeps what it sent until the coordinator says it is durable, and re-sends it when asked).
 * Bounded by one coordinator-wide budget (`relay.memory_mb`); over it, payloads are stored as before.
 * What is kept alive for a payload is at most twice its size (`own`).
 */
/** A held payload, with its SHA-256 when the upload that brought it had it (a stream seals it by that). */
export interface HeldPayload {
  data: Uint8Array
  digest?: Uint8Array
}

export interface HeldOutput {
  /** The payload of a held row, if this process holds it. */
  get(job: string, epoch: number, seq: number): HeldPayload | undefined
  /** Holds a payload if the budget has room; false (nothing held) otherwise. */
  hold(job: string, epoch: number, seq: number, data: Uint8Array, digest?: Uint8Array): boolean
  /** Drops one payload (its row was acknowledged and deleted, or its payload stored). */
  drop(job: string, epoch: number, seq: number): void
  /** Drops everything held for the job (it ended, or its attempt was dropped). */
  forget(job: string): void
  /** The attempt's held payloads, in sequence order. */
  entries(job: string, epoch: number): [seq: number, data: Uint8Array][]
  /** Whether any payload of the job is held here (none: its rows need no look to release memory). */
  holds(job: string): boolean
  /** The lowest sequence held for the attempt, if any. */
  lowest(job: string, epoch: number): number | undefined
  /**
   * Whether every held row of the attempt has its payload here: false until the store checked it once
   * in this process (a restarted coordinator holds nothing of what its rows say is held).
   */
  complete(job: string, epoch: number): boolean
  markComplete(job: string, epoch: number): void
  /** Payload bytes held in all. */
  readonly bytes: number
}

interface Attempt {
  epoch: number
  payloads: Map<number, HeldPayload>
  complete: boolean
}

/**
 * A payload to hold: a frame's bytes are a view of its whole upload body, which would stay alive with it
 * and not be counted (a 1-byte stdout frame beside 8 MiB of stderr kept 8 MiB). A view of at least half
 * its buffer is kept as it is (copying a 1 MiB row cost as much as hashing it), a smaller one is copied:
 * what is held then never keeps more than twice the bytes the budget counts.
 */
function own(data: Uint8Array): Uint8Array {
  return data.byteLength * 2 >= data.buffer.byteLength ? data : data.slice()
}

export function createHeldOutput(budgetBytes: number): HeldOutput {
  const jobs = new Map<string, Attempt>()
  let bytes = 0
  const attempt = (job: string, epoch: number, create: boolean): Attempt | undefined => {
    const a = jobs.get(job)
    if (a && a.epoch === epoch) return a
    if (!create) return undefined
    // A new attempt of the job replaces what an older one held.
    if (a) forget(job)
    const fresh: Attempt = { epoch, payloads: new Map(), complete: false }
    jobs.set(job, fresh)
    return fresh
  }
  const forget = (job: string) => {
    const a = jobs.get(job)
    if (!a) return
    for (const p of a.payloads.values()) bytes -= p.data.length
    jobs.delete(job)
  }
  return {
    get: (job, epoch, seq) => attempt(job, epoch, false)?.payloads.get(seq),
    hold(job, epoch, seq, data, digest) {
      const a = attempt(job, epoch, true)!
      const had = a.payloads.get(seq)
      if (had) return true
      if (bytes + data.length > budgetBytes) return false
      a.payloads.set(seq, { data: own(data), digest })
      bytes += data.length
      return true
    },
    drop(job, epoch, seq) {
      const a = attempt(job, epoch, false)
      const p = a?.payloads.get(seq)
      if (!a || !p) return
      a.payloads.delete(seq)
      bytes -= p.data.length
    },
    forget,
    entries(job, epoch) {
      const a = attempt(job, epoch, false)
      return a ? [...a.payloads].map(([seq, p]): [number, Uint8Array] => [seq, p.data]).sort((x, y) => x[0] - y[0]) : []
    },
    holds: (job) => (jobs.get(job)?.payloads.size ?? 0) > 0,
    lowest(job, epoch) {
      const a = attempt(job, epoch, false)
      let low: number | undefined
      if (a) for (const seq of a.payloads.keys()) if (low === undefined || seq < low) low = seq
      return low
    },
    complete: (job, epoch) => attempt(job, epoch, false)?.complete ?? false,
    markComplete(job, epoch) {
      attempt(job, epoch, true)!.complete = true
    },
    get bytes() {
      return bytes
    },
  }
}
