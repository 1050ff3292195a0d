import { posix } from "node:path"
import { InvalidError } from "../shared/errors.ts"
import { fileOption, parseArgv, type Tool } from "../shared/ffargs/argv.ts"
import { parseUrl } from "../shared/ffargs/url.ts"
import {
  contentArgs,
  entryTarget,
  FILE_BYTES_MAX,
  FILES_BYTES_MAX,
  FILES_MAX,
  mapConcatList,
  safeFilename,
  safeOff,
} from "../shared/paths/contents.ts"
import type { ClientMapper } from "../shared/paths/mapping.ts"
import { splitPrefix } from "../shared/paths/vars.ts"
import { readRegularFile } from "../shared/read-file.ts"

/** A file the job names, its content rewritten to `$Var` form (the submission's `files`). */
export interface JobFile {
  arg: number
  content: string
}

/** Bytes of an input read to tell an ffconcat list without `-f concat`. */
const HEAD = 64
// A byte order mark is kept: ffmpeg reads it as part of the first line, and so must the worker's copy.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const short = (s: string) => JSON.stringify(s.length > 60 ? s.slice(0, 57) + "..." : s)

/** The local file an argument names (caller's cwd for relative ones), or undefined for stdin and URLs. */
function localPath(arg: string, cwd: string): string | undefined {
  if (arg === "-" || parseUrl(arg).protocol !== "file") return undefined
  const { value } = splitPrefix(arg)
  return value ? posix.resolve(cwd, value) : undefined
}

/**
 * The concat lists and filter scripts of `args` (the caller's), read from this machine and rewritten to
 * `$Var` form with `mapper`; their path variables are added to `mapped.paths`. A file too large, an entry
 * under no mapping, or one ffmpeg's `-safe 1` would refuse, is refused naming the argument and the line.
 * Files that cannot be read are left to ffmpeg (it fails on them as it would here).
 */
export function jobFiles(
  tool: Tool,
  args: string[],
  mapper: ClientMapper,
  mapped: { paths: string[] },
  cwd: string,
  read: (path: string, max: number) => Uint8Array | undefined = readRegularFile,
): JobFile[] {
  const head = (i: number) => {
    const path = localPath(args[i]!, cwd)
    const bytes = path === undefined ? undefined : read(path, HEAD)
    return bytes && new TextDecoder().decode(bytes)
  }
  const found = contentArgs(tool, args, head)
  if (!found.length) return []
  const inputs = new Map(parseArgv(tool, args).files.map((f) => [f.index, f]))
  const out: JobFile[] = []
  let total = 0
  for (const c of found) {
    const n = c.index + 1
    const named = `argument ${n} (${c.option} ${short(args[c.index]!)})`
    const what = c.kind === "concat" ? "concat list" : `${c.option} file`
    const path = localPath(args[c.index]!, cwd)
    const bytes = path === undefined ? undefined : read(path, FILE_BYTES_MAX + 1)
    if (bytes === undefined) continue
    if (bytes.length > FILE_BYTES_MAX)
      throw new InvalidError(`${named}: the ${what} is larger than 1 MiB; too large to send with the job`, {
        argument: n,
      })
    total += bytes.length
    if (out.length >= FILES_MAX || total > FILES_BYTES_MAX)
      throw new InvalidError(
        `${named}: the job's concat lists and filter scripts are more than ${FILES_MAX} files or 4 MiB; too many to send with the job`,
        { argument: n },
      )
    let text: string
    try {
      text = utf8.decode(bytes)
    } catch {
      throw new InvalidError(`${named}: the ${what} is not valid UTF-8`, { argument: n })
    }
    const use = (one: { args: string[]; paths: string[] }) => {
      mapped.paths = [...new Set([...mapped.paths, ...one.paths])].sort()
      return one.args
    }
    if (c.kind === "graph") {
      let graph: string
      try {
        // Mapped as the graph option it stands for (the same file options, the same escaping).
        graph = use(mapper.mapArgs(["-filter_complex", text], tool))[1]!
      } catch (err) {
        if (!(err instanceof InvalidError)) throw err
        throw new InvalidError(`${named}: ${err.message.replace(/ (of|in) argument 2\b/, "")}`, { argument: n })
      }
      // A script without paths is read by the worker where it is.
      if (graph !== text) out.push({ arg: c.index, content: graph })
      continue
    }
    const safe = !safeOff(fileOption(inputs.get(c.index)!, "safe"))
    const dir = posix.dirname(path!)
    const content = mapConcatList(text, (value, line) => {
      const at = `${named}, line ${line}`
      if (safe && !safeFilename(value))
        throw new InvalidError(
          `${at}: ffmpeg's concat demuxer refuses the file name ${short(value)} without -safe 0 (unsafe file name)`,
          { argument: n },
        )
      const target = entryTarget(value)
      if ("url" in target) return value
      const abs = posix.resolve(target.fromList ? dir : cwd, target.path)
      try {
        return target.prefix + use(mapper.mapArgs([abs], tool))[0]!
      } catch (err) {
        if (!(err instanceof InvalidError)) throw err
        throw new InvalidError(
          `${at}: ${err.message.replace(/; add a mapping or use a relative path$/, "; add a mapping")}`,
          {
            argument: n,
          },
        )
      }
    })
    out.push({ arg: c.index, content })
  }
  return out
}
