import {
  FALLBACK_REPORT_MAX,
  type FallbackCount,
  type FallbackReceipt,
  type FallbackRecord,
} from "../shared/protocol/fallback.ts"

/**
 * The local fallbacks clients reported to this coordinator since it started (POST /api/v1/clients/fallbacks):
 * counts per client and reason for `dffmpeg_client_fallbacks_total` and the dashboard. A client resends a
 * report whose answer it did not get; the ids of each client's last REMEMBERED records are kept so that it
 * is not counted twice. Per client: one client's flood of new ids must not push out another's, whose resent
 * report would then count again. A client resends only its last unanswered report (FALLBACK_REPORT_MAX
 * records), so ten reports' worth is plenty; the memory is REMEMBERED ids per client identity. Like every
 * counter of metrics.ts it is per coordinator process (Prometheus sums them).
 */
export interface FallbackLedger {
  /** Counts what `client` reported; the records it had already reported are duplicates. */
  add(client: string, records: readonly FallbackRecord[]): FallbackReceipt
  /** Per client and reason, ordered by client then reason. */
  counts(): FallbackCount[]
}

export const REMEMBERED = 10 * FALLBACK_REPORT_MAX

export function createFallbackLedger(): FallbackLedger {
  const seenBy = new Map<string, Set<string>>()
  const counts = new Map<string, FallbackCount>()
  return {
    add(client, records) {
      let accepted = 0
      let seen = seenBy.get(client)
      if (!seen) seenBy.set(client, (seen = new Set()))
      for (const r of records) {
        if (seen.has(r.id)) continue
        seen.add(r.id)
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
