/**
 * What unit tests build again and again: jobs and worker registrations as the store takes them, output
 * chunks, an in-memory store and temporary directories. Defaults are the least a test can ask for (no
 * path variables, no stdin); a test passes what it is about as overrides.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NO_NEEDS, type ToolCapabilities } from "../../src/shared/protocol/capabilities.ts"
import type { ExitReport, Job, WorkerRegistration } from "../../src/shared/protocol/schemas.ts"
import { createStore, type Store } from "../../src/store/index.ts"
import type { NewJob, OutputChunk } from "../../src/store/types.ts"

/** A fixed start of time (2023-11-14), for tests that pass `now` themselves. */
export const T0 = 1_700_000_000_000

/** A valid identity key (32 bytes, base64). */
export const TEST_KEY = Buffer.alloc(32, 1).toString("base64")

/** A job as the API hands it to the store: `ffmpeg -version` by alice, no path variables, no stdin. */
export const newJob = (id: string, over: Partial<NewJob> = {}): NewJob => ({
  id,
  requester: "alice",
  binary: "ffmpeg",
  args: ["-version"],
  paths: [],
  cwd: null,
  stdin: false,
  attached: false,
  retries: 0,
  pathTokens: false,
  ...over,
})

/** A job whose arguments and working directory use the path variable `Movies`, with stdin. */
export const mappedJob = (id: string, over: Partial<NewJob> = {}): NewJob =>
  newJob(id, {
    args: ["-i", "$Movies/a b.mkv", "-f", "null", "-"],
    paths: ["Movies"],
    cwd: "$Movies/sub",
    stdin: true,
    ...over,
  })

/** A job as the store returns it: `ffmpeg -version`, running on w1 at epoch 1 since `at` (all its times), no progress. */
export const jobRecord = (over: Partial<Job> = {}, at = T0): Job => ({
  ...newJob("01J00000000000000000000000"),
  env: {},
  pathTokens: false,
  files: [],
  status: "running",
  epoch: 1,
  workerId: "w1",
  exitCode: null,
  exitSignal: null,
  error: null,
  createdAt: at,
  updatedAt: at,
  assignedAt: at,
  startedAt: at,
  finishedAt: null,
  attempts: 0,
  excluded: [],
  heartbeatAt: null,
  clientSeenAt: null,
  cancelRequestedAt: null,
  progress: null,
  lane: "transcode",
  priority: "normal",
  needs: NO_NEEDS,
  pin: null,
  queueKey: at,
  barred: [],
  ...over,
})

/** A worker's registration: ffmpeg, no path variables, two slots. */
export const registration = (over: Partial<WorkerRegistration> = {}): WorkerRegistration => ({
  binaries: ["ffmpeg"],
  paths: [],
  maxJobs: 2,
  version: "test",
  capabilities: {},
  tools: {},
  labels: {},
  weight: 1,
  maxProbeJobs: 4,
  draining: false,
  ...over,
})

/** UTF-8 bytes of `s`. */
export const bytes = (s: string) => new TextEncoder().encode(s)

/** Whether two byte arrays (neither null) hold the same bytes. */
export const sameBytes = (a: Uint8Array | null, b: Uint8Array | null) =>
  a !== null && b !== null && Buffer.from(a).equals(Buffer.from(b))

/** One chunk of a job's output (text is encoded). */
export const outputChunk = (
  seq: number,
  data: string | Uint8Array,
  stream: "stdout" | "stderr" = "stdout",
): OutputChunk => ({
  seq,
  stream,
  data: typeof data === "string" ? bytes(data) : data,
})

/** The exit of a process that succeeded. */
export const EXIT_OK: ExitReport = { code: 0, signal: null }

/** A migrated store in memory, opened the way the coordinator opens its configured one. */
export const memoryStore = (): Promise<Store> => createStore({ database: { engine: "sqlite", path: ":memory:" } })

/**
 * A temporary directory for one test file: `fresh()` names a file in a new subdirectory each call (a
 * database and its secret never meet another test's), `remove()` deletes it all (call it in afterAll).
 */
export function tempDir(prefix: string) {
  const dir = mkdtempSync(join(tmpdir(), `dffmpeg-${prefix}-`))
  let n = 0
  return {
    dir,
    fresh(name = "dffmpeg.db"): string {
      return join(dir, `db-${++n}`, name)
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/** One binary's capabilities as a worker registers them (a Debian ffmpeg 5.1 in miniature). */
export const toolCaps = (over: Partial<ToolCapabilities> = {}): ToolCapabilities => ({
  version: "5.1.9-0+deb12u1",
  encoders: ["libx264", "aac"],
  decoders: ["h264", "aac"],
  hwaccels: [],
  hwDevices: [],
  filters: ["scale"],
  muxers: ["mp4"],
  demuxers: ["mov,mp4,m4a,3gp,3g2,mj2"],
  ...over,
})
