import { WINDOW_SECONDS } from "../shared/auth/hmac.ts"
import type { Logger } from "../shared/log.ts"
import type { Store } from "../store/index.ts"

/** Nonces deleted per statement pair, and at most this many batches per pass (100,000 nonces). */
export const NONCE_PRUNE_BATCH = 1000
export const NONCE_PRUNE_BATCHES = 100
/** How often stored nonces are pruned. */
export const NONCE_PRUNE_INTERVAL_MS = 10_000
/**
 * How long a stored nonce is kept: a request's timestamp may be a window early or late, so its replay is
 * inside the window for two windows after it was accepted; one more window covers the coordinators'
 * remaining clock difference (coordinator/clock.ts) and a pass that came late.
 */
export const NONCE_KEEP_MS = 3 * WINDOW_SECONDS * 1000

/** One pass: stored nonces older than NONCE_KEEP_MS go, in bounded batches; returns how many. */
export async function pruneNonces(store: Store, now: number): Promise<number> {
  let total = 0
  for (let i = 0; i < NONCE_PRUNE_BATCHES; i++) {
    const n = await store.pruneNonces(now - NONCE_KEEP_MS, NONCE_PRUNE_BATCH)
    total += n
    if (n < NONCE_PRUNE_BATCH) break
  }
  return total
}

/** Prunes stored nonces every NONCE_PRUNE_INTERVAL_MS (every coordinator does; the deletes do not collide). */
export function startNoncePruner(deps: { store: Store; log: Logger; now: () => number; intervalMs?: number }) {
  let running: Promise<unknown> | undefined
  const timer = setInterval(() => {
    running ??= pruneNonces(deps.store, deps.now())
      .catch((err) => deps.log.warn("pruning stored nonces failed; next pass retries", err))
      .finally(() => {
        running = undefined
      })
  }, deps.intervalMs ?? NONCE_PRUNE_INTERVAL_MS)
  timer.unref?.()
  return async () => {
    clearInterval(timer)
    await running
  }
}
