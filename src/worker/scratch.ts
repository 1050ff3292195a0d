import { readdirSync } from "node:fs"

/** How many names the caller's one `dffmpeg:` line lists before "and N more". */
const LISTED = 10

/**
 * What a job left in its scratch working directory (the worker puts nothing there), as names relative to
 * it, sorted: files the job wrote where the caller cannot see them, since the directory is deleted.
 */
export function leftInScratch(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => (e.parentPath === dir ? e.name : `${e.parentPath.slice(dir.length + 1)}/${e.name}`))
    .sort()
}

/**
 * The job's error when it wrote `names` into a scratch working directory: one line the caller reads after
 * ffmpeg's own stderr, instead of an exit 0 with the files gone.
 */
export function lostFilesError(binary: string, names: string[]): string {
  // Cut so that ten of them fit the exit report's 4096 characters whatever the names are.
  const shown = names
    .slice(0, LISTED)
    .map((n) => JSON.stringify(n))
    .map((q) => (q.length > 250 ? `${q.slice(0, 250)}…"` : q))
  const more = names.length > LISTED ? ` and ${names.length - LISTED} more` : ""
  const them = names.length === 1 ? "it" : "them"
  return (
    `${binary} wrote ${shown.join(", ")}${more} into its working directory, which is under no path mapping, ` +
    `so the caller cannot see ${them}: run from a mapped directory or give absolute paths`
  )
}
