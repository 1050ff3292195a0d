import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, posix } from "node:path"
import { InvalidError } from "../shared/errors.ts"
import { toolOf } from "../shared/ffargs/argv.ts"
import { rewriteGraphPaths } from "../shared/ffargs/graph-paths.ts"
import { checkJobFiles, entryTarget, mapConcatList } from "../shared/paths/contents.ts"
import type { WorkerMapper } from "../shared/paths/mapping.ts"
import { isVarRef, parseVarRef, splitPrefix, unescapeDollar } from "../shared/paths/vars.ts"
import type { Assignment } from "../shared/protocol/worker.ts"

/** The job's files written out with this worker's paths, and its argv naming the copies. */
export interface Copies {
  args: string[]
  /** The per-job folder holding them (bound read-only into the sandbox, removed after the job). */
  dir?: string
  /** argv positions now naming a copy. */
  at: Set<number>
  /** The copies that are concat lists: every entry is an absolute path, so they run with `-safe 0`. */
  lists: string[]
  /**
   * Folders standing for a path variable: a copy of `$Media/sub/l.txt` is `<dir>/<n>/sub/l.txt`, so ffmpeg's
   * messages naming it leave as `$Media/sub/l.txt` (the output's root encoder takes these as roots).
   */
  roots: { name: string; forms: string[] }[]
}

const short = (s: string) => JSON.stringify(s.length > 60 ? s.slice(0, 57) + "..." : s)

/**
 * Writes each of the job's files (concat lists, filter scripts, `$Var` form) into a fresh folder under
 * the worker's temp dir (never the job's scratch working directory: the copies are no output of the
 * job) with every `$Var` resolved and confined by `mapper`, and puts the copies' paths into `args` (the
 * mapped argv). Refusals name the argument as the caller wrote it and the line, never a worker path.
 */
export function materialise(
  a: Pick<Assignment, "binary" | "args" | "paths" | "files">,
  args: string[],
  mapper: WorkerMapper,
): Copies {
  const files = a.files ?? []
  if (!files.length) return { args, at: new Set(), lists: [], roots: [] }
  const kinds = checkJobFiles(toolOf(a.binary), a.args, a.paths, files)
  const dir = mkdtempSync(join(tmpdir(), "dffmpeg-files-"))
  try {
    // The worker's, 0755: the job's user reads the copies but may not rename or replace one (it would
    // then run a list of its own with -safe 0, after the policy checked the worker's).
    chmodSync(dir, 0o755)
    const out = [...args]
    const lists: string[] = []
    const roots: Copies["roots"] = []
    files.forEach((f, k) => {
      const n = f.arg + 1
      const named = `argument ${n} ${short(a.args[f.arg]!)}`
      const kind = kinds.get(f.arg)!
      const text =
        kind === "concat"
          ? mapConcatList(f.content, (value, line) => {
              const target = entryTarget(value)
              if ("url" in target) return value
              const where = `line ${line} of ${named}`
              if (isVarRef(target.path)) return target.prefix + mapper.resolve(target.path, a.paths, where)
              if (target.path.startsWith("/") && mapper.isPassthrough(target.path)) return value
              throw new InvalidError(`${where}: the entry is not a path variable ($Var/...)`, { argument: n })
            })
          : rewriteGraphPaths(f.content, (file, filter) => {
              const { prefix, value } = splitPrefix(file)
              if (isVarRef(value)) return prefix + mapper.resolve(value, a.paths, `filter ${filter} in ${named}`)
              return value.startsWith("$$") ? prefix + unescapeDollar(value) : file
            })
      // Named as the job names it, under a folder of its own (folders 0755, the file 0644: readable by the job).
      const value = splitPrefix(a.args[f.arg]!).value
      const ref = isVarRef(value) ? parseVarRef(value) : undefined
      const sub = join(dir, String(k))
      const rest = posix.resolve("/", ref ? ref.rest : posix.basename(value))
      const copy = join(sub, rest === "/" ? "file" : rest)
      try {
        mkdirSync(posix.dirname(copy), { recursive: true })
        writeFileSync(copy, text)
        // Modes set, not asked for: a worker's umask (077) must not hide the copy from the job's user.
        for (let d = posix.dirname(copy); d.startsWith(sub); d = posix.dirname(d)) chmodSync(d, 0o755)
        chmodSync(copy, 0o644)
      } catch (err) {
        // A name too long for the worker's file system, say: the reason, never the worker's folder.
        const code = (err as NodeJS.ErrnoException).code ?? "error"
        throw new InvalidError(`${named}: the worker cannot write its copy (${code})`, { argument: n })
      }
      if (ref && rest !== "/") roots.push({ name: ref.name, forms: [sub] })
      out[f.arg] = copy
      if (kind === "concat") lists.push(copy)
    })
    return { args: out, dir, at: new Set(files.map((f) => f.arg)), lists, roots }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}

/**
 * `args` with `-safe 0` right before each concat list copy's `-i`, or before ffprobe's positional input
 * (and before a `--` in front of it: after `--` ffprobe takes every argument for an input name).
 */
export function withSafeOff(args: string[], lists: readonly string[]): string[] {
  const out: string[] = []
  for (const arg of args) {
    if (lists.includes(arg))
      out.splice(out.at(-1) === "-i" || out.at(-1) === "--" ? out.length - 1 : out.length, 0, "-safe", "0")
    out.push(arg)
  }
  return out
}
