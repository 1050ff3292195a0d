import type { FallbackCount, FallbackReceipt, FallbackRecord } from "../shared/protocol/fallback.ts"

/**
 * The local fallbacks clients reported to this coordinator since it started (POST /api/v1/clients/fallbacks):
 * counts per client and reason for `dffmpeg_client_fallbacks_total` and the dashboard. A client resends a
 * report whose answer it did not get; the ids of the last REMEMBERED records are kept so that it is not
 * counted twice. Like every counter of metrics.ts it is per coordinator process (Prometheus sums them).
 */
export interface FallbackLedger {
  /** Counts what `client` reported; the records it had already reported are duplicates. */
  add(client: string, records: readonly FallbackRecord[]): FallbackReceipt
  /** Per client and reason, ordered by client then reason. */
  counts(): FallbackCount[]
}

export const REMEMBERED = 10_000

export function createFallbackLedger(): FallbackLedger {
  const seen = new Set<string>()
  const counts = new Map<string, FallbackCount>()
  return {
    add(client, records) {
      let accepted = 0
      for (const r of records) {
        const key = `${client}\0${r.id}`
        if (seen.has(key)) continue
        seen.add(key)
        // A Set iterates in insertion order: the oldest id goes first.
        if (seen.size > REMEMBERED) seen.delete(seen.values().next().value!)
        accepted++
        const k = `${client}\0${r.reason}`
        const c = counts.get(k)
        if (c) {
          c.count++
          c.lastAt = Math.max(c.lastAt, r.at)
        } else counts.set(k, { client, reason: r.reason, count: 1, lastAt: r.at })
      }
      return { accepted, duplicates: records.length - accepted }
    },
    counts() {
      return [...counts.values()]
        .map((c) => ({ ...c }))
        .sort((a, b) => a.client.localeCompare(b.client) || a.reason.localeCompare(b.reason))
    },
  }
}
