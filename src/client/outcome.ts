import { constants } from "node:os"
import { CanceledError, JobFailedError } from "../shared/errors.ts"
import type { Outcome } from "../shared/protocol/schemas.ts"

/** Signal name → number (SIGSEGV → 11), for the shell's 128+N convention. */
export function signalNumber(name: string): number | undefined {
  return (constants.signals as Record<string, number>)[name]
}

/**
 * The exit code the caller must see: exactly the remote one, 128+N for a death by signal N, and a
 * CanceledError or JobFailedError (→ `dffmpeg:` line, exit 1) when dffmpeg itself could not run the job, and
 * a JobFailedError carrying the remote code (→ `dffmpeg:` line, that code) when the job ran but its worker
 * failed it (it wrote files where the caller cannot see them).
 */
export function exitCodeOf(o: Outcome, job: string): number {
  if (o.status === "completed") return o.code ?? 0
  if (o.signal) return 128 + (signalNumber(o.signal) ?? 0)
  // It ran, but failed for a dffmpeg reason (files it wrote were lost): ffmpeg's own code when it failed too.
  if (o.code !== null && o.error && o.status === "failed")
    throw new JobFailedError(`job ${job} failed: ${o.error}`, o.code || 1)
  if (o.code !== null) return o.code
  if (o.status === "canceled") throw new CanceledError(`job ${job} was canceled${o.error ? `: ${o.error}` : ""}`)
  throw new JobFailedError(o.error ? `job ${job} failed: ${o.error}` : `job ${job} failed without an exit code`)
}
