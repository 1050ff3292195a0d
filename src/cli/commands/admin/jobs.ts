import { createSink } from "../../../client/output.ts"
import { followOutput } from "../../../shared/follow.ts"
import type { StreamRow } from "../../../store/types.ts"
import { jobId, jobVerb, limitArg, limitHelp, sinceArg, sinceHelp, statusArg, statusHelp } from "../../args.ts"
import { untilInterrupted } from "../../interrupt.ts"
import { jobDetail, jobsTable } from "../../views.ts"
import { adminVerb, jsonArg, modeArgs, modeOf, noun } from "./_args.ts"
import { withBackend, type JobQuery } from "./_backend.ts"

/** Lines of stderr `jobs show` ends with. */
const TAIL = 10

const idArg = { id: { type: "positional", description: "job id", required: true } } as const

const lsArgs = {
  status: { type: "string", description: statusHelp },
  worker: { type: "string", description: "only jobs of this worker" },
  requester: { type: "string", description: "only jobs submitted by this user" },
  since: { type: "string", description: sinceHelp },
  before: {
    type: "string",
    description: "only jobs older than this job id (paging: pass the last id of the previous page)",
  },
  limit: { type: "string", description: limitHelp },
  ...jsonArg,
  ...modeArgs,
} as const

const ls = adminVerb("ls", "List jobs, newest first, with the progress of running ones", lsArgs, {
  input: (args): JobQuery => ({
    status: statusArg(args.status),
    worker: args.worker,
    requester: args.requester,
    since: sinceArg(args.since),
    before: args.before === undefined ? undefined : jobId(args.before),
    limit: limitArg(args.limit, 50),
  }),
  call: (b, q) => b.listJobs(q),
  readOnly: true,
  show: (jobs) => (jobs.length ? jobsTable(jobs, Date.now(), { requester: true }) : "no jobs\n"),
})

const showArgs = { ...idArg, ...jsonArg, ...modeArgs } as const
const show = adminVerb(
  "show",
  `Show one job: arguments as submitted, outcome, times, progress, timeline and its last ${TAIL} stderr lines`,
  showArgs,
  {
    input: (args) => jobId(args.id),
    call: async (b, id) => {
      const job = await b.getJob(id)
      const [events, stderr] = await Promise.all([b.events(id), b.stderrTail(id, TAIL)])
      return { job, events, stderr }
    },
    readOnly: true,
    show: ({ job, events, stderr }) => ({
      json: { ...job, events, stderrTail: stderr.lines, stderrTailTruncated: stderr.truncated },
      text: jobDetail(job, Date.now(), { events, stderr: stderr.lines, stderrCut: stderr.truncated }),
    }),
  },
)

const logsArgs = {
  ...idArg,
  follow: { type: "boolean", alias: "f", description: "keep writing output as it arrives until the job ends" },
  stdout: {
    type: "boolean",
    description: "also the job's stdout: its stdout to stdout and its stderr to stderr, as the caller got them",
  },
  ...modeArgs,
} as const

const logs = jobVerb(
  "logs",
  "Write a job's stderr to stdout, byte for byte (--stdout: both streams, each to its own); -f follows it until it ends",
  logsArgs,
  async (id, args) => {
    const out = createSink(process.stdout)
    const err = createSink(process.stderr)
    await withBackend({ ...modeOf(args), readOnly: true }, async (b) => {
      await b.getJob(id)
      await untilInterrupted(async (interrupted) => {
        // A reader that went away (`| head`) stops the copy; main.ts then exits with ExitCode.OUTPUT.
        const ac = new AbortController()
        const signal = AbortSignal.any([interrupted, ac.signal])
        const write = async (r: StreamRow) => {
          if (r.stream === "stderr") await (args.stdout ? err : out).write(r.data)
          else if (args.stdout) await out.write(r.data)
          if (out.broken) ac.abort()
        }
        if (args.follow) return b.follow(id, 0, write, signal)
        await followOutput({ after: 0, read: (after) => b.output(id, after), onRow: write, signal })
      })
    })
  },
)

const cancelArgs = { ...idArg, ...jsonArg, ...modeArgs } as const
const cancel = adminVerb(
  "cancel",
  "Cancel a job: at once if it has not started, otherwise its worker stops the process (q, SIGTERM, SIGKILL)",
  cancelArgs,
  {
    input: (args) => jobId(args.id),
    call: (b, id) => b.cancelJob(id),
    show: (job) => `${job.id} ${job.status === "canceled" ? "canceled" : "canceling"}\n`,
  },
)

const retryArgs = { ...idArg, ...jsonArg, ...modeArgs } as const
const retry = adminVerb(
  "retry",
  "Submit a failed detached job again as a new job (same arguments and requester); prints the new job's id",
  retryArgs,
  {
    input: (args) => jobId(args.id),
    call: (b, id) => b.retryJob(id),
    show: (job, id) => `${job.id} queued (retry of ${id})\n`,
  },
)

export default noun("jobs", "Inspect, follow, cancel and retry jobs", { ls, show, logs, cancel, retry })
