import { defineCommand } from "citty"
import { createSink } from "../../../client/output.ts"
import { followOutput } from "../../../shared/follow.ts"
import type { StreamRow } from "../../../store/types.ts"
import { defineCommandStrict, jobId, limitArg, sinceArg, sinceHelp, statusArg, statusHelp } from "../../args.ts"
import { untilInterrupted } from "../../interrupt.ts"
import { jobDetail, jobsTable } from "../../views.ts"
import { jsonArg, modeArgs, modeOf, print, remember } from "./_args.ts"
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
  limit: { type: "string", description: "at most this many, newest first (1-1000, default 50)" },
  ...jsonArg,
  ...modeArgs,
} as const

const ls = defineCommandStrict({
  meta: { name: "ls", description: "List jobs, newest first, with the progress of running ones" },
  args: lsArgs,
  async run({ args }) {
    const q: JobQuery = {
      status: statusArg(args.status),
      worker: args.worker,
      requester: args.requester,
      since: sinceArg(args.since),
      before: args.before === undefined ? undefined : jobId(args.before),
      limit: limitArg(args.limit, 50),
    }
    const jobs = await withBackend(modeOf(args), (b) => b.listJobs(q))
    print(args.json, jobs, () => (jobs.length ? jobsTable(jobs, Date.now(), { requester: true }) : "no jobs\n"))
  },
})

const showArgs = { ...idArg, ...jsonArg, ...modeArgs } as const
const show = defineCommandStrict({
  meta: {
    name: "show",
    description: `Show one job: arguments as submitted, outcome, times, progress, timeline and its last ${TAIL} stderr lines`,
  },
  args: showArgs,
  async run({ args }) {
    const id = jobId(args.id)
    const { job, events, stderr } = await withBackend(modeOf(args), async (b) => {
      const job = await b.getJob(id)
      const [events, stderr] = await Promise.all([b.events(id), b.stderrTail(id, TAIL)])
      return { job, events, stderr }
    })
    print(args.json, { ...job, events, stderrTail: stderr.lines, stderrTailTruncated: stderr.truncated }, () =>
      jobDetail(job, Date.now(), { events, stderr: stderr.lines, stderrCut: stderr.truncated }),
    )
  },
})

const logsArgs = {
  ...idArg,
  follow: { type: "boolean", alias: "f", description: "keep writing output as it arrives until the job ends" },
  stdout: {
    type: "boolean",
    description: "also the job's stdout: its stdout to stdout and its stderr to stderr, as the caller got them",
  },
  ...modeArgs,
} as const

const logs = defineCommandStrict({
  meta: {
    name: "logs",
    description:
      "Write a job's stderr to stdout, byte for byte (--stdout: both streams, each to its own); -f follows it until it ends",
  },
  args: logsArgs,
  async run({ args }) {
    const id = jobId(args.id)
    const out = createSink(process.stdout)
    const err = createSink(process.stderr)
    await withBackend(modeOf(args), async (b) => {
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
})

const cancelArgs = { ...idArg, ...jsonArg, ...modeArgs } as const
const cancel = defineCommandStrict({
  meta: {
    name: "cancel",
    description:
      "Cancel a job: at once if it has not started, otherwise its worker stops the process (q, SIGTERM, SIGKILL)",
  },
  args: cancelArgs,
  async run({ args }) {
    const id = jobId(args.id)
    const job = await withBackend(modeOf(args), (b) => b.cancelJob(id))
    print(args.json, job, () => `${job.id} ${job.status === "canceled" ? "canceled" : "canceling"}\n`)
  },
})

export default defineCommand({
  meta: { name: "jobs", description: "Inspect, follow and cancel jobs" },
  // Accepted here too, so that `admin jobs --config F <verb>` finds the verb.
  args: modeArgs,
  setup: ({ args }) => remember(args),
  subCommands: { ls, show, logs, cancel },
})
