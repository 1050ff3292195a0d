import { realpathSync, statSync } from "node:fs"
import * as v from "valibot"
import type { RemoveCapabilities } from "../shared/config/server-schema.ts"
import type { Logger } from "../shared/log.ts"
import { CapName, deviceOf, ToolCapabilities, type Tools } from "../shared/protocol/capabilities.ts"
import { toolOf } from "../shared/ffargs/argv.ts"
import type { Ran } from "./sandbox.ts"

/**
 * What each configured binary can do (issue 12), read from its own output: `-version`, and with
 * `-hide_banner` the `-encoders`, `-decoders`, `-hwaccels`, `-filters`, `-muxers` and `-demuxers`
 * listings (FFmpeg 5.1 to 7 print them in the same layouts). Every hardware device type is initialised
 * once (`-init_hw_device TYPE` on a one-frame null encode): only those that initialise are advertised, as
 * devices and as hwaccels. Commands run as jobs run (the worker's confinement) and are bounded by a
 * timeout; results are cached per binary file (path, size, mtime) so a re-registration costs a stat.
 */

/** Runs one command of a binary (argv without the binary) as jobs run; a timeout is a failure. */
export type RunTool = (exe: string, args: string[]) => Promise<Ran>

const valid = (name: string) => v.is(CapName, name)
const unique = (names: string[]) => [...new Set(names.filter(valid))]

/** `ffmpeg version 5.1.9-0+deb12u1 Copyright ...` → `5.1.9-0+deb12u1`. */
export function parseVersion(text: string): string | undefined {
  const m = /^\S+ version (\S+)/.exec(text.split("\n", 1)[0] ?? "")
  return m?.[1]?.slice(0, 128)
}

/** The rows after a listing's ` ------` / ` --` / ` ---` separator line. */
function afterSeparator(text: string): { width: number; rows: string[] } | undefined {
  const lines = text.split("\n")
  const at = lines.findIndex((l) => /^ -{2,}\s*$/.test(l))
  if (at < 0) return undefined
  return { width: lines[at].trim().length, rows: lines.slice(at + 1).filter((l) => l.trim()) }
}

/** `-encoders` / `-decoders`: ` V....D libx264   description` rows after the legend. */
export function parseCodecs(text: string): string[] {
  const rows = afterSeparator(text)?.rows ?? []
  return unique(rows.map((l) => l.trim().split(/\s+/)[1] ?? ""))
}

/** `-hwaccels`: one method per line after `Hardware acceleration methods:`. */
export function parseHwaccels(text: string): string[] {
  const lines = text.split("\n")
  const at = lines.findIndex((l) => /^Hardware acceleration methods:/.test(l))
  if (at < 0) return []
  return unique(lines.slice(at + 1).map((l) => l.trim()))
}

/** `-init_hw_device list`: one type per line after `Supported hardware device types:`. */
export function parseDeviceTypes(text: string): string[] {
  const lines = text.split("\n")
  const at = lines.findIndex((l) => /^Supported hardware device types:/.test(l))
  if (at < 0) return []
  return unique(lines.slice(at + 1).map((l) => l.trim()))
}

/**
 * `-filters`: ` T.C scale  V->V  description` rows (three flags up to 7.x, two since the command flag
 * went, then the name, then `in->out`).
 */
export function parseFilters(text: string): string[] {
  const out: string[] = []
  for (const l of text.split("\n")) {
    const m = /^ [T.][S.][C.]? (\S+)\s+\S*->\S*/.exec(l)
    if (m) out.push(m[1])
  }
  return unique(out)
}

/**
 * `-muxers` / `-demuxers` (or `-formats`): rows of flags (` D.` `.E`, and `..d` for devices in 7.x, as
 * wide as the separator) then the name. Only rows whose flags say the kind asked for.
 */
export function parseFormats(text: string, kind: "muxers" | "demuxers"): string[] {
  const list = afterSeparator(text)
  if (!list) return []
  const flag = kind === "muxers" ? "E" : "D"
  const col = kind === "muxers" ? 1 : 0
  const out: string[] = []
  for (const row of list.rows) {
    const flags = row.slice(1, 1 + list.width)
    const name =
      row
        .slice(1 + list.width)
        .trim()
        .split(/\s+/)[0] ?? ""
    if (flags[col] === flag) out.push(name)
  }
  return unique(out)
}

/** The one-frame null encode that initialises a device of `type` (0.04 s when it fails, about 0.1-0.3 s when it works). */
export const initDeviceArgs = (type: string) => [
  "-hide_banner",
  "-v",
  "error",
  "-init_hw_device",
  type,
  "-f",
  "lavfi",
  "-i",
  "nullsrc=s=16x16",
  "-frames:v",
  "1",
  "-f",
  "null",
  "-",
]

const why = (r: Ran) =>
  r.timedOut
    ? "timed out"
    : `exit ${r.code ?? "by a signal"}: ${(r.stderr.trim() || r.stdout.trim()).split("\n")[0]?.slice(0, 200) ?? ""}`

/** Detects one binary's capabilities; throws when a required listing fails (the binary is then registered without tools). */
export async function detectTool(
  name: string,
  exe: string,
  run: RunTool,
  log: Logger,
): Promise<{ tool: ToolCapabilities; failedDevices: string[] }> {
  const listing = async (args: string[], required: boolean) => {
    const r = await run(exe, args)
    if (r.code === 0) return r.stdout
    if (required) throw new Error(`${args.join(" ")}: ${why(r)}`)
    return ""
  }
  // Only ffmpeg decodes with hwaccels and takes -init_hw_device; ffprobe lists neither.
  const hw = toolOf(name) === "ffmpeg"
  const [version, encoders, decoders, filters, muxers, demuxers, hwaccelList, typeList] = await Promise.all([
    listing(["-version"], true),
    listing(["-hide_banner", "-encoders"], true),
    listing(["-hide_banner", "-decoders"], true),
    listing(["-hide_banner", "-filters"], true),
    listing(["-hide_banner", "-muxers"], true),
    listing(["-hide_banner", "-demuxers"], true),
    hw ? listing(["-hide_banner", "-hwaccels"], false) : "",
    hw ? listing(["-hide_banner", "-init_hw_device", "list"], false) : "",
  ])
  const parsedVersion = parseVersion(version)
  if (!parsedVersion) throw new Error("-version: no `<name> version <v>` first line")
  const tool: ToolCapabilities = {
    version: parsedVersion,
    encoders: parseCodecs(encoders),
    decoders: parseCodecs(decoders),
    hwaccels: [],
    hwDevices: [],
    filters: parseFilters(filters),
    muxers: parseFormats(muxers, "muxers"),
    demuxers: parseFormats(demuxers, "demuxers"),
  }
  const failedDevices: string[] = []
  const hwaccels = parseHwaccels(hwaccelList)
  // Every type at once: each is its own process, and a failing one ends in about 0.05 s.
  const types = unique([...parseDeviceTypes(typeList), ...hwaccels])
  const inits = await Promise.all(types.map((type) => run(exe, initDeviceArgs(type))))
  types.forEach((type, i) => {
    const r = inits[i]!
    if (r.code === 0) return void tool.hwDevices.push(type)
    failedDevices.push(type)
    log.debug("hardware device did not initialise; not advertised", { binary: name, type, reason: why(r) })
  })
  // A hwaccel is advertised only when its device type initialised (every listed method names its type).
  tool.hwaccels = hwaccels.filter((h) => tool.hwDevices.includes(h))
  // So are the encoders, decoders and filters that need a device: Debian's ffmpeg lists h264_nvenc and
  // scale_cuda on any machine, and a job sent for them to one without the GPU would fail.
  const usable = (n: string) => {
    const need = deviceOf(n)
    return need === undefined || tool.hwDevices.includes(need)
  }
  tool.encoders = tool.encoders.filter(usable)
  tool.decoders = tool.decoders.filter(usable)
  tool.filters = tool.filters.filter(usable)
  return { tool, failedDevices }
}

/** `remove_capabilities` applied to one binary's tools. */
export function removeCapabilities(tool: ToolCapabilities, rm: RemoveCapabilities): ToolCapabilities {
  const without = (list: string[], drop: string[]) => (drop.length ? list.filter((n) => !drop.includes(n)) : list)
  // A hwaccel and its device type go together: a hwaccel is only advertised with its device. And so do
  // the encoders, decoders and filters that need the device (`deviceOf`), as when it did not initialise.
  const devices = [...rm.hw_devices, ...rm.hwaccels]
  const withoutDevices = (list: string[], drop: string[]) =>
    without(list, drop).filter((n) => !devices.includes(deviceOf(n) ?? ""))
  return {
    ...tool,
    encoders: withoutDevices(tool.encoders, rm.encoders),
    decoders: withoutDevices(tool.decoders, rm.decoders),
    hwaccels: without(tool.hwaccels, devices),
    hwDevices: without(tool.hwDevices, devices),
    filters: withoutDevices(tool.filters, rm.filters),
    muxers: without(tool.muxers, rm.muxers),
    demuxers: without(tool.demuxers, rm.demuxers),
  }
}

/** What identifies a binary's file: a replaced or upgraded binary is detected again. */
function fileKey(exe: string): string {
  const real = realpathSync(exe)
  const st = statSync(real)
  return `${real}|${st.size}|${st.mtimeMs}|${st.ino}`
}

/** A failed detection is tried again after this long even if the file did not change (a timeout under load). */
const RETRY_FAILED_MS = 60_000

export interface CapabilityDetector {
  /** The tools of every binary whose detection worked: cached, re-detected when a binary's file changed. */
  tools(): Promise<Tools>
}

/**
 * Detection for a worker's binaries with its cache. A binary whose detection fails is left out of
 * `tools` (it is still registered, without tools: the coordinator does not judge its jobs on them)
 * and a warning says why.
 */
export function createCapabilityDetector(opts: {
  binaries: Map<string, string>
  run: RunTool
  remove: RemoveCapabilities
  log: Logger
  now?: () => number
}): CapabilityDetector {
  const { log } = opts
  const now = opts.now ?? (() => performance.now())
  const cache = new Map<string, { key: string; tool?: ToolCapabilities; at: number }>()
  const one = async (name: string, exe: string): Promise<ToolCapabilities | undefined> => {
    let key: string
    try {
      key = fileKey(exe)
    } catch (err) {
      log.warn("cannot read the binary for capability detection", { binary: name, reason: (err as Error).message })
      return undefined
    }
    const hit = cache.get(name)
    if (hit && hit.key === key && (hit.tool || now() - hit.at < RETRY_FAILED_MS)) return hit.tool
    let tool: ToolCapabilities | undefined
    try {
      const found = await detectTool(name, exe, opts.run, log)
      tool = v.parse(ToolCapabilities, removeCapabilities(found.tool, opts.remove))
      log.info("capabilities detected", {
        binary: name,
        version: tool.version,
        encoders: tool.encoders.length,
        decoders: tool.decoders.length,
        filters: tool.filters.length,
        hwaccels: tool.hwaccels.join(",") || "none",
        failed_devices: found.failedDevices.join(",") || undefined,
      })
    } catch (err) {
      log.warn("capability detection failed; the binary is registered without capabilities", {
        binary: name,
        reason: (err as Error).message,
      })
    }
    cache.set(name, { key, tool, at: now() })
    return tool
  }
  return {
    async tools() {
      const out: Tools = {}
      const found = await Promise.all([...opts.binaries].map(([name, exe]) => one(name, exe)))
      ;[...opts.binaries.keys()].forEach((name, i) => {
        if (found[i]) out[name] = found[i]
      })
      return out
    },
  }
}
