import { Hono } from "hono"
import { FallbackReport } from "../../../shared/protocol/fallback.ts"
import { fallbacksOf, type Deps } from "../app.ts"
import { jsonBody } from "../_util.ts"
import { requireRole, type AuthEnv } from "../middleware/hmac.ts"

/** What clients tell the coordinator about themselves: the commands they ran locally (docs/fallback.md). */
export function clientRoutes(deps: Deps) {
  const app = new Hono<AuthEnv>()
  const ledger = fallbacksOf(deps)

  /** A client's local fallback runs, counted once each by their ids (at most FALLBACK_REPORT_MAX a request). */
  app.post("/fallbacks", async (c) => {
    const p = c.get("principal")
    requireRole(p, "client")
    const { records } = jsonBody(c, FallbackReport)
    const receipt = ledger.add(p.name, records)
    if (receipt.accepted) {
      const reasons: Record<string, number> = {}
      for (const r of records) reasons[r.reason] = (reasons[r.reason] ?? 0) + 1
      deps.log.warn("client ran commands locally (fallback)", { client: p.name, ...receipt, reasons })
    }
    return c.json(receipt)
  })

  return app
}
