import { posix } from "node:path"
import { InvalidError } from "../shared/errors.ts"
import { envMatcher, mapReport, parseReport, templateProblem } from "../shared/ffargs/env.ts"
import { canonical, isInside, joinPath, type WorkerMapper } from "../shared/paths/mapping.ts"

/** Never taken from a caller, whatever `allowed_env` says: they choose what runs and where it writes. */
const NEVER = /^(PATH|HOME|TMPDIR|LD_[A-Z0-9_]*|BWRAP_[A-Z0-9_]*)$/

/** A job's environment split into what this worker accepts and the names it drops. */
export interface CallerEnv {
  env: Record<string, string>
  dropped: string[]
}

/**
 * The caller's variables of a job that `allowed` (the worker's `allowed_env`) accepts, FFREPORT's report
 * files mapped to this worker's paths and confined like an output argument: a `$Var` path stays in its
 * root, a relative one needs the job's working directory and must stay in the job's roots. Throws
 * InvalidError for a report file the job may not write.
 */
export function acceptEnv(
  job: { env?: Record<string, string>; paths: string[]; cwd: string | null },
  allowed: readonly string[],
  mapper: WorkerMapper,
): CallerEnv {
  const ok = envMatcher(allowed)
  const env: Record<string, string> = {}
  const dropped: string[] = []
  for (const [name, value] of Object.entries(job.env ?? {})) {
    if (ok(name) && !NEVER.test(name)) env[name] = value
    else dropped.push(name)
  }
  if (env.FFREPORT === undefined) return { env, dropped }
  const report = env.FFREPORT
  const cwd = job.cwd === null ? null : mapper.mapArgs([], job.paths, job.cwd).cwd
  const roots = mapper.roots(job.paths)
  const check = (file: string, mapped: string) => {
    const problem = templateProblem(file)
    if (problem) throw new InvalidError(`FFREPORT file=${file} ${problem}`)
    if (mapped.startsWith("/")) return
    // The default `%p-%t.log` and relative files land in the working directory: a scratch one is deleted.
    if (cwd === null)
      throw new InvalidError(
        `FFREPORT writes its report ${file} into the job's working directory, which is under no path variable`,
      )
    const abs = joinPath(cwd, mapped)
    if (!roots.some((r) => isInside(posix.resolve(abs), r.root) && isInside(canonical(abs), r.real)))
      throw new InvalidError(`FFREPORT file=${file} leaves the job's directories`)
  }
  const map = (file: string) => {
    try {
      const mapped = mapper.mapArgs([file], job.paths, job.cwd).args[0]!
      check(file, mapped)
      return mapped
    } catch (err) {
      if (err instanceof InvalidError && !err.message.startsWith("FFREPORT"))
        throw new InvalidError(`FFREPORT file=${file}: ${err.message}`)
      throw err
    }
  }
  // No `file=`: ffmpeg's default name is checked like a relative file.
  if (!parseReport(report).some((p) => p.key === "file")) check("%p-%t.log", "%p-%t.log")
  env.FFREPORT = mapReport(report, map)
  return { env, dropped }
}

/**
 * The environment a job's process gets: the one its confinement builds (undefined: the worker's own)
 * with the accepted caller variables on top.
 */
export function spawnEnv(
  base: Record<string, string> | undefined,
  caller: Record<string, string>,
  own: Record<string, string | undefined> = process.env,
): Record<string, string | undefined> | undefined {
  if (!Object.keys(caller).length) return base
  return { ...(base ?? own), ...caller }
}
