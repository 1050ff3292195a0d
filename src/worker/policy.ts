import { posix } from "node:path"
import { InvalidError } from "../shared/errors.ts"
import { type FileArg, fileOption, formatName, parseArgv, type Tool, toolOf } from "../shared/ffargs/argv.ts"
import { deviceParts, optionKind, WRITE_OPTIONS } from "../shared/ffargs/classify.ts"
import { type FilterOption, getToken, parseFiltergraph } from "../shared/ffargs/filtergraph.ts"
import { FILTER_FILES, FONT_DIRS, namedOptions } from "../shared/ffargs/graph-paths.ts"
import { LINES, playlistEntries } from "../shared/ffargs/hls.ts"
import { teeSlaves } from "../shared/ffargs/tee.ts"
import { KNOWN_PROTOCOLS, NETWORK_PROTOCOLS, parseUrl, urlHost } from "../shared/ffargs/url.ts"
import { inCidr, parseCidr, type Cidr } from "../shared/net/cidr.ts"
import { canonical, isInside, joinPath } from "../shared/paths/mapping.ts"

/**
 * The worker's argument policy: every argument of an ffmpeg/ffprobe job is classified (options,
 * inputs, outputs, file-naming option values, filtergraphs, protocol URLs) and refused, with one line
 * naming the argument and the rule, when it could reach a file outside the job's directories, a
 * protocol outside the allow-list or a host the worker does not allow. Defence in depth in front of
 * the sandbox; docs/security.md lists the rules.
 */

export interface PolicyConfig {
  allowNetwork: boolean
  /** Names, IPs or CIDRs with an optional `:port`; empty means any host (with allowNetwork). */
  allowedHosts: string[]
  /** The worker's `devices` (the sandbox exposes them): the only device nodes a device option may name. */
  devices?: string[]
}

export interface PolicyJob {
  binary: string
  /** Arguments as submitted (quoted in refusals). */
  original: string[]
  /** Arguments after path mapping (worker paths), one for one with `original`. */
  args: string[]
  /** Mapped working directory; null runs in a fresh scratch directory. */
  cwd: string | null
  /** The job's directories: its declared path variables on this worker. */
  roots: { root: string; real: string }[]
  isPassthrough(abs: string): boolean
  /** How this job's processes are started (the sandbox): used to probe its media the same way. */
  confine?: Confine
  /**
   * argv positions naming a copy the worker wrote from the job's files (worker/contents.ts): a concat
   * list, whose entries are all absolute (so its `-safe 0` is allowed and each entry is checked as such),
   * or a filter script. The copy itself lies outside the job's directories; what it says is checked.
   */
  copies?: ReadonlySet<number>
}

/**
 * The argv, environment and extra pipe (bwrap's info fd) that start `command` confined, in `cwd`;
 * `started` is told the pid of what was spawned (the worker logs it with the job, like the job's own).
 */
export type Confine = (
  command: string[],
  cwd: string,
) => { argv: string[]; env?: Record<string, string>; infoFd: boolean; started?(pid: number): void }

export interface PolicyDeps {
  /**
   * Up to `max` bytes of a regular file, undefined when it is missing, not a regular file or not
   * readable by the user the job runs as (the policy never reads more than the job itself could).
   */
  read(path: string, max: number): Uint8Array | undefined
  /** The `filename` tags of a local input's attachment streams (for `-dump_attachment` without a name). */
  attachmentNames?(path: string, confine?: Confine): Promise<string[]>
}

export interface ArgumentPolicy {
  /** Resolves to the argv to run (with `-protocol_whitelist` added); rejects with a PolicyError. */
  check(job: PolicyJob): Promise<{ args: string[] }>
}

export class PolicyError extends InvalidError {}

/**
 * What a refusal found inside a file the job named says instead of the rule (which quotes values):
 * the file's content is never quoted back, only which file and line.
 */
type Kind = "path" | "protocol" | "network" | "option" | "filter" | "limit"
const IN_FILE: Record<Exclude<Kind, "limit">, string> = {
  path: "names a file outside the job's directories",
  protocol: "names a protocol that is not allowed",
  network: "names a network protocol or host that is not allowed on this worker",
  option: "sets an option that is not allowed",
  filter: "uses a filter option that is not allowed",
}

/** Where relative paths point for a job without a working directory (its fresh scratch directory). */
const SCRATCH = "/.dffmpeg-scratch"
const BASE_PROTOCOLS = ["file", "pipe"]
const CONFINED_WRAPPERS = new Set(["concat", "subfile", "cache", "crypto"])
const ALLOWED_TEXT = "file, pipe, data, and concat, subfile, cache, crypto over files under a path variable"

/** Capture and playback devices (libavdevice): never reachable from a job. */
const DEVICES = new Set([
  "alsa",
  "caca",
  "fbdev",
  "iec61883",
  "jack",
  "kmsgrab",
  "libcdio",
  "libdc1394",
  "openal",
  "opengl",
  "oss",
  "pulse",
  "sdl",
  "sdl2",
  "video4linux2",
  "v4l2",
  "x11grab",
  "xv",
  "sndio",
  "decklink",
  "dshow",
  "gdigrab",
  "avfoundation",
])
/** Demuxers whose input lists other files by absolute URL; not parsed, so refused. */
const MANIFESTS = new Set(["dash", "imf", "webm_dash_manifest"])

const PRESETS = new Set(["pre", "vpre", "apre", "spre"])
/** Font options may also name the system's fonts (FONT_DIRS). */
const FONT_KEYS = new Set(["fontfile", "fontsdir"])
/** Filters that load code (plugins) by file name: only bare names from the system's plugin folders. */
const PLUGIN_FILTERS: Record<string, { keys: string[]; pos: number }> = {
  frei0r: { keys: ["filter_name"], pos: 0 },
  frei0r_src: { keys: ["filter_name"], pos: 0 },
  ladspa: { keys: ["file", "f"], pos: 0 },
}
/** Filters that open network sockets. */
const NETWORK_FILTERS = new Set(["zmq", "azmq"])

/** Text files read whole to be checked (playlists, filter scripts); larger ones are refused. */
const MAX_TEXT = 8 << 20
/** Bytes of an input read to recognise a playlist or manifest. */
const SNIFF = 4096
/**
 * Bytes ffmpeg's format probe reads at most (`-formatprobesize`, 1 MiB by default; larger values are
 * refused): a file without a NUL in its first SNIFF bytes is read this far to look for what the probes see.
 */
const FORMAT_PROBE = 1 << 20
/** Playlists and lists checked per job (nested ones included). */
const MAX_PLAYLISTS = 64
/** Per job: entries of playlists and lists checked, and bytes of files read whole to be checked. */
const MAX_ENTRIES = 20_000
const MAX_READ = 16 << 20
/** Levels of `\` and quote escaping a scanned value is read through (after the raw value). */
const MAX_ESCAPES = 4
/** Entries checked between two yields to the event loop (heartbeats keep flowing). */
const YIELD_EVERY = 256
const tick = () => new Promise<void>((r) => setImmediate(r))
const short = (s: string) => JSON.stringify(s.length > 60 ? s.slice(0, 57) + "..." : s)
const dec = new TextDecoder()

interface HostRule {
  cidr?: Cidr
  name?: string
  port?: number
}

/** Parses one `allowed_hosts` entry; undefined when it is not a name, IP or CIDR with an optional port. */
export function parseHostRule(text: string): HostRule | undefined {
  let host = text.trim()
  let port: number | undefined
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(host)
  if (bracket) {
    host = bracket[1]
    port = bracket[2] ? Number(bracket[2]) : undefined
  } else if ((host.match(/:/g) ?? []).length === 1) {
    const [h, p] = host.split(":")
    host = h
    port = Number(p)
  }
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) return undefined
  const cidr = parseCidr(host)
  if (cidr) return { cidr, port }
  return /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i.test(host) ? { name: host.toLowerCase(), port } : undefined
}

export function createArgumentPolicy(cfg: PolicyConfig, deps: PolicyDeps): ArgumentPolicy {
  const hosts = cfg.allowedHosts.map((h) => parseHostRule(h) ?? { name: "\0" })
  const hostAllowed = (host: string, port: number | undefined) =>
    !hosts.length ||
    hosts.some((r) => (r.port === undefined || r.port === port) && (r.cidr ? inCidr(host, r.cidr) : r.name === host))

  return {
    async check(job) {
      const tool = toolOf(job.binary)
      const base = job.cwd ?? SCRATCH
      const areas = job.cwd === null ? [...job.roots, { root: SCRATCH, real: SCRATCH }] : job.roots
      const used = new Set<string>()
      const probes: { at: number; path: string }[] = []
      let playlists = 0
      let entries = 0
      let spent = 0
      let steps = 0
      /** Set while checking what a file says (`line 3 of "list.m3u8"`): refusals then quote no content. */
      let inFile: string | undefined
      /** Is argument `i` (not a line inside a file) one of the worker's own copies? */
      const copied = (i: number) => inFile === undefined && job.copies?.has(i) === true
      /** Positions of the `-safe` values that belong to a concat list copy's input. */
      let safeOff = new Set<number>()

      const fail = (i: number, rule: string, kind: Kind = "path"): never => {
        const said = inFile !== undefined && kind !== "limit" ? `${inFile} ${IN_FILE[kind]}` : rule
        throw new PolicyError(`argument ${i + 1} ${short(job.original[i] ?? job.args[i])}: ${said}`, {
          argument: i + 1,
        })
      }
      /** A file's name in a refusal: relative to the job's directory when inside it, else its base name (no worker paths). */
      const fileName = (abs: string) => {
        const rel = posix.relative(base, abs)
        return short(rel && !rel.startsWith("..") ? rel : posix.basename(abs))
      }
      /** Runs `fn` (sync, or until its promise settles) with refusals saying `where` instead of quoting. */
      const within = <T>(where: string, fn: () => T): T => {
        const before = inFile
        inFile = where
        let sync = true
        try {
          const out = fn()
          if (!(out instanceof Promise)) return out
          sync = false
          return out.finally(() => (inFile = before)) as T
        } finally {
          if (sync) inFile = before
        }
      }
      /** A yield to the event loop every few steps (entries, filters, lines) so one job never holds it. */
      const step = async () => {
        if (++steps % YIELD_EVERY === 0) await tick()
      }
      /** One more playlist or list entry: capped per job. */
      const entry = async (i: number) => {
        if (++entries > MAX_ENTRIES)
          fail(i, `the job's playlists and lists have more than ${MAX_ENTRIES} entries; too many to check`, "limit")
        await step()
      }
      /**
       * Inside the job's directories, after symlinks. A NUL byte never is: ffmpeg reads a script or a line
       * as a C string, up to it (`amovie=l\0x` opens `l`), and no symlink after it can be resolved.
       */
      const confined = (abs: string) => {
        if (abs.includes("\0")) return false
        // As written (normalised) for the root it names; as the kernel opens it (links before `..`) for where it is.
        const norm = posix.resolve(abs)
        const real = canonical(abs)
        if (job.isPassthrough(norm) && job.isPassthrough(real)) return true
        return areas.some((a) => (isInside(norm, a.root) || isInside(norm, a.real)) && isInside(real, a.real))
      }
      /** A file path (pattern characters are literal here): must stay in the job's directories. */
      const checkPath = (i: number, path: string, from: string, what: string): string => {
        const abs = joinPath(from, path)
        if (!confined(abs)) {
          const where = path.startsWith("/") ? "is outside the job's path variables" : "leaves the job's directories"
          fail(i, `${what}${what ? " " : ""}${path.startsWith("/") ? "" : "relative path "}${short(path)} ${where}`)
        }
        return abs
      }
      const checkHost = (i: number, protocol: string, rest: string) => {
        if (!cfg.allowNetwork)
          fail(i, `network protocol ${protocol} is not allowed on this worker (allow_network is off)`, "network")
        const h = urlHost(rest)
        if (!h && hosts.length) fail(i, `${protocol} URL has no host to check against allowed_hosts`, "network")
        if (h && !hostAllowed(h.host, h.port))
          fail(i, `host ${h.host}${h.port ? `:${h.port}` : ""} is not in this worker's allowed_hosts`, "network")
        used.add("network")
      }
      /** Inside one of the worker's `devices`, as written or after symlinks, and still after symlinks. */
      const isDevice = (abs: string) => {
        const norm = posix.resolve(abs)
        const real = canonical(abs)
        return (cfg.devices ?? []).some((d) => {
          const root = posix.resolve(d)
          const rootReal = canonical(d)
          return (isInside(norm, root) || isInside(norm, rootReal)) && isInside(real, rootReal)
        })
      }
      /**
       * A hardware device value: a device node (anything with a `/`, relative ones from the working
       * directory) must be in the worker's `devices`, which the sandbox exposes; an index or a name (`0`,
       * `va`, `:0`) names none; an X11 display on a host (`host:0`, `::1:0`) is a network connection to it.
       */
      const checkDevice = (i: number, name: string, value: string) => {
        for (const part of deviceParts(name, value)) {
          if (part.includes("/")) {
            if (!isDevice(joinPath(base, part)))
              fail(
                i,
                `-${name} names device ${short(part)}, which is not in this worker's devices; add it (or its folder) to devices in the worker's config`,
                "option",
              )
            continue
          }
          // Xlib's host is everything before the last ':' (`::ffff:10.0.0.5:0` too); none, or `unix`, is local.
          const display = /^(.*):(\d+)(?:\.\d+)?$/.exec(part)
          if (display && display[1] !== "" && display[1] !== "unix")
            checkHost(i, "x11", `//[${display[1]}]:${6000 + Number(display[2])}`)
        }
      }
      /** A URL or path ffmpeg opens; returns the local path for plain files. */
      const checkUrl = (i: number, url: string, from: string, what = ""): string | undefined => {
        if (url === "-") return undefined
        const u = parseUrl(url)
        const p = u.protocol
        if (p === "file") return checkPath(i, u.rest, from, what)
        if (p === "pipe") {
          if (!/^[0-2]?$/.test(u.rest))
            fail(i, "pipe may only use the job's stdin, stdout or stderr (pipe:0, pipe:1, pipe:2)", "protocol")
          return undefined
        }
        if (p === "data") {
          used.add(p)
          return undefined
        }
        if (CONFINED_WRAPPERS.has(p)) {
          if (!u.inner.length || u.inner.some((x) => !x)) fail(i, `${p} names no file`, "protocol")
          for (const inner of u.inner) {
            const iu = parseUrl(inner)
            if (iu.protocol !== "file") fail(i, `${p} may only read files under a path variable`, "protocol")
            if (!confined(joinPath(from, iu.rest))) fail(i, `${p} may only read files under a path variable`)
          }
          used.add(p)
          return undefined
        }
        if (p === "unix") {
          // A local socket: a path like any other (never the worker's own sockets), and network.
          checkPath(i, u.rest.replace(/^\/\/(?=\/)/, ""), from, what || "unix socket")
          if (!cfg.allowNetwork)
            fail(i, "network protocol unix is not allowed on this worker (allow_network is off)", "network")
          used.add("network")
          return undefined
        }
        if (NETWORK_PROTOCOLS.has(p)) {
          checkHost(i, p, u.rest)
          return undefined
        }
        if (KNOWN_PROTOCOLS.has(p))
          return fail(i, `protocol ${p} is not allowed (allowed: ${ALLOWED_TEXT})`, "protocol")
        return fail(i, `unknown protocol "${p}:" (allowed: ${ALLOWED_TEXT})`, "protocol")
      }
      /**
       * Any value, raw: path-like tokens (absolute, `..`) and protocol URLs inside it are checked. In an
       * option's value (`options`: not a filter's) the word `tee` is refused: a tee set up inside a muxer
       * (a tee slave's `f=tee`, `-fifo_format tee`, fifo's `format_opts`) splits its file name into
       * outputs at `|`, which only a `-f tee` output's check does.
       */
      const scanRaw = (i: number, value: string, what: string, options: boolean) => {
        // Not split at parentheses: `(iw*a)/2` in an expression is no path.
        for (const part of value.split(/[\s'"=,;|[\]]+/)) {
          if (!part) continue
          if (options && part.toLowerCase() === "tee")
            fail(
              i,
              `${what || "option value"} names the tee muxer inside another muxer; only a -f tee output may`,
              "option",
            )
          const m = /^([A-Za-z0-9+.-]+):/.exec(part)
          if (m && KNOWN_PROTOCOLS.has(m[1].toLowerCase().split("+")[0]) && m[1].toLowerCase() !== "file") {
            checkUrl(i, part, base, what)
            continue
          }
          for (const tok of part.replace(/^file:/i, "").split(":")) {
            if (tok.startsWith("/") || /(^|\/)\.\.(\/|$)/.test(tok)) checkPath(i, tok, base, what)
          }
        }
      }
      /**
       * Any value, raw and unescaped as av_get_token would (dictionaries such as `-x264-params`,
       * option strings, sendcmd arguments: `stats=\/x` names `/x`), down to a few levels; a value
       * escaped deeper is refused (muxers nested in fifo's `format_opts` unescape once more each).
       */
      const scan = (i: number, value: string, what = "", options = false) => {
        for (let v = value, level = 0; ; level++) {
          scanRaw(i, v, what, options)
          if (!/[\\']/.test(v)) return
          const next = getToken(v, 0, "").token
          if (next === v) return
          if (level === MAX_ESCAPES)
            fail(
              i,
              `${what || "option value"} nests escapes more than ${MAX_ESCAPES} levels deep; too deep to check`,
              "limit",
            )
          v = next
        }
      }
      /** A whole text file (filter scripts, playlists, key info); refused when too large to check whole. */
      const readText = (i: number, abs: string, what: string) => {
        const bytes = deps.read(abs, MAX_TEXT + 1)
        if (bytes && bytes.length > MAX_TEXT)
          fail(i, `${what} is larger than ${MAX_TEXT >> 20} MiB; too large to check`, "limit")
        spent += bytes?.length ?? 0
        if (spent > MAX_READ)
          fail(
            i,
            `the job's playlists, lists and scripts add up to more than ${MAX_READ >> 20} MiB; too much to check`,
            "limit",
          )
        return bytes ? dec.decode(bytes) : undefined
      }
      const checkGraph = async (i: number, graph: string, depth = 0): Promise<void> => {
        if (depth > 3) fail(i, "filtergraph nests movie sources too deeply", "limit")
        for (const f of parseFiltergraph(graph)) {
          await step()
          const what = `filter ${f.name || "(unnamed)"}`
          const named = (keys: string[], pos?: number) => namedOptions(f, keys, pos)
          if (NETWORK_FILTERS.has(f.name) && !cfg.allowNetwork)
            fail(i, `${what} opens a network socket; not allowed on this worker (allow_network is off)`, "network")
          const plugin = PLUGIN_FILTERS[f.name]
          if (plugin) {
            for (const o of named(plugin.keys, plugin.pos)) {
              if (o.value.includes("/"))
                fail(
                  i,
                  `${what} may only load plugins by name from the system's plugin folders, not ${short(o.value)}`,
                  "filter",
                )
            }
          }
          const files = FILTER_FILES[f.name]
          const checked = new Set<FilterOption>()
          if (files) {
            const format = formatName(
              f.options.find(
                (o) => o.key === "format_name" || (o.key === "f" && (f.name === "movie" || f.name === "amovie")),
              )?.value,
            )
            if (format && DEVICES.has(format)) fail(i, `${what} may not open device ${format}`, "filter")
            const keys = f.name === "movie" || f.name === "amovie" ? ["filename"] : files.keys
            for (const o of named(keys, files.pos)) {
              checked.add(o)
              const key = o.key ?? keys[0]
              if (format === "lavfi") await checkGraph(i, o.value, depth + 1)
              else if (FONT_KEYS.has(key) && FONT_DIRS.some((d) => isInside(canonical(joinPath(base, o.value)), d)))
                continue
              else {
                const path = checkUrl(i, o.value, base, what)
                // movie opens its file as an input is opened: a playlist's, a list's entries are read too.
                if (path && (f.name === "movie" || f.name === "amovie")) await sniff(i, path, format)
                // Commands read from a file reinit other filters (`drawtext reinit textfile=...`).
                const text =
                  path && (f.name === "sendcmd" || f.name === "asendcmd")
                    ? readText(i, path, `${what} file`)
                    : undefined
                if (text !== undefined) {
                  const lines = text.split(LINES)
                  for (let n = 0; n < lines.length; n++) {
                    await step()
                    within(`line ${n + 1} of ${fileName(path!)}`, () => scan(i, lines[n], `${what} file`))
                  }
                  within(fileName(path!), () => scan(i, text, `${what} file`))
                }
              }
            }
          }
          for (const o of f.options) if (!checked.has(o)) scan(i, o.value, what)
        }
      }
      /** An HLS playlist: every entry (segments, keys, maps, variants, quoted or not) must be confined too. */
      /**
       * ffmpeg reads a playlist's or list's relative entries from its URL cut at a `?` or `#` (the query
       * or fragment for ff_make_absolute_url), not from the folder holding it: such a name is refused.
       */
      const plainName = (i: number, abs: string, what: string) => {
        if (/[?#]/.test(abs))
          fail(
            i,
            `${what} ${fileName(abs)} holds '?' or '#' in its path, where ffmpeg would cut it; rename it`,
            "limit",
          )
      }
      const checkPlaylist = async (i: number, abs: string, text: string, depth: number) => {
        if (++playlists > MAX_PLAYLISTS || depth > 4) fail(i, "HLS playlists and concat lists nest too deeply", "limit")
        plainName(i, abs, "HLS playlist")
        const dir = posix.dirname(abs)
        for (const e of playlistEntries(text)) {
          await entry(i)
          await within(`line ${e.line} of ${fileName(abs)}`, async () => {
            const u = parseUrl(e.uri)
            if (u.protocol !== "file") {
              if (!NETWORK_PROTOCOLS.has(u.protocol))
                fail(i, `HLS playlist entry ${short(e.uri)}: protocol ${u.protocol} is not allowed`, "protocol")
              return checkHost(i, u.protocol, u.rest)
            }
            // A `file:` URL is absolute to hls.c (ff_make_absolute_url keeps it): ffmpeg opens it from its
            // working directory, not from the playlist's folder; a bare `?query` or `#fragment` goes on the
            // playlist's own name.
            const path = /^[?#]/.test(e.uri) ? abs + e.uri : joinPath(/^file:/i.test(e.uri) ? base : dir, u.rest)
            if (!confined(path)) fail(i, `HLS playlist entry ${short(e.uri)} is outside the job's path variables`)
            await sniff(i, path, undefined, depth + 1)
          })
        }
      }
      /**
       * A concat demuxer list: `safe=1` (enforced) already refuses absolute, `..` and protocol entries;
       * symlinks out of the root, what each entry is (an HLS playlist, another list: checked like an
       * input) and per-file `option` directives (`enable_drefs 1`) are checked here. A worker's copy
       * (`absolute`, run with `-safe 0`) has absolute entries: each is checked like an input URL.
       */
      const checkConcatList = async (i: number, abs: string, text: string, depth: number, absolute = false) => {
        if (++playlists > MAX_PLAYLISTS || depth > 4) fail(i, "HLS playlists and concat lists nest too deeply", "limit")
        if (!absolute) plainName(i, abs, "concat list")
        const dir = posix.dirname(abs)
        const lines = text.split(LINES)
        for (let n = 0; n < lines.length; n++) {
          // concatdec's white space: a byte order mark is part of the first keyword (ffmpeg refuses it).
          const line = lines[n].replace(/^[ \t]+|[ \t]+$/g, "")
          const directive = /^(\S+)\s*(.*)$/.exec(line)
          if (!directive || line.startsWith("#")) continue
          const [, word, rest] = directive
          await within(`line ${n + 1} of ${fileName(abs)}`, async () => {
            if (word === "file") {
              await entry(i)
              const name = getToken(rest, 0, " \t").token
              if (name && absolute) {
                const path = checkUrl(i, name, dir, "concat list entry")
                return path === undefined ? undefined : sniff(i, path, undefined, depth + 1)
              }
              if (!name || parseUrl(name).protocol !== "file") return
              const path = joinPath(dir, name)
              if (!confined(path)) fail(i, `concat list entry ${short(name)} is outside the job's path variables`)
              await sniff(i, path, undefined, depth + 1)
            } else if (word === "option") {
              const key = getToken(rest, 0, " \t")
              const value = getToken(rest, key.end, "").token
              await checkOption(key.token, value, i)
            }
          })
        }
      }
      /** Inputs whose content lists other files: HLS and concat lists are checked entry by entry, manifests refused. */
      const sniff = async (
        i: number,
        abs: string,
        format: string | undefined,
        depth = 0,
        copy = false,
      ): Promise<void> => {
        if (format && MANIFESTS.has(format)) fail(i, `input format ${format} lists other files; not allowed`, "limit")
        if (format === "sdp" || format === "rtsp") checkHost(i, format, "")
        const first = deps.read(abs, SNIFF)
        if (first === undefined) return
        const head = dec
          .decode(first)
          .replace(/^\uFEFF/, "")
          .trimStart()
        // What ffmpeg's format probe reads: up to FORMAT_PROBE bytes, as a C string (to the first NUL).
        let probed = first
        if (first.length === SNIFF && !first.includes(0)) {
          probed = deps.read(abs, FORMAT_PROBE) ?? first
          spent += probed.length
          if (spent > MAX_READ)
            fail(i, `the job's inputs to probe add up to more than ${MAX_READ >> 20} MiB; too much to check`, "limit")
        }
        const nul = probed.indexOf(0)
        const probe = dec.decode(nul === -1 ? probed : probed.subarray(0, nul))
        // A `-f` decides over the head: `-f concat` reads "#EXTM3U" as a comment and the list's entries.
        if (format === "concat" || (format !== "hls" && head.startsWith("ffconcat version"))) {
          const text = readText(i, abs, "concat list")
          return text === undefined ? undefined : checkConcatList(i, abs, text, depth, copy)
        }
        if (format === "hls" || head.startsWith("#EXTM3U")) {
          const text = readText(i, abs, "HLS playlist")
          return text === undefined ? undefined : checkPlaylist(i, abs, text, depth)
        }
        // dash_probe finds "<MPD" anywhere, in any case; imf_probe "<CompositionPlaylist".
        if (/<mpd|<compositionplaylist/i.test(probe))
          fail(i, "input is a DASH or IMF manifest that lists other files; not allowed", "limit")
        // sdp_probe: any line starting "c=IN IP"; its hosts are not checked, so allowed_hosts refuses it too.
        if (/^v=0\r?\n/.test(head) || /(^|\n\r?)c=IN IP/.test(probe)) {
          if (!cfg.allowNetwork)
            fail(
              i,
              "input is an SDP description (network streams); not allowed on this worker (allow_network is off)",
              "network",
            )
          checkHost(i, "sdp", "")
        }
      }
      /**
       * image2 input patterns: `glob` (and `glob_sequence`, the default, for `%`-escaped wildcards)
       * expands braces (GLOB_BRACE), so `{/abs/x,}` names any path: braces are refused, the
       * directory before the first wildcard must be the job's, and so must every match (a symlink
       * inside pointing out). Any other `-pattern_type` value is taken as a glob.
       */
      const checkGlob = async (file: FileArg) => {
        const type = fileOption(file, "pattern_type")
        if (type !== undefined && /^(sequence|none|2|3)$/.test(type)) return
        const explicit = type !== undefined && !/^(glob_sequence|0)$/.test(type)
        const url = parseUrl(file.url).rest
        const pattern = explicit ? url : /%[*?[\]{}]/.test(url) ? url.replace(/%([*?[\]{}%])/g, "$1") : undefined
        if (pattern === undefined) return
        if (/[{}]/.test(pattern))
          fail(
            file.index,
            `-pattern_type ${type ?? "glob_sequence"} patterns may not contain braces (they expand to any path)`,
          )
        const wild = pattern.search(/[*?[]/)
        if (wild === -1) return
        if (/(^|\/)\.\.(\/|$)/.test(pattern.slice(wild)))
          fail(file.index, 'a glob pattern may not contain ".." after a wildcard')
        const dir = checkPath(file.index, posix.dirname(pattern.slice(0, wild) + "x"), base, "glob pattern directory")
        const rest = pattern.slice(pattern.lastIndexOf("/", wild) + 1)
        let matches: string[] = []
        try {
          matches = [...new Bun.Glob(rest).scanSync({ cwd: dir, onlyFiles: false, followSymlinks: false, dot: false })]
        } catch {
          // No such folder: ffmpeg finds nothing either.
        }
        for (const m of matches) {
          await entry(file.index)
          if (!confined(posix.join(dir, m)))
            fail(file.index, "glob pattern matches a file outside the job's directories (a symlink)")
        }
      }
      const checkFile = async (file: FileArg) => {
        const i = file.index
        const format = formatName(fileOption(file, "f"))
        if (format && DEVICES.has(format))
          fail(i, `format ${format} is a capture or playback device; devices are not allowed`)
        if (file.kind === "input" && format === "lavfi") return checkGraph(i, file.url)
        if (format === "tee" && file.kind === "output") {
          for (const slave of teeSlaves(file.url)) {
            if (slave.target === undefined) fail(i, "a tee output's [options] do not parse", "option")
            const f = formatName(slave.pairs.find(([k]) => k === "f")?.[1])
            if (f && DEVICES.has(f)) fail(i, `tee output format ${f} is a device; devices are not allowed`)
            if (f === "tee")
              fail(i, "tee output format tee names the tee muxer inside another muxer; not allowed", "option")
            // The slave's muxer options, as the same options of an output (`hls_key_info_file=k.txt` is read).
            for (const [key, value] of slave.pairs) await checkOption(key, value, i)
            checkUrl(i, slave.target!, base, "tee output")
          }
          return
        }
        const copy = copied(i)
        if (file.kind === "input" && !copy) await checkGlob(file)
        const path = copy ? file.url : checkUrl(i, file.url, base)
        if (file.kind === "input") {
          if (path) await sniff(i, path, format, 0, copy)
          else if (format && MANIFESTS.has(format)) fail(i, `input format ${format} lists other files; not allowed`)
          for (const o of file.options) {
            if (o.name === "dump_attachment" && o.value === "") {
              if (!path)
                fail(o.index, "-dump_attachment without a name needs a local input file to read the names from")
              probes.push({ at: o.index, path: path! })
            }
          }
        }
      }
      const checkOption = async (name: string, value: string, i: number): Promise<void> => {
        const kind = optionKind(name)
        if (kind === "text") return
        if (kind === "device") return checkDevice(i, name, value)
        if (
          (name === "safe" && !/^(1|true)$/i.test(value) && !(inFile === undefined && safeOff.has(i))) ||
          ((name === "enable_drefs" || name === "use_absolute_path") && !/^(0|false)$/i.test(value))
        ) {
          fail(i, `-${name} ${value} lets the input name files outside the job's directories; not allowed`, "option")
        }
        if (name === "formatprobesize" && !(/^\d+$/.test(value) && Number(value) <= FORMAT_PROBE))
          fail(
            i,
            `-formatprobesize must be a number of bytes up to ${FORMAT_PROBE} (the policy reads that far)`,
            "option",
          )
        if (PRESETS.has(name) && (value.includes("/") || value.includes("..")))
          fail(i, "preset names may not contain a path", "option")
        if (kind === "graph") return checkGraph(i, value)
        if (kind === "path") {
          if (name === "dump_attachment" && value === "") return
          if (WRITE_OPTIONS.has(name) && /(^|\/)\.\.(\/|$)/.test(value) && !/^[a-z]+:/i.test(value))
            fail(i, `-${name} may not contain ".."`)
          if (name === "master_pl_name" && value.includes("/"))
            fail(i, "-master_pl_name must be a file name (it is written next to the playlist)", "option")
          const path = copied(i) ? value : checkUrl(i, value, base, `-${name}`)
          if (path && (name === "filter_script" || name === "filter_complex_script" || name === "graph_file")) {
            const text = readText(i, path, `-${name} file`)
            if (text !== undefined) await within(`${fileName(path)} (the -${name} file)`, () => checkGraph(i, text))
          }
          if (path && name === "hls_key_info_file") {
            const keyFile = readText(i, path, "-hls_key_info_file")?.split(LINES)[1]?.trim()
            if (keyFile)
              within(`line 2 of ${fileName(path)}`, () => checkPath(i, keyFile, base, "key file in -hls_key_info_file"))
          }
          return
        }
        scan(i, value, "", true)
      }

      const parsed = parseArgv(tool, job.args)
      safeOff = new Set(
        parsed.files
          .filter((f) => f.kind === "input" && job.copies?.has(f.index))
          .flatMap((f) => f.options.filter((o) => o.name === "safe").map((o) => o.index)),
      )
      for (const t of parsed.tokens) if (t.role === "value") await checkOption(t.name!, t.text, t.index)
      for (const f of parsed.files) {
        await checkFile(f)
        await tick()
      }
      for (const p of probes) {
        if (!deps.attachmentNames)
          fail(p.at, "-dump_attachment without a name is not supported on this worker (no ffprobe to read the names)")
        const names = await deps.attachmentNames!(p.path, job.confine)
        for (const n of names) {
          if (!n || n === "." || n === ".." || /[/\\:]/.test(n))
            fail(
              p.at,
              `-dump_attachment without a name would write ${short(n)} (a name from the media); name the file instead`,
            )
        }
      }
      return { args: withWhitelist(tool, job.args, parsed.files, whitelist(used, cfg.allowNetwork)) }
    },
  }
}

function whitelist(used: Set<string>, network: boolean): string[] {
  const list = [...BASE_PROTOCOLS, ...[...used].filter((p) => p !== "network")]
  if (network) list.push(...NETWORK_PROTOCOLS)
  return [...new Set(list)]
}

/**
 * Adds `-protocol_whitelist` for every input and output (a per-file option in ffmpeg): the
 * protocols the policy checked. A whitelist the job gave for a file is narrowed to that list, never widened:
 * ffmpeg's own comes before ours (ours wins); ffprobe's may follow ours (its last one wins), so it is
 * rewritten in place.
 */
function withWhitelist(tool: Tool, args: string[], files: FileArg[], list: string[]): string[] {
  const value = (f: FileArg | undefined) => {
    const own = f && fileOption(f, "protocol_whitelist")
    if (own === undefined) return list.join(",")
    const mine = new Set(list)
    const narrowed = own.split(",").filter((p) => mine.has(p))
    return narrowed.length ? narrowed.join(",") : "none"
  }
  if (tool === "ffprobe") {
    const input = files.find((f) => f.kind === "input")
    const list = value(input)
    const out = [...args]
    for (const o of input?.options ?? []) if (o.name === "protocol_whitelist") out[o.index] = list
    return ["-protocol_whitelist", list, ...out]
  }
  const at = new Map<number, FileArg>()
  for (const f of files) {
    // Before `-i X`, or before the output (and before the `--`s that protect it).
    let pos = f.kind === "input" ? f.index - 1 : f.index
    while (f.kind === "output" && pos > 0 && args[pos - 1] === "--") pos--
    at.set(pos, f)
  }
  const out: string[] = []
  args.forEach((a, i) => {
    const f = at.get(i)
    if (f) out.push("-protocol_whitelist", value(f))
    out.push(a)
  })
  return out
}

const KEY_C = 0x63
const KEY_SHIFT_C = 0x43

/**
 * ffmpeg reads keys from its stdin when no input comes from it, and `c`/`C` followed by a line send a
 * command to filters (`drawtext -1 reinit textfile=/etc/passwd`) that no argument check sees. The
 * returned filter drops those two keys and the line after them from the caller's stdin; every other
 * key (`q`, `?`, `+`, `-`...) passes.
 */
export function createKeyFilter(): (chunk: Uint8Array) => Uint8Array {
  let dropping = false
  return (chunk) => {
    const out = new Uint8Array(chunk.length)
    let n = 0
    for (const b of chunk) {
      if (dropping) {
        if (b === 0x0a || b === 0x0d) dropping = false
        continue
      }
      if (b === KEY_C || b === KEY_SHIFT_C) {
        dropping = true
        continue
      }
      out[n++] = b
    }
    return out.subarray(0, n)
  }
}
