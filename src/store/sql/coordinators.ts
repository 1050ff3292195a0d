import type { CoordinatorRow, Store } from "../types.ts"
import type { Database } from "./schema.ts"
import type { Sql } from "./shared.ts"

const toRow = (r: Database["coordinators"]): CoordinatorRow => ({
  id: r.id,
  host: r.host,
  pid: Number(r.pid),
  version: r.version,
  url: r.url,
  startedAt: Number(r.started_at),
  seenAt: Number(r.seen_at),
})

/** Column limits of `coordinators` (migrations.ts): what a row is cut to rather than refused for. */
const HOST_CHARS = 255
const VERSION_CHARS = 64
const URL_CHARS = 255

/**
 * The coordinators that share this database, each keeping its own row fresh (coordinator/presence.ts):
 * what `dffmpeg admin db status` lists. Nothing else reads them; a row is a report, never a lease.
 */
export function coordinatorMethods(
  c: Sql,
): Pick<Store, "registerCoordinator" | "touchCoordinator" | "removeCoordinator" | "listCoordinators"> {
  const { db, tx } = c
  return {
    async registerCoordinator(row, before) {
      const values = {
        id: row.id,
        host: row.host.slice(0, HOST_CHARS),
        pid: row.pid,
        version: row.version.slice(0, VERSION_CHARS),
        url: row.url === null ? null : row.url.slice(0, URL_CHARS),
        started_at: row.startedAt,
        seen_at: row.seenAt,
      }
      await tx(async (t) => {
        await t
          .deleteFrom("coordinators")
          .where((e) => e.or([e("id", "=", row.id), e("seen_at", "<", before)]))
          .execute()
        await t.insertInto("coordinators").values(values).execute()
      })
    },
    async touchCoordinator(id, now) {
      const r = await db.updateTable("coordinators").set({ seen_at: now }).where("id", "=", id).executeTakeFirst()
      return Number(r.numUpdatedRows) > 0
    },
    async removeCoordinator(id) {
      const r = await db.deleteFrom("coordinators").where("id", "=", id).executeTakeFirst()
      return Number(r.numDeletedRows) > 0
    },
    async listCoordinators(since) {
      const rows = await db
        .selectFrom("coordinators")
        .selectAll()
        .where("seen_at", ">=", since)
        .orderBy("started_at", "desc")
        .orderBy("id", "desc")
        .execute()
      return rows.map(toRow)
    },
  }
}
