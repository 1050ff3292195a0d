/**
 * What every argument of an ffmpeg/ffprobe command line holds, from one table: the client's path mapper
 * translates by it, the worker's mapper resolves by it and the worker's argument policy checks by it, so
 * a value is never a path to one of them and text to another. Pure and dependency-free (the proxy's
 * start-up path imports it).
 *
 * Kinds of a position:
 * - `path`: an input, an output or a path-valued option's value, as a plain path or `file:` path;
 * - `url`: the same positions holding a protocol URL (`concat:`, `subfile,,…:`, `cache:`, `crypto:` wrap
 *   files; `http:`, `pipe:`... name none);
 * - `tee`: a `-f tee` output, whose slaves `[options]target` each name an output;
 * - `graph`: a filtergraph (`-vf`, `-filter_complex`..., a `-f lavfi` input);
 * - `device`: a hardware device (`-vaapi_device`, `-init_hw_device`...): a device node, an index or a name;
 * - `text`: an option value known never to name a file (`-metadata`, `-hls_base_url`, `-map`...);
 * - `unknown`: every other option value (an AVOption that could be anything);
 * - `option` and `separator`: an option's name and `--`.
 */

import { fileOption, formatName, parseArgv, type Tool } from "./argv.ts"
import { GRAPH_OPTIONS } from "./graph-paths.ts"
import { parseUrl } from "./url.ts"

export type Kind = "path" | "url" | "tee" | "graph" | "device" | "text" | "unknown" | "option" | "separator"

export interface Position {
  kind: Kind
  /** For option values: the option's name without `-` and stream specifier. */
  name?: string
}

/**
 * Options whose value is a file (or URL) ffmpeg reads: fftools' own, and the AVOptions `ffmpeg -h full`
 * (Debian 5.1) describes as a file: lavfi's graph_file, hls's key info file, dvdsub's `.IFO`, vobsub's
 * `.sub`, tls's certificates and keys, libssh's private key.
 */
export const READ_OPTIONS = new Set([
  "filter_script",
  "filter_complex_script",
  "attach",
  "fpre",
  "graph_file",
  "hls_key_info_file",
  "ifo_palette",
  "sub_name",
  "ca_file",
  "cafile",
  "cert_file",
  "key_file",
  "private_key",
])

/**
 * ... and whose value is a file ffmpeg writes: fftools' own, and the muxers' file names (hls, dash,
 * segment, webm_chunk's header). `-hls_fmp4_init_filename` and `-master_pl_name` are relative to the
 * playlist's folder when relative (FFmpeg joins them to it), so only an absolute one is translated.
 * `-hls_enc_key_url` is the key's URI in the playlist but also where hlsenc writes the key (with
 * `-hls_enc 1`), so it is a written file.
 */
export const WRITE_OPTIONS = new Set([
  "passlogfile",
  "vstats_file",
  "progress",
  "sdp_file",
  "stats",
  "hls_segment_filename",
  "hls_fmp4_init_filename",
  "hls_subtitle_path",
  "segment_list",
  "master_pl_name",
  "init_seg_name",
  "media_seg_name",
  "single_file_name",
  "hls_master_name",
  "segment_header_filename",
  "header",
  "dump_attachment",
  "hls_enc_key_url",
])

/** Option values never taken as paths: free text written into the output, URLs it prints, names, selectors. */
export const TEXT_OPTIONS = new Set([
  "metadata",
  "program",
  "map",
  "map_metadata",
  "map_chapters",
  "disposition",
  "timestamp",
  "timecode",
  "hls_base_url",
  "segment_list_entry_prefix",
  "user_agent",
  "headers",
  "referer",
  "print_filename",
  "show_entries",
  "protocol_whitelist",
  "protocol_blacklist",
  "f",
  "h",
  "help",
  "?",
  "-help",
])

/** Hardware devices: a DRM node or folder, an adapter index, an X11 display or a device's name. */
export const DEVICE_OPTIONS = new Set([
  "vaapi_device",
  "qsv_device",
  "init_hw_device",
  "hwaccel_device",
  "filter_hw_device",
])

/** The kind of an option's value. */
export function optionKind(name: string): Kind {
  if (READ_OPTIONS.has(name) || WRITE_OPTIONS.has(name)) return "path"
  if (GRAPH_OPTIONS.has(name)) return "graph"
  if (DEVICE_OPTIONS.has(name)) return "device"
  if (TEXT_OPTIONS.has(name)) return "text"
  return "unknown"
}

/** A path position's kind from its value: a plain or `file:` path, or a protocol URL. */
const byValue = (value: string): Kind => (parseUrl(value).protocol === "file" ? "path" : "url")

/** The kind of every argument, one for one with `args`. */
export function classifyArgs(tool: Tool, args: string[]): Position[] {
  const parsed = parseArgv(tool, args)
  const out: Position[] = args.map(() => ({ kind: "unknown" }))
  for (const t of parsed.tokens) {
    if (t.role === "option" || t.role === "separator") out[t.index] = { kind: t.role }
    else if (t.role === "value") {
      const kind = optionKind(t.name!)
      out[t.index] = { kind: kind === "path" ? byValue(t.text) : kind, name: t.name }
    }
  }
  for (const f of parsed.files) {
    const format = formatName(fileOption(f, "f"))
    const kind =
      f.kind === "input" && format === "lavfi"
        ? "graph"
        : f.kind === "output" && format === "tee" && tool === "ffmpeg"
          ? "tee"
          : byValue(f.url)
    out[f.index] = { kind }
  }
  return out
}

/**
 * What a device value names that could be a file or a host: for
 * `-init_hw_device type[=name][:device[,key=value...]]` its device and option values (a
 * `type=name@source` derivation names none); `-vaapi_device X` and `-qsv_device X` are read the same
 * way, as the `vaapi:X` and `qsv=__qsv_device:hw_any,child_device=X` ffmpeg makes of them (so a `,`
 * in X adds options, `child_device=` among them); `-filter_hw_device` names a device set up by
 * `-init_hw_device`; `-hwaccel_device` is one device string, whole.
 */
export function deviceParts(name: string, value: string): string[] {
  if (name === "filter_hw_device") return []
  if (name === "vaapi_device") return deviceParts("init_hw_device", `vaapi:${value}`)
  if (name === "qsv_device") return deviceParts("init_hw_device", `qsv=__qsv_device:hw_any,child_device=${value}`)
  if (name !== "init_hw_device") return [value]
  const head = /^[^:=@,]*(=[^:@,]*)?/.exec(value)![0]
  const rest = value.slice(head.length)
  if (!rest || rest.startsWith("@")) return []
  const comma = rest.indexOf(",")
  const device = rest.startsWith(":") ? rest.slice(1, comma === -1 ? undefined : comma) : ""
  const options = comma === -1 ? [] : rest.slice(comma + 1).split(",")
  return [device, ...options.map((o) => o.slice(o.indexOf("=") + 1))].filter((p) => p !== "")
}
