import { existsSync, lstatSync, readlinkSync } from "node:fs"
import { posix } from "node:path"
import { InvalidError } from "../errors.ts"
import type { Tool } from "../ffargs/argv.ts"
import { classifyArgs } from "../ffargs/classify.ts"
import { FONT_DIRS, rewriteGraphPaths } from "../ffargs/graph-paths.ts"
import { rewriteTee } from "../ffargs/tee.ts"
import { parseUrl, rewriteUrl } from "../ffargs/url.ts"
import { VAR_NAME, escapeDollar, isVarRef, parseVarRef, splitPrefix, unescapeDollar } from "./vars.ts"

/** Maps a client's local absolute paths in argv to `$Var/rest` path variables. */
export interface ClientMapper {
  /** `tool` tells which arguments are filtergraphs, whose file options are mapped too. */
  mapArgs(args: string[], tool?: Tool): { args: string[]; paths: string[]; cwd: string | null }
}

/** Maps `$Var/rest` path variables in argv back to this worker's own directories. */
export interface WorkerMapper {
  mapArgs(args: string[], jobPaths: string[], cwd: string | null, tool?: Tool): { args: string[]; cwd: string | null }
  /** The job's declared path variables on this worker (as configured and with symlinks resolved). */
  roots(jobPaths: string[]): { name: string; root: string; real: string }[]
  /** Is this absolute path one of the passthrough paths (e.g. /dev/null)? */
  isPassthrough(abs: string): boolean
  /** One `$Var[/rest]` to this worker's path, confined to its root; `where` names it in refusals. */
  resolve(value: string, jobPaths: string[], where: string): string
}

const DEFAULT_PASSTHROUGH = ["/dev/null"]

interface Root {
  name: string
  /** The same root as written (normalised) and with symlinks resolved; either may match. */
  forms: string[]
}

/** Symlinks followed in one path before giving up, as the kernel's ELOOP limit. */
const MAX_LINKS = 40

/**
 * The path the kernel opens for `p`, read component by component as it does: a symlink is followed
 * before a `..` after it (`a/link/../x` is the link target's parent's `x`, not `a/x`). From the first
 * missing component on, the rest is appended as written and normalised (outputs and the folders a muxer
 * creates usually do not exist yet, and new folders are no links). A relative `p` is from the process's
 * working directory.
 */
export function canonical(p: string): string {
  const todo = (p.startsWith("/") ? p : `${process.cwd()}/${p}`).split("/").filter((c) => c !== "" && c !== ".")
  let cur = "/"
  let links = 0
  while (todo.length) {
    const c = todo.shift()!
    if (c === "..") {
      cur = posix.dirname(cur)
      continue
    }
    const next = posix.join(cur, c)
    let link: string | undefined
    try {
      link = lstatSync(next).isSymbolicLink() ? readlinkSync(next) : undefined
    } catch {
      return posix.resolve(next, ...todo)
    }
    if (link === undefined) cur = next
    else {
      if (++links > MAX_LINKS) return posix.resolve(next, ...todo)
      if (link.startsWith("/")) cur = "/"
      todo.unshift(...link.split("/").filter((x) => x !== "" && x !== "."))
    }
  }
  return cur
}

/** `p` from `from` as the kernel will read it: joined, not normalised (canonical() resolves it). */
export const joinPath = (from: string, p: string): string => (p.startsWith("/") ? p : `${from}/${p}`)

export function isInside(p: string, root: string): boolean {
  if (root === "/") return p.startsWith("/")
  return p === root || p.startsWith(root + "/")
}

function restOf(p: string, root: string): string {
  if (root === "/") return p === "/" ? "" : p
  return p.slice(root.length)
}

function checkNames(paths: Record<string, string>, role: string): void {
  for (const name of Object.keys(paths)) {
    if (!VAR_NAME.test(name)) {
      throw new InvalidError(
        `path variable name "${name}" in the ${role} paths is invalid; use a letter or '_' followed by letters, digits or '_'`,
      )
    }
  }
}

function passthroughSet(list: string[] | undefined): Set<string> {
  const set = new Set<string>()
  for (const p of list ?? DEFAULT_PASSTHROUGH) {
    set.add(posix.resolve(p))
    set.add(canonical(p))
  }
  return set
}

/** Builds the client-side mapper from the client's `paths` and `passthrough_paths`. */
export function createClientMapper(opts: {
  paths: Record<string, string>
  passthrough?: string[]
  cwd: string
}): ClientMapper {
  checkNames(opts.paths, "client")
  const roots: Root[] = Object.entries(opts.paths).map(([name, dir]) => {
    const forms = [...new Set([posix.resolve(dir), canonical(dir)])]
    return { name, forms }
  })
  // Longest root first so a nested mapping wins over its parent.
  const candidates = roots
    .flatMap((r) => r.forms.map((form) => ({ name: r.name, form })))
    .sort((a, b) => b.form.length - a.form.length)
  const passthrough = passthroughSet(opts.passthrough)
  const names = Object.keys(opts.paths).sort()

  /** `$Var[/rest]` for an absolute path, or null when no root covers it. */
  const toVar = (abs: string): { name: string; mapped: string } | null => {
    const normalised = posix.resolve(abs)
    // Realpath first: the worker confines by realpath, so that is the form it will accept.
    for (const form of new Set([canonical(normalised), normalised])) {
      const hit = candidates.find((c) => isInside(form, c.form))
      if (hit) return { name: hit.name, mapped: `$${hit.name}${restOf(form, hit.form)}` }
    }
    return null
  }

  const isPassthrough = (abs: string): boolean => {
    const normalised = posix.resolve(abs)
    return passthrough.has(normalised) || passthrough.has(canonical(normalised))
  }

  const refuse = (value: string, n: number, where?: string): never => {
    const at = where ? ` in ${where} of argument ${n}` : ""
    throw new InvalidError(
      `path ${posix.resolve(value)}${at} is not under any configured path mapping (client paths: ${names.join(", ") || "none"}); add a mapping or use a relative path`,
      { argument: n },
    )
  }

  return {
    mapArgs(args, tool = "ffmpeg") {
      if (opts.cwd.includes("\uFFFD")) {
        throw new InvalidError(
          `working directory ${opts.cwd} is not valid UTF-8; run from a directory with a UTF-8 name`,
        )
      }
      const used = new Set<string>()
      /**
       * One path (plain or `file:`): `$Var/rest` under the longest root; relative and passthrough paths as
       * they are; `strict` refuses one under no root, otherwise it is left for the worker's policy.
       */
      const mapPath = (arg: string, n: number, strict: boolean, where?: string): string => {
        const { prefix, value } = splitPrefix(arg)
        // A literal leading "$" would read as a path variable on the worker.
        if (value.startsWith("$")) return prefix + escapeDollar(value)
        if (!value.startsWith("/") || isPassthrough(value)) return arg
        const hit = toVar(value)
        if (!hit) return strict ? refuse(value, n, where) : arg
        used.add(hit.name)
        return prefix + hit.mapped
      }
      /** The files a URL wraps (`concat:a|b`, `subfile,,…,:f`...), each as a path. */
      const mapUrl = (url: string, n: number) =>
        rewriteUrl(url, (part) => mapPath(part, n, true, `the ${parseUrl(url).protocol} URL`))
      const kinds = classifyArgs(tool, args)
      const out = args.map((arg, i) => {
        const n = i + 1
        if (arg.includes("\uFFFD")) {
          throw new InvalidError(`argument ${n} is not valid UTF-8; rename the file or pass the argument as UTF-8`, {
            argument: n,
          })
        }
        const { kind, name } = kinds[i]
        if (kind === "path") return mapPath(arg, n, true, name && `-${name}`)
        if (kind === "url") return mapUrl(arg, n)
        if (kind === "tee")
          return rewriteTee(arg, (target) =>
            parseUrl(target).protocol === "file" ? mapPath(target, n, true, "a tee output") : mapUrl(target, n),
          )
        if (kind === "unknown") return mapPath(arg, n, false)
        if (kind === "graph")
          return rewriteGraphPaths(arg, (file, filter) => {
            const { value } = splitPrefix(file)
            // The system's fonts are read where they are (the worker's policy allows them to font options).
            if (value.startsWith("/") && FONT_DIRS.some((d) => isInside(canonical(value), d))) return file
            return mapPath(file, n, true, `filter ${filter}`)
          })
        // Text and device values, option names: as written (a leading "$" escaped, as in every argument).
        const { prefix, value } = splitPrefix(arg)
        return prefix + escapeDollar(value)
      })

      const cwdHit = toVar(opts.cwd)
      if (cwdHit) used.add(cwdHit.name)
      else {
        for (const arg of args) {
          const { value } = splitPrefix(arg)
          if (value === "" || value.startsWith("/") || value.startsWith("-") || value.includes(":")) continue
          if (!existsSync(posix.join(opts.cwd, value))) continue
          throw new InvalidError(
            `relative path ${value} needs the working directory ${opts.cwd} to be under a path mapping; run from a mapped directory or use an absolute path`,
          )
        }
      }
      return { args: out, paths: [...used].sort(), cwd: cwdHit ? cwdHit.mapped : null }
    },
  }
}

/** Builds the worker-side mapper from the worker's `paths` and `passthrough_paths`. */
export function createWorkerMapper(opts: { paths: Record<string, string>; passthrough?: string[] }): WorkerMapper {
  checkNames(opts.paths, "worker")
  const roots = new Map(
    Object.entries(opts.paths).map(([name, dir]) => [name, { root: posix.resolve(dir), real: canonical(dir) }]),
  )
  const passthrough = passthroughSet(opts.passthrough)

  const resolveVar = (value: string, jobPaths: Set<string>, where: string): string => {
    const ref = parseVarRef(value)
    if (!ref) {
      throw new InvalidError(
        `${where} starts with "$" but is not a path variable ($Var or $Var/rest); escape a literal "$" as "$$"`,
      )
    }
    const { name, rest } = ref
    if (!jobPaths.has(name)) {
      throw new InvalidError(
        `path variable $${name} in ${where} is not declared by the job; list it in the job's paths`,
      )
    }
    const entry = roots.get(name)
    if (!entry) {
      throw new InvalidError(
        `path variable $${name} in ${where} is not configured on this worker; add ${name} to the worker's paths`,
      )
    }
    const { root, real } = entry
    const resolved = posix.resolve(root + rest)
    if (!isInside(resolved, root)) {
      throw new InvalidError(`${where} escapes $${name}; remove the ".." segments that leave the mapped directory`)
    }
    if (!isInside(canonical(resolved), real)) {
      throw new InvalidError(
        `${where} escapes $${name} through a symlink; point the symlink inside the mapped directory`,
      )
    }
    return resolved
  }

  const isPassthrough = (abs: string) => {
    const normalised = posix.resolve(abs)
    return passthrough.has(normalised) || passthrough.has(canonical(normalised))
  }

  return {
    roots(jobPaths) {
      return jobPaths.flatMap((name) => {
        const entry = roots.get(name)
        return entry ? [{ name, ...entry }] : []
      })
    },
    isPassthrough,
    resolve: (value, jobPaths, where) => resolveVar(value, new Set(jobPaths), where),
    mapArgs(args, jobPaths, cwd, tool = "ffmpeg") {
      const declared = new Set(jobPaths)
      /** `$Var/rest` resolved, `$$` unescaped; other values as they are (the policy checks them). */
      const resolve = (arg: string, where: string): string => {
        const { prefix, value } = splitPrefix(arg)
        if (isVarRef(value)) return prefix + resolveVar(value, declared, where)
        return prefix + unescapeDollar(value)
      }
      const resolveUrl = (url: string, where: string) =>
        rewriteUrl(url, (part) => resolve(part, `the ${parseUrl(url).protocol} URL in ${where}`))
      const kinds = classifyArgs(tool, args)
      const out = args.map((arg, i) => {
        const where = `argument ${i + 1}`
        const { kind } = kinds[i]
        if (kind === "path") {
          const { value } = splitPrefix(arg)
          if (value.startsWith("/") && !isPassthrough(value))
            throw new InvalidError(
              `absolute path ${value} in ${where} is not allowed on this worker (use a path variable)`,
            )
          return resolve(arg, where)
        }
        if (kind === "url") return resolveUrl(arg, where)
        if (kind === "tee")
          return rewriteTee(arg, (target) =>
            parseUrl(target).protocol === "file"
              ? resolve(target, `a tee output in ${where}`)
              : resolveUrl(target, `a tee output in ${where}`),
          )
        if (kind === "unknown") return resolve(arg, where)
        // Other absolute paths in a graph are left to the policy (system fonts, passthrough paths).
        if (kind === "graph")
          return rewriteGraphPaths(arg, (file, filter) => resolve(file, `filter ${filter} in ${where}`))
        // Text and device values, option names: as written, a literal "$" unescaped.
        const { prefix, value } = splitPrefix(arg)
        return prefix + unescapeDollar(value)
      })
      if (cwd === null) return { args: out, cwd: null }
      if (!isVarRef(cwd)) {
        throw new InvalidError(
          `working directory ${cwd} is not a path variable; the client must send $Var or $Var/rest`,
        )
      }
      return { args: out, cwd: resolveVar(cwd, declared, "the working directory") }
    },
  }
}

/**
 * The caller's root of each path variable as its output should show it: as written in `paths`, or with
 * symlinks resolved when that is how the arguments spelled it (local ffmpeg prints a path as it was given).
 */
export function callerRoots(paths: Record<string, string>, args: string[] = []): Record<string, string> {
  const values = args.map((arg) => splitPrefix(arg).value).filter((v) => v.startsWith("/"))
  return Object.fromEntries(
    Object.entries(paths).map(([name, dir]) => {
      const written = posix.resolve(dir)
      const real = canonical(dir)
      const typed = (form: string) => values.some((v) => isInside(posix.resolve(v), form))
      return [name, typed(written) || !typed(real) ? written : real]
    }),
  )
}
