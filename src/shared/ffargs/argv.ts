/**
 * A model of ffmpeg/ffprobe argv (FFmpeg 5.1 fftools): which arguments are option names, option
 * values, inputs and outputs, and which file each per-file option belongs to. Pure; the worker's
 * argument policy and path translation build on it.
 *
 * The rules follow fftools' own parser: an option is `-name[:stream_spec]`; the fftools options in
 * the tables below take a value unless listed as taking none; every other name is an AVOption
 * (codec, format, protocol, scaler...) and always takes a value; `-noX` for a boolean X takes none
 * (ffprobe reads `-noX` as any of its own options X, value included);
 * help options (`-h`, `-formats`...) consume the next argument and exit. For ffmpeg a non-option is an
 * output, `-i X` an input, and `--` (every one: `-- --` too) makes the next argument an output even if it
 * starts with `-`. For ffprobe a non-option (or `-i X`) is the input and `-o X` the output.
 */

export type Tool = "ffmpeg" | "ffprobe"

/** Which tool's argv a job's binary (a name from the worker's `binaries`) takes. */
export const toolOf = (binary: string): Tool => (/ffprobe/.test(binary) ? "ffprobe" : "ffmpeg")

export interface Token {
  /** 0-based position in argv. */
  index: number
  text: string
  role: "option" | "value" | "input" | "output" | "separator"
  /** For option and value tokens: the option's name without `-` and stream specifier. */
  name?: string
  /** For option and value tokens: the stream specifier after the first `:` (`v:0` of `-c:v:0`). */
  spec?: string
}

export interface FileArg {
  kind: "input" | "output"
  /** argv position of the file name. */
  index: number
  url: string
  /** Per-file options given before it, in order. */
  options: { name: string; spec?: string; value: string; index: number }[]
}

export interface ParsedArgv {
  tokens: Token[]
  files: FileArg[]
  /** Options after the last file (ffmpeg ignores them with a warning) and global ones. */
  loose: { name: string; spec?: string; value: string; index: number }[]
}

/** Help and capability listings: consume the next argument (a topic) and exit. */
const EXIT = new Set([
  "L",
  "h",
  "?",
  "help",
  "-help",
  "version",
  "buildconf",
  "formats",
  "muxers",
  "demuxers",
  "devices",
  "codecs",
  "decoders",
  "encoders",
  "bsfs",
  "protocols",
  "filters",
  "pix_fmts",
  "layouts",
  "sample_fmts",
  "dispositions",
  "colors",
  "hwaccels",
  "sources",
  "sinks",
])

/** Is `name` (without `-`) a help or listing option, which prints and exits before anything is opened? */
export const isExitOption = (name: string): boolean => EXIT.has(name)

/** Common options (cmdutils) that take no value. */
const COMMON_FLAGS = ["report", "hide_banner"]

/** ffmpeg 5.1 options without a value (OPT_BOOL without HAS_ARG, and `-vstats`). */
const FFMPEG_FLAGS = new Set([
  ...COMMON_FLAGS,
  "y",
  "n",
  "ignore_unknown",
  "copy_unknown",
  "recast_media",
  "accurate_seek",
  "benchmark",
  "benchmark_all",
  "stdin",
  "dump",
  "hex",
  "re",
  "copyts",
  "start_at_zero",
  "shortest",
  "bitexact",
  "xerror",
  "copyinkf",
  "stats",
  "debug_ts",
  "auto_conversion_filters",
  "find_stream_info",
  "vn",
  "psnr",
  "vstats",
  "qphist",
  "force_fps",
  "an",
  "sn",
  "fix_sub_duration",
  "dn",
])
/** Booleans that also accept `-noX` (autorotate/autoscale take a value but have a `-noX` form). */
const FFMPEG_BOOLS = new Set(
  [...FFMPEG_FLAGS, "autorotate", "autoscale"].filter((n) => n !== "vstats" && n !== "report"),
)

const FFPROBE_FLAGS = new Set([
  ...COMMON_FLAGS,
  "unit",
  "prefix",
  "byte_binary_prefix",
  "sexagesimal",
  "pretty",
  "sections",
  "show_data",
  "show_error",
  "show_format",
  "show_frames",
  "show_packets",
  "show_programs",
  "show_streams",
  "show_chapters",
  "count_frames",
  "count_packets",
  "show_program_version",
  "show_library_versions",
  "show_versions",
  "show_pixel_formats",
  "show_private_data",
  "private",
  "bitexact",
  "find_stream_info",
])
const FFPROBE_BOOLS = new Set([...FFPROBE_FLAGS].filter((n) => n !== "report"))

/**
 * Every fftools option of ffprobe 5.1 (`ffprobe -h long`): ffprobe's parse_option reads `-noX` as option
 * X whatever its kind when X is one of them (`-nof lavfi` sets the format, `-noi x` names the input).
 */
const FFPROBE_OPTIONS = new Set([
  ...FFPROBE_FLAGS,
  ...[...EXIT].filter((n) => n !== "hwaccels"),
  "cpucount",
  "cpuflags",
  "f",
  "i",
  "loglevel",
  "max_alloc",
  "o",
  "of",
  "print_filename",
  "print_format",
  "read_intervals",
  "select_streams",
  "show_data_hash",
  "show_entries",
  "show_log",
  "show_optional_fields",
  "v",
])

/** The option a name stands for: ffprobe's `-noX` for its own option X is X (ffmpeg negates only booleans). */
function canonicalName(tool: Tool, name: string): string {
  if (tool !== "ffprobe" || !name.startsWith("no") || FFPROBE_OPTIONS.has(name)) return name
  return FFPROBE_OPTIONS.has(name.slice(2)) ? name.slice(2) : name
}

/** Splits `-name:spec` into its name and specifier. */
export function optionName(arg: string): { name: string; spec?: string } {
  const body = arg.slice(1)
  const colon = body.indexOf(":")
  return colon === -1 ? { name: body } : { name: body.slice(0, colon), spec: body.slice(colon + 1) }
}

/** Does this option consume the next argument? */
export function takesValue(tool: Tool, name: string): boolean {
  if (EXIT.has(name)) return true
  const flags = tool === "ffmpeg" ? FFMPEG_FLAGS : FFPROBE_FLAGS
  if (flags.has(name)) return false
  const bools = tool === "ffmpeg" ? FFMPEG_BOOLS : FFPROBE_BOOLS
  if (name.startsWith("no") && bools.has(name.slice(2))) return false
  return true
}

const isOption = (a: string) => a.length > 1 && a.startsWith("-")

/** Classifies every argument of an ffmpeg or ffprobe command line. */
export function parseArgv(tool: Tool, args: string[]): ParsedArgv {
  const tokens: Token[] = []
  const files: FileArg[] = []
  let pending: FileArg["options"] = []
  const loose: ParsedArgv["loose"] = []
  let dashdash = false
  for (let i = 0; i < args.length; i++) {
    const text = args[i]
    // ffmpeg takes every `--` for a separator, even right after one; ffprobe only the first.
    if (text === "--" && (tool === "ffmpeg" || !dashdash)) {
      tokens.push({ index: i, text, role: "separator" })
      dashdash = true
      continue
    }
    if (dashdash || !isOption(text)) {
      // ffmpeg: `--` only protects the next argument; ffprobe: everything after it is positional.
      if (tool === "ffmpeg") dashdash = false
      const kind = tool === "ffmpeg" ? "output" : "input"
      tokens.push({ index: i, text, role: kind })
      files.push({ kind, index: i, url: text, options: pending })
      pending = []
      continue
    }
    const { name: written, spec } = optionName(text)
    const name = canonicalName(tool, written)
    tokens.push({ index: i, text, role: "option", name, spec })
    if (!takesValue(tool, name) || i + 1 >= args.length) continue
    const value = args[++i]
    if (name === "i" || (tool === "ffprobe" && name === "o")) {
      const kind = name === "i" ? "input" : "output"
      tokens.push({ index: i, text: value, role: kind, name, spec })
      files.push({ kind, index: i, url: value, options: kind === "input" ? pending : [] })
      if (kind === "input") pending = []
      continue
    }
    tokens.push({ index: i, text: value, role: "value", name, spec })
    pending.push({ name, spec, value, index: i })
  }
  // ffprobe applies every option to its one input; ffmpeg ignores trailing ones.
  if (tool === "ffprobe") {
    const input = files.find((f) => f.kind === "input")
    if (input) input.options = [...input.options, ...pending]
    else loose.push(...pending)
  } else loose.push(...pending)
  return { tokens, files, loose }
}

/** The last value of an option for one file (`-f`, `-safe`, ...), ignoring stream specifiers. */
export function fileOption(file: FileArg, name: string): string | undefined {
  for (let i = file.options.length - 1; i >= 0; i--) if (file.options[i].name === name) return file.options[i].value
  return undefined
}

/** Other names of (de)muxers the policy treats specially (`hls,applehttp`, `video4linux2,v4l2`). */
const FORMAT_ALIASES: Record<string, string> = { applehttp: "hls", video4linux2: "v4l2" }

/**
 * A format name as FFmpeg matches it (`av_match_name`: case-insensitive, aliases included), so
 * `-f LAVFI` is checked like `-f lavfi`.
 */
export function formatName(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const lower = value.toLowerCase()
  return FORMAT_ALIASES[lower] ?? lower
}

/**
 * The info command a command line is (`version`, `encoders`, `h`...), or undefined: no input or output,
 * and an option that prints a listing or help and exits (ffmpeg and ffprobe run their global options,
 * in order, before opening anything). With its topic for `-h`/`-help` (`h encoder=libx264`). Such a
 * command reads nothing and describes only the binary it runs, so its answer depends on the worker.
 */
export function infoCommand(tool: Tool, args: string[]): { name: string; topic?: string } | undefined {
  const parsed = parseArgv(tool, args)
  if (parsed.files.length) return undefined
  const at = parsed.tokens.find((t) => t.role === "option" && t.name !== undefined && EXIT.has(t.name))
  if (!at?.name) return undefined
  const next = parsed.tokens.find((t) => t.index === at.index + 1 && t.role === "value")
  // Only help reads a topic; the listings ignore what follows (ffmpeg still consumes it).
  return ["h", "?", "help", "-help"].includes(at.name) && next
    ? { name: "h", topic: next.text }
    : { name: at.name === "?" || at.name === "help" || at.name === "-help" ? "h" : at.name }
}
