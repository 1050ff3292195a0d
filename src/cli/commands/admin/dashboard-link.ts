import { UsageError } from "../../../shared/errors.ts"
import { LINK_TTL_MS, MAX_LINK_TTL_MS } from "../../../coordinator/dashboard/session.ts"
import { adminVerb, jsonArg, modeArgs } from "./_args.ts"

const args = {
  ttl: { type: "string", description: "how long the link is valid: 30s, 10m (default), 2h; at most 24h" },
  user: {
    type: "string",
    description: "local mode: the admin identity the link signs in (needed when there are several)",
  },
  ...jsonArg,
  ...modeArgs,
} as const

/** `--ttl` as ms: a number with s, m or h (seconds without a unit), from 10 s to 24 h. */
export function ttlArg(raw: string | undefined): number {
  if (raw === undefined) return LINK_TTL_MS
  const m = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(raw.trim())
  const ms = m ? Number(m[1]) * { s: 1000, m: 60_000, h: 3600_000 }[(m[2] ?? "s") as "s" | "m" | "h"] : NaN
  if (!(ms >= 10_000 && ms <= MAX_LINK_TTL_MS))
    throw new UsageError("--ttl must be from 10s to 24h (e.g. 90s, 10m, 2h)")
  return Math.round(ms)
}

export default adminVerb(
  "dashboard-link",
  "Print a one-time link that signs a browser in to the web dashboard as an admin (valid 10 minutes, or --ttl)",
  args,
  {
    input: (a) => ({ ttl: ttlArg(a.ttl), user: a.user }),
    call: (b, { ttl, user }) => b.dashboardLink(ttl, user),
    show: (link) => ({
      json: link,
      text: `${link.url}\n`,
    }),
  },
)
