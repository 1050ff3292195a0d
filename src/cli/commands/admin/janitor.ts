import type { JanitorReport } from "../../../coordinator/janitor.ts"
import { fields } from "../../table.ts"
import { adminVerb, jsonArg, modeArgs, noun } from "./_args.ts"

const list = (xs: string[]) => (xs.length ? xs.join(", ") : null)

/** The report in words; a pass that found nothing says so. */
export function describeReport(r: JanitorReport): string {
  const lost = r.lost.map((l) => `${l.job} (${l.requeued ? "re-queued" : "failed"})`)
  const rows: [string, string | null][] = [
    ["workers marked offline", list(r.workersOffline)],
    ["jobs of lost workers", list(lost)],
    ["canceled (worker gone)", list(r.canceled)],
    ["re-queued (not started)", list(r.unassigned)],
    ["failed (no worker can run)", list(r.failedPending)],
    ["canceled (caller gone)", list(r.abandoned)],
    [
      "pruned",
      r.pruned.jobs || r.pruned.workers
        ? `${r.pruned.jobs} finished job(s), ${r.pruned.workers} offline worker(s)`
        : null,
    ],
  ]
  const done = rows.filter((row): row is [string, string] => row[1] !== null)
  const head = r.suppressed
    ? "janitor pass done; reaping is paused just after the coordinator started (workers and callers are reconnecting): only retention ran\n"
    : "janitor pass done\n"
  return head + (done.length ? fields(done) : "nothing to do\n")
}

const runArgs = { ...jsonArg, ...modeArgs } as const
const run = adminVerb(
  "run",
  "Run one janitor pass on the coordinator now and print what it did (remote mode only)",
  runArgs,
  { input: () => undefined, call: (b) => b.janitor(), show: describeReport },
)

export default noun("janitor", "Run the coordinator's janitor (expired leases, lost workers, retention)", { run })
