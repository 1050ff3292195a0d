/**
 * File names inside filtergraphs: which filter options name a file, where graphs occur in argv, and the
 * rewrite of those values with libavfilter's two escaping levels respected (the filter-option level split
 * by `:`, the graph level split by `[],;`), so the rewritten graph parses to the same filters with the new
 * paths. Pure; the client and worker path mappers and the worker's policy share it.
 */

import { type FilterOption, type FilterSpec, placeFilters } from "./filtergraph.ts"

/** Options whose value is a filtergraph (`-filter:v`, `-filter_complex`...; stream specifiers aside). */
export const GRAPH_OPTIONS = new Set(["vf", "af", "filter", "filter_complex", "lavfi", "graph"])

/** Filter options naming a file or URL; `pos` is the option's place for positional values. */
export const FILTER_FILES: Record<string, { keys: string[]; pos?: number }> = {
  movie: { keys: ["filename"], pos: 0 },
  amovie: { keys: ["filename"], pos: 0 },
  subtitles: { keys: ["filename", "f", "fontsdir"], pos: 0 },
  ass: { keys: ["filename", "f", "fontsdir"], pos: 0 },
  drawtext: { keys: ["fontfile", "textfile"], pos: 0 },
  lut3d: { keys: ["file"], pos: 0 },
  lut1d: { keys: ["file"], pos: 0 },
  curves: { keys: ["psfile", "plot"] },
  selectivecolor: { keys: ["psfile"] },
  sofalizer: { keys: ["sofa"], pos: 0 },
  arnndn: { keys: ["model", "m"], pos: 0 },
  removelogo: { keys: ["filename", "f"], pos: 0 },
  cover_rect: { keys: ["cover"], pos: 0 },
  find_rect: { keys: ["object"], pos: 0 },
  signature: { keys: ["filename"] },
  metadata: { keys: ["file"] },
  ametadata: { keys: ["file"] },
  psnr: { keys: ["stats_file", "f"], pos: 0 },
  ssim: { keys: ["stats_file", "f"], pos: 0 },
  libvmaf: { keys: ["model_path", "log_path", "model"] },
  vidstabdetect: { keys: ["result"] },
  vidstabtransform: { keys: ["input"] },
  deshake: { keys: ["filename"] },
  sendcmd: { keys: ["filename", "f"] },
  asendcmd: { keys: ["filename", "f"] },
  sr: { keys: ["model"] },
  derain: { keys: ["model"] },
  dnn_processing: { keys: ["model"] },
  dnn_classify: { keys: ["model", "labels"] },
  dnn_detect: { keys: ["model", "labels"] },
  ocr: { keys: ["datapath"] },
  firequalizer: { keys: ["dumpfile"] },
  libplacebo: { keys: ["custom_shader_path"] },
  lensfun: { keys: ["db_path"] },
  vmafmotion: { keys: ["stats_file"] },
  program_opencl: { keys: ["source"], pos: 0 },
  openclsrc: { keys: ["source"], pos: 0 },
  xfade_opencl: { keys: ["source"] },
  showcqt: { keys: ["fontfile", "axisfile"] },
  paletteuse: { keys: ["debug_kdtree"] },
  cellauto: { keys: ["filename", "f"], pos: 0 },
  life: { keys: ["filename", "f"], pos: 0 },
  fieldhint: { keys: ["hint"], pos: 0 },
  flite: { keys: ["textfile"] },
  nnedi: { keys: ["weights"], pos: 0 },
  asr: { keys: ["hmm", "dict", "lm", "lmctl", "logfn"] },
}

/** System font folders: font options may name them directly (read-only in the sandbox too). */
export const FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts"]

/** A filter's options with one of `keys`, or the positional value at place `pos`. */
export function namedOptions(f: FilterSpec, keys: string[], pos?: number): FilterOption[] {
  return f.options.filter((o, n) =>
    o.key === undefined
      ? pos !== undefined && f.options.slice(0, n).filter((x) => x.key === undefined).length === pos
      : keys.includes(o.key),
  )
}

/** The options of a filter that name a file (for movie/amovie `f` is the format, not the file). */
export function fileOptions(f: FilterSpec): FilterOption[] {
  const files = FILTER_FILES[f.name]
  if (!files) return []
  const movie = f.name === "movie" || f.name === "amovie"
  return namedOptions(f, movie ? ["filename"] : files.keys, files.pos)
}

/** Is this a movie source whose "file" is itself a graph (`f=lavfi`), never a path? */
const nestedGraph = (f: FilterSpec) =>
  (f.name === "movie" || f.name === "amovie") &&
  f.options.some((o) => (o.key === "f" || o.key === "format_name") && o.value.toLowerCase() === "lavfi")

/**
 * One option value escaped for the filter-option level (av_get_token with `:`): `\` before every char
 * that level would take (`\ ' :`) and before `=`, so a positional value is never read as a key.
 */
export function escapeOptionValue(value: string): string {
  return value.replace(/[\\':=]/g, "\\$&").replace(/^[ \n\t\r]|[ \n\t\r]$/g, "\\$&")
}

/** A filter's whole argument string escaped for the graph level (av_get_token with `[],;`). */
export function escapeGraphArgs(args: string): string {
  return args.replace(/[\\'[\],;]/g, "\\$&").replace(/^[ \n\t\r]|[ \n\t\r]$/g, "\\$&")
}

/** A filter's options as the argument string it would be written with (before the graph-level escape). */
export function serialiseFilterArgs(options: FilterOption[]): string {
  return options.map((o) => (o.key === undefined ? "" : `${o.key}=`) + escapeOptionValue(o.value)).join(":")
}

/**
 * The graph with every file-naming option value passed through `map` (the filter's name for messages);
 * a filter whose values all stay the same is left byte for byte, a changed one is re-serialised whole.
 */
export function rewriteGraphPaths(graph: string, map: (value: string, filter: string) => string): string {
  let out = ""
  let at = 0
  for (const f of placeFilters(graph)) {
    if (!f.args || nestedGraph(f)) continue
    const targets = new Set(fileOptions(f))
    if (!targets.size) continue
    let changed = false
    const options = f.options.map((o) => {
      if (!targets.has(o)) return o
      const value = map(o.value, f.name)
      if (value === o.value) return o
      changed = true
      return { ...o, value }
    })
    if (!changed) continue
    out += graph.slice(at, f.args.start) + escapeGraphArgs(serialiseFilterArgs(options))
    at = f.args.end
  }
  return out + graph.slice(at)
}
