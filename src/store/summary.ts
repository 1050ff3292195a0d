import type { Job } from "../shared/protocol/schemas.ts"

/**
 * Characters of the error a summary (`JobListing`, `getJobSummary`) reads. The other columns are bounded
 * where they are written (see store/sql/shared.ts), so a summary is as good as the job for state.
 */
export const SUMMARY_ERROR_CHARS = 2048

/**
 * A whole job's state as its summary reads it: the error cut to SUMMARY_ERROR_CHARS characters, as the
 * databases' `substr` cuts it (code points, never half a surrogate pair). For a reader told the job by
 * a change (coordinator/hub.ts `Hint`) that must answer what it would have read.
 */
export function asSummary(job: Job): Job {
  const e = job.error
  // Fewer UTF-16 units than the limit are fewer code points too: nothing to cut (the common case).
  if (e === null || e.length <= SUMMARY_ERROR_CHARS) return job
  let n = 0
  let end = 0
  for (const ch of e) {
    if (n++ === SUMMARY_ERROR_CHARS) break
    end += ch.length
  }
  return end === e.length ? job : { ...job, error: e.slice(0, end) }
}
