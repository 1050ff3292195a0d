import * as v from "valibot"
import { printable } from "./printable.ts"

/**
 * What a worker's binaries can do (issue 12): detected by the worker from its own ffmpeg/ffprobe at start
 * and on re-registration, verified where that is possible (a hwaccel is advertised only once
 * `-init_hw_device` initialised it), minus what its config removes. The coordinator reads a job's needs
 * from its command line (`JobNeeds`) and gives it only to workers whose tools have them all.
 */

/** An encoder, decoder, filter, format or hwaccel name as ffmpeg lists it (`h264_nvenc`, `scale_vaapi`, `mov,mp4,m4a`). */
export const CapName = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9_.,+-]{0,63}$/, "must be 1-64 letters, digits, '_', '.', ',', '+' or '-'"),
)
const Names = (max: number) => v.pipe(v.array(CapName), v.maxLength(max, `at most ${max} names`))

/** The facts of one binary (`ffmpeg`, `ffprobe`) on one worker. */
export const ToolCapabilities = v.strictObject({
  /** The version as ffmpeg prints it (`5.1.9-0+deb12u1`, `6.0.1-Jellyfin`). */
  version: printable(128),
  encoders: Names(4096),
  decoders: Names(4096),
  /** Hardware acceleration methods that initialised on this host (`-hwaccels`, verified). */
  hwaccels: Names(64),
  /** Hardware device types `-init_hw_device TYPE` initialised on this host (`cuda`, `vaapi`, `qsv`...). */
  hwDevices: Names(64),
  filters: Names(4096),
  muxers: Names(4096),
  demuxers: Names(4096),
})
export type ToolCapabilities = v.InferOutput<typeof ToolCapabilities>

export const Tools = v.pipe(
  v.record(
    v.pipe(
      v.string(),
      v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "binary names must be 1-64 letters, digits, '_', '-' or '.'"),
    ),
    ToolCapabilities,
  ),
  v.check((r) => Object.keys(r).length <= 16, "at most 16 binaries"),
)
export type Tools = v.InferOutput<typeof Tools>

/** Operator-set labels of a worker (`gpu: nvidia`, `site: attic`), matched by client rules. */
export const Labels = v.pipe(
  v.record(
    v.pipe(
      v.string(),
      v.regex(/^[A-Za-z][A-Za-z0-9_.-]{0,31}$/, "label names must be 1-32 letters, digits, '_', '-' or '.'"),
    ),
    v.pipe(printable(64), v.minLength(1, "a label's value must not be empty")),
  ),
  v.check((r) => Object.keys(r).length <= 32, "at most 32 labels"),
)
export type Labels = v.InferOutput<typeof Labels>

/** A job's lane: probes (ffprobe, info commands, short reads) have their own slots and go first. */
export const Lane = v.picklist(["probe", "transcode"])
export type Lane = v.InferOutput<typeof Lane>

/** A transcode's priority, highest first; aging lifts a waiting job so nothing starves. */
export const Priority = v.picklist(["interactive", "normal", "batch"])
export type Priority = v.InferOutput<typeof Priority>

/**
 * What a job needs from a worker, computed once by the coordinator at submission from the command line
 * (the argument model) and the client rules, and stored with the job. Empty lists need nothing.
 */
export const JobNeeds = v.strictObject({
  encoders: v.optional(Names(256), []),
  decoders: v.optional(Names(256), []),
  hwaccels: v.optional(Names(64), []),
  hwDevices: v.optional(Names(64), []),
  filters: v.optional(Names(1024), []),
  muxers: v.optional(Names(256), []),
  demuxers: v.optional(Names(256), []),
  labels: v.optional(Labels, {}),
})
export type JobNeeds = v.InferOutput<typeof JobNeeds>
export const NO_NEEDS: JobNeeds = {
  encoders: [],
  decoders: [],
  hwaccels: [],
  hwDevices: [],
  filters: [],
  muxers: [],
  demuxers: [],
  labels: {},
}

/**
 * The hardware device type an encoder, decoder or filter needs (`h264_nvenc`, `hevc_cuvid`, `scale_cuda`
 * and `scale_npp` need cuda; `*_vaapi` vaapi; `*_qsv` qsv; `*_vulkan` vulkan; `*_opencl` opencl), by
 * FFmpeg's naming; undefined for software ones.
 */
export function deviceOf(name: string): string | undefined {
  const m = /_(nvenc|cuvid|cuda|npp|vaapi|qsv|vulkan|opencl)$/.exec(name)
  if (!m) return undefined
  return { nvenc: "cuda", cuvid: "cuda", cuda: "cuda", npp: "cuda" }[m[1]!] ?? m[1]
}
