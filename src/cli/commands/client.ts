import { defineCommand } from "citty"
import { UsageError } from "../../shared/errors.ts"
import { asProxy } from "../../shared/error-exit.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"
import type { ApiClient } from "../../shared/http/client.ts"
import { listJobPages } from "../../shared/http/pages.ts"
import { isTerminal, type Job, type JobStatus } from "../../shared/protocol/schemas.ts"
import {
  intervalArg,
  jobId,
  jobVerb,
  limitArg,
  limitHelp,
  sinceArg,
  sinceHelp,
  statusArg,
  statusHelp,
} from "../args.ts"
import { passthroughCommand, unknownFlag, verb } from "../command.ts"
import { closest } from "../../shared/suggest.ts"
import { exitWith } from "../run.ts"
import { ACTIVE, jobDetail, jobsTable, loadTable, type WorkerView } from "../views.ts"
import { watch, type Frame } from "../watch.ts"

/**
 * `submit` parses its own options and stops at the first token it does not know (or at `--`), so
 * `dffmpeg client submit -b ffprobe -i in.mkv` works and ffmpeg flags are never misread. `--help` among
 * them asks for this command's help (`-h` is ffmpeg's: `submit -b ffprobe -h` prints ffprobe's). A long
 * flag one typo away from one of ours (`--detatch`) is refused rather than handed to ffmpeg.
 */
export function parseSubmit(raw: string[]): {
  config?: string
  binary: string
  args: string[]
  detach: boolean
  retries: number
  json: boolean
  help: boolean
} {
  let config: string | undefined
  let binary = "ffmpeg"
  let detach = false
  let json = false
  let retries = 0
  let help = false
  let i = 0
  const value = (flag: string) => {
    const v = raw[++i]
    if (v === undefined) throw new UsageError(`${flag} needs a value`)
    return v
  }
  for (; i < raw.length; i++) {
    const a = raw[i]
    if (a === "--") {
      i++
      break
    }
    if (a === "--config" || a === "-c") config = value(a)
    else if (a.startsWith("--config=")) config = a.slice(9)
    else if (a === "--binary" || a === "-b") binary = value(a)
    else if (a.startsWith("--binary=")) binary = a.slice(9)
    else if (a === "--detach" || a === "-d") detach = true
    else if (a === "--json") json = true
    else if (a === "--help") help = true
    else if (a === "--retries" || a.startsWith("--retries=")) {
      const v = a === "--retries" ? value(a) : a.slice(10)
      if (!/^\d{1,3}$/.test(v) || Number(v) > 100) throw new UsageError("--retries must be a number from 0 to 100")
      retries = Number(v)
    } else if (a.startsWith("--") && closest(a.slice(2).split("=")[0]!, SUBMIT_FLAGS))
      throw unknownFlag(a, SUBMIT_FLAGS)
    else break
  }
  if (retries > 0 && !detach)
    throw new UsageError("--retries needs --detach: a job re-run while you follow it would repeat its output")
  return { config, binary, args: raw.slice(i), detach, retries, json, help }
}

const warn = (w: string) => process.stderr.write(`dffmpeg: warning: ${w}\n`)
/** The caller's core, loaded only by the commands that use it. */
const session = () => import("../../client/session.ts")
/** The client config (`--config` or the search) and its signed API client. */
const open = async (config?: string) => (await session()).openClient(config, warn)

const SUBMIT_FLAGS = ["config", "binary", "detach", "retries", "json", "help"]

const submit = passthroughCommand(
  defineCommand({
    meta: {
      name: "submit",
      description:
        "Run ffmpeg/ffprobe on the cluster exactly as the proxy does. Options come first and end at the first other token or at --: [--config F] [-b|--binary ffmpeg|ffprobe] [-d|--detach [--retries N] [--json]] [--] ARGS...",
    },
    args: {
      config: { type: "string", alias: "c", description: "client YAML config" },
      binary: { type: "string", alias: "b", description: "remote binary (default ffmpeg)" },
      detach: {
        type: "boolean",
        alias: "d",
        description: "submit and print the job id instead of following it (no stdin)",
      },
      retries: { type: "string", description: "with --detach: re-run the job up to N times if its worker is lost" },
      json: { type: "boolean", description: "with --detach: print the job as JSON" },
    },
    async run({ rawArgs }) {
      const opts = parseSubmit(rawArgs)
      const { runAttached, submitDetached } = await session()
      const common = { binary: opts.binary, args: opts.args, configPath: opts.config, explainYaml, warn }
      if (opts.detach) {
        let job: Job | undefined
        const failed = await asProxy(async () => {
          job = await submitDetached({ ...common, retries: opts.retries })
          return 0
        })
        // A refusal ends as the proxy's do; a printed id is a command's output (exit 7 if it cannot be written).
        if (!job) return exitWith(failed)
        return void process.stdout.write(opts.json ? JSON.stringify(job) + "\n" : job.id + "\n")
      }
      const tty = !!process.stderr.isTTY
      const notice = tty ? (line: string) => void process.stderr.write(line) : undefined
      return exitWith(await asProxy(() => runAttached({ ...common, status: tty, notice })))
    },
  }),
  (rest) => {
    try {
      return parseSubmit(rest).help
    } catch {
      // A malformed option of ours is reported when the command runs.
      return false
    }
  },
)

const idArgs = {
  id: { type: "positional", description: "job id", required: true },
  config: { type: "string", description: "client YAML config" },
} as const

const attach = jobVerb(
  "attach",
  "Follow a job from the start of its output, as if it had been submitted here; exits with its exit code",
  idArgs,
  async (id, args) => {
    const { attach } = await session()
    return exitWith(await asProxy(() => attach({ id, configPath: args.config, status: !!process.stderr.isTTY })))
  },
)

const cancel = jobVerb(
  "cancel",
  "Cancel one of your jobs (its remote process gets q, then SIGTERM, then SIGKILL)",
  idArgs,
  async (id, args) => {
    const { api } = await open(args.config)
    const job = await api.json<Job>("POST", `/api/v1/jobs/${id}/cancel`)
    process.stdout.write(`${job.id} ${job.status === "canceled" ? "canceled" : "canceling"}\n`)
  },
)

const configArg = { config: { type: "string", description: "client YAML config" } } as const
const jsonArg = { json: { type: "boolean", description: "print JSON" } } as const

/** Jobs in the overview besides the active ones: the most recent that ended. */
const RECENT = 10

/** Your active jobs (every one, whatever their age) and the most recent finished ones, newest first. */
async function overview(api: ApiClient, signal: AbortSignal): Promise<Job[]> {
  const get = (query: Record<string, string | number>, limit: number) => listJobPages(api, query, limit, signal)
  const [active, recent] = await Promise.all([
    Promise.all(ACTIVE.map((status) => get({ status }, 1000))),
    get({}, RECENT * 3),
  ])
  const ended = recent.filter((j) => isTerminal(j.status)).slice(0, RECENT)
  return [...active.flat(), ...ended].sort((a, b) => (a.id < b.id ? 1 : -1))
}

function overviewFrame(me: string, jobs: Job[]): Frame {
  const count = (s: JobStatus) => jobs.filter((j) => j.status === s).length
  const title = `jobs of ${me}: ${count("running")} running, ${count("assigned") + count("queued")} waiting`
  const text = jobs.length ? jobsTable(jobs, Date.now(), { created: "age" }) : "no active or recent jobs\n"
  return { title, text, data: { jobs }, key: JSON.stringify(jobs.map(visible)) }
}

/** What a job view shows; liveness stamps (heartbeats, caller seen) change without anything to show. */
const visible = (j: Job) => [
  j.id,
  j.status,
  j.workerId,
  j.exitCode,
  j.exitSignal,
  j.error,
  j.cancelRequestedAt,
  j.progress && { ...j.progress, at: 0 },
]

const statusArgs = {
  id: {
    type: "positional",
    description: "job id (leave out with --watch to see all your active and recent jobs)",
    required: false,
  },
  watch: { type: "boolean", alias: "w", description: "keep the view open and refresh it until Ctrl-C" },
  interval: { type: "string", description: "with --watch: seconds between refreshes (default 1)" },
  ...jsonArg,
  ...configArg,
} as const

const status = verb(
  "status",
  "Show one of your jobs (status, worker, progress, exit, error); with -w a live view of your active and recent jobs",
  statusArgs,
  async (args) => {
    const id = args.id === undefined ? undefined : jobId(args.id)
    if (args.interval !== undefined && !args.watch) throw new UsageError("--interval needs --watch")
    const intervalMs = intervalArg(args.interval)
    if (!args.watch && id === undefined)
      throw new UsageError("give a job id, or --watch for a live view of all your jobs")
    const { api, config } = await open(args.config)
    const one = async (signal?: AbortSignal) => api.json<Job>("GET", `/api/v1/jobs/${id}`, { signal })
    if (!args.watch) {
      const job = await one()
      return void process.stdout.write(args.json ? JSON.stringify(job) + "\n" : jobDetail(job, Date.now()))
    }
    const read = async (signal: AbortSignal): Promise<Frame> => {
      if (id === undefined) return overviewFrame(config.client_id, await overview(api, signal))
      const job = await one(signal)
      return {
        title: `job ${job.id}: ${job.status}`,
        text: jobDetail(job, Date.now()),
        data: { job },
        key: JSON.stringify(visible(job)),
      }
    }
    await watch({ intervalMs, tty: !!process.stdout.isTTY, json: !!args.json, read })
  },
)

const jobsArgs = {
  status: { type: "string", description: statusHelp },
  since: { type: "string", description: sinceHelp },
  limit: { type: "string", description: limitHelp },
  ...jsonArg,
  ...configArg,
} as const

const jobs = verb("jobs", "List your jobs, newest first, with the progress of running ones", jobsArgs, async (args) => {
  const query = { status: statusArg(args.status), since: sinceArg(args.since), limit: limitArg(args.limit, 50) }
  const { api } = await open(args.config)
  const { limit, ...rest } = query
  const list = await listJobPages(api, rest, limit)
  process.stdout.write(
    args.json
      ? JSON.stringify(list) + "\n"
      : list.length
        ? jobsTable(list, Date.now(), { created: "age" })
        : "no jobs\n",
  )
})

const workersArgs = { ...jsonArg, ...configArg } as const
const workers = verb("workers", "Show the cluster's workers and how busy they are", workersArgs, async (args) => {
  const { api } = await open(args.config)
  const list = await api.json<WorkerView[]>("GET", "/api/v1/workers")
  process.stdout.write(args.json ? JSON.stringify(list) + "\n" : list.length ? loadTable(list) : "no workers\n")
})

export default defineCommand({
  meta: { name: "client", description: "Submit, follow, inspect and cancel your jobs; see the cluster's workers" },
  subCommands: { submit, attach, cancel, status, jobs, workers },
})
