/**
 * What a command line needs from the worker that runs it (issue 12): the encoders, decoders,
 * hardware acceleration methods and device types, filters and formats it names, read with the argument
 * model (parseArgv), and the lane it belongs in. Pure; the coordinator computes both once at submission
 * and stores them with the job, and the one eligibility rule (coordinator/scheduler.ts) reads them.
 *
 * Only what the command names is a need: a decoder ffmpeg picks by itself (the input's codec) or a
 * filter it inserts (scaling for a format conversion) is left to the worker's ffmpeg, as every worker
 * of the farm has the common ones. `copy` is not an encoder, `-hwaccel auto`/`none` name no method.
 */

import type { JobNeeds, Lane } from "../protocol/capabilities.ts"
import { fileOption, formatName, infoCommand, parseArgv, toolOf, type FileArg, type ParsedArgv } from "./argv.ts"
import { parseFiltergraph } from "./filtergraph.ts"
import { GRAPH_OPTIONS } from "./graph-paths.ts"

/** Options naming a codec (`-c:v`, `-codec:a:0`, `-vcodec`...): an encoder on an output, a decoder on an input. */
const CODEC_OPTIONS = new Set(["c", "codec", "vcodec", "acodec", "scodec", "dcodec"])
/** Options naming a (de)muxer besides `-f`: the segment muxer's inner format (Emby, Plex). */
const INNER_MUXERS = new Set(["segment_format"])
/** `-hwaccel` values that name no method. */
const NO_HWACCEL = new Set(["auto", "none"])
/** Shorthands that set up one device of a type (`-vaapi_device X` is `-init_hw_device vaapi:X`). */
const DEVICE_SHORTHANDS: Record<string, string> = { vaapi_device: "vaapi", qsv_device: "qsv" }

/** The device type of an `-init_hw_device type[=name][:device[,opts]]` or `type=name@source` value. */
export function deviceType(value: string): string {
  return /^[^:=@,]*/.exec(value)![0]
}

class NeedSet {
  readonly encoders = new Set<string>()
  readonly decoders = new Set<string>()
  readonly hwaccels = new Set<string>()
  readonly hwDevices = new Set<string>()
  readonly filters = new Set<string>()
  readonly muxers = new Set<string>()
  readonly demuxers = new Set<string>()

  graph(text: string) {
    for (const f of parseFiltergraph(text)) if (f.name) this.filters.add(f.name)
  }

  done(): JobNeeds {
    const list = (s: Set<string>) => [...s].sort()
    return {
      encoders: list(this.encoders),
      decoders: list(this.decoders),
      hwaccels: list(this.hwaccels),
      hwDevices: list(this.hwDevices),
      filters: list(this.filters),
      muxers: list(this.muxers),
      demuxers: list(this.demuxers),
      labels: {},
    }
  }
}

/** A file's own needs: its codecs, its format and, for a `-f lavfi` input, the filters of its graph. */
function fileNeeds(n: NeedSet, f: FileArg) {
  const output = f.kind === "output"
  for (const o of f.options) {
    if (CODEC_OPTIONS.has(o.name) && o.value !== "copy" && o.value !== "")
      (output ? n.encoders : n.decoders).add(o.value)
    if (o.name === "hwaccel" && !NO_HWACCEL.has(o.value) && o.value !== "") n.hwaccels.add(o.value)
    if (output && INNER_MUXERS.has(o.name) && o.value) n.muxers.add(formatName(o.value)!)
  }
  const format = formatName(fileOption(f, "f"))
  if (format) (output ? n.muxers : n.demuxers).add(format)
  if (!output && format === "lavfi") n.graph(f.url)
}

/**
 * The needs of `binary args`: codecs per file, `-hwaccel` methods, device types set up by
 * `-init_hw_device`/`-vaapi_device`/`-qsv_device` (`-filter_hw_device` names one of those devices, whose
 * type is already a need),
 * filters of every graph option (`-vf`, `-af`, `-filter_complex`, `-lavfi`...) and of `-f lavfi`
 * inputs, muxers of outputs' `-f` and demuxers of inputs' `-f`. Labels come from client rules, not here.
 */
export function jobNeeds(binary: string, args: string[]): JobNeeds {
  const parsed = parseArgv(toolOf(binary), args)
  const n = new NeedSet()
  for (const f of parsed.files) fileNeeds(n, f)
  for (const t of values(parsed)) {
    if (t.name === "init_hw_device") {
      const type = deviceType(t.text)
      if (type) n.hwDevices.add(type)
    } else if (t.name in DEVICE_SHORTHANDS) n.hwDevices.add(DEVICE_SHORTHANDS[t.name])
    else if (GRAPH_OPTIONS.has(t.name)) n.graph(t.text)
    // Options after the last file (ignored by ffmpeg, but fftools still parses the global ones).
    else if (t.name === "hwaccel" && !NO_HWACCEL.has(t.text) && t.text !== "" && t.loose) n.hwaccels.add(t.text)
  }
  return n.done()
}

/** Option values of a command line with their option's name, loose ones (after the last file) marked. */
function values(parsed: ParsedArgv): { name: string; text: string; loose: boolean }[] {
  const loose = new Set(parsed.loose.map((o) => o.index))
  return parsed.tokens
    .filter((t) => t.role === "value" && t.name !== undefined)
    .map((t) => ({ name: t.name!, text: t.text, loose: loose.has(t.index) }))
}

/** ffprobe options that read every packet or frame of the input: a long read, not a probe. */
const WHOLE_READS = new Set(["show_frames", "show_packets", "count_frames", "count_packets"])

/**
 * The lane of `binary args`: `probe` for a short read that must never wait behind transcodes: an info
 * command (`-version`, `-encoders`, `-h`...), an ffprobe of a file's headers and streams, and
 * `ffmpeg -i X` with no output (it prints the input's description and exits). An ffprobe that reads
 * every packet or frame (`-show_packets`, `-show_frames`, `-count_*`, `-show_entries packet=...` or
 * `frame=...`, Jellyfin's keyframe extraction) takes as long as the file and is a `transcode`, as is
 * everything else.
 */
export function jobLane(binary: string, args: string[]): Lane {
  const tool = toolOf(binary)
  if (infoCommand(tool, args)) return "probe"
  const parsed = parseArgv(tool, args)
  if (tool === "ffmpeg")
    return parsed.files.length > 0 && parsed.files.every((f) => f.kind === "input") ? "probe" : "transcode"
  const whole = parsed.tokens.some(
    (t) =>
      (t.role === "option" && t.name !== undefined && WHOLE_READS.has(t.name)) ||
      (t.role === "value" && t.name === "show_entries" && /(^|:)\s*(packet|frame)s?(=|:|$)/.test(t.text)),
  )
  return whole ? "transcode" : "probe"
}
