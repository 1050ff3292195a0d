import { hostname } from "node:os"
import type { Logger } from "../shared/log.ts"
import { newId } from "../shared/ids.ts"
import { VERSION } from "../shared/version.ts"
import type { Store } from "../store/types.ts"

/** How often a coordinator refreshes its row in `coordinators` (one UPDATE). */
export const PRESENCE_INTERVAL_MS = 10_000
/** A row not refreshed for this long belonged to a coordinator that died without stopping: removed. */
export const PRESENCE_TTL_MS = 24 * 3600_000
/** What `dffmpeg admin db status` calls seen recently: a few missed refreshes, not one. */
export const PRESENCE_RECENT_MS = 6 * PRESENCE_INTERVAL_MS

export interface Presence {
  id: string
  stop(): Promise<void>
}

/**
 * This coordinator's row in `coordinators`, so that `dffmpeg admin db status` lists who shares the
 * database: written once it listens, refreshed every PRESENCE_INTERVAL_MS by a timer that does not keep
 * the process alive, removed at a clean stop. A refresh that fails (the database is away) is logged
 * once until one succeeds again; a row that vanished (pruned after a long pause, deleted by hand) is
 * written again. Rows are reports for operators, never leases: nothing else reads them.
 */
export async function startPresence(
  store: Store,
  o: { url: string; log: Logger; now: () => number; startedAt: number; intervalMs?: number },
): Promise<Presence> {
  const id = newId()
  const row = () => ({
    id,
    host: hostname(),
    pid: process.pid,
    version: VERSION,
    url: o.url,
    startedAt: o.startedAt,
    seenAt: o.now(),
  })
  const register = () => store.registerCoordinator(row(), o.now() - PRESENCE_TTL_MS)
  await register()
  let failing = false
  let running: Promise<void> | undefined
  let beats = 0
  const interval = o.intervalMs ?? PRESENCE_INTERVAL_MS
  // About once an hour the row is written whole, which also removes the rows of the dead.
  const rewriteEvery = Math.max(1, Math.round(3600_000 / interval))
  const beat = async () => {
    try {
      if (++beats % rewriteEvery === 0 || !(await store.touchCoordinator(id, o.now()))) await register()
      if (failing) o.log.info("coordinator row refreshed again", { coordinator: id })
      failing = false
    } catch (err) {
      if (!failing) o.log.warn("cannot refresh this coordinator's row in coordinators", { error: err as Error })
      failing = true
    }
  }
  const timer = setInterval(() => {
    running ??= beat().finally(() => {
      running = undefined
    })
  }, interval)
  timer.unref()
  return {
    id,
    async stop() {
      clearInterval(timer)
      await running
      await store.removeCoordinator(id).catch((err) => {
        o.log.warn("cannot remove this coordinator's row from coordinators", { error: err as Error })
      })
    },
  }
}
