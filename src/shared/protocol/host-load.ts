import * as v from "valibot"
import { isUlid } from "../ulid-format.ts"
import { printable } from "./printable.ts"

/**
 * The worker process serving an identity (docs/operations.md, "One identity, one worker"): a ULID made
 * at each start, and where it runs, for the line that refuses a second one.
 */
export const WorkerInstance = v.strictObject({
  id: v.pipe(v.string(), v.check(isUlid, "must be an instance id (ULID)")),
  host: printable(253),
  pid: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(2 ** 31)),
})
export type WorkerInstance = v.InferOutput<typeof WorkerInstance>

/** Most GPUs a heartbeat may report (more are dropped by the worker, refused by the coordinator). */
export const MAX_GPUS = 16
/** Longest GPU name kept (nvidia-smi's names are ~30 characters). */
export const GPU_NAME_MAX = 64

const Percent = v.pipe(v.number(), v.minValue(0), v.maxValue(100))
/** A byte count (2^53: the largest integer a JSON number holds exactly, ~9 PB). */
const Bytes = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))

/**
 * What a worker's heartbeat says about its host (worker/host-load.ts measures it): CPU busy % since the
 * last sample (/proc/stat), the 1-minute load average and CPU count, memory used/total (/proc/meminfo),
 * and each GPU found (nvidia-smi, AMD's gpu_busy_percent). Exposed as this field, `hostLoad`, on worker
 * records (admin API, `--json` listings, dashboard); null until a heartbeat brought one.
 */
export const HostLoad = v.pipe(
  v.strictObject({
    /** When it was measured (ISO 8601, the worker's clock). */
    at: v.pipe(v.string(), v.maxLength(32), v.isoTimestamp("must be an ISO 8601 time")),
    cpuPercent: Percent,
    load1: v.pipe(v.number(), v.minValue(0), v.maxValue(1e6)),
    cpus: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65536)),
    memUsedBytes: Bytes,
    memTotalBytes: Bytes,
    gpus: v.pipe(
      v.array(
        v.strictObject({
          name: printable(GPU_NAME_MAX),
          utilPercent: v.nullable(Percent),
          memUsedBytes: v.nullable(Bytes),
          memTotalBytes: v.nullable(Bytes),
        }),
      ),
      v.maxLength(MAX_GPUS, `at most ${MAX_GPUS} GPUs`),
    ),
  }),
  v.check((l) => l.memUsedBytes <= l.memTotalBytes, "memUsedBytes must not exceed memTotalBytes"),
)
export type HostLoad = v.InferOutput<typeof HostLoad>
