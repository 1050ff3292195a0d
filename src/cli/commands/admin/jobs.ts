import { defineCommand } from "citty"
import * as v from "valibot"
import { ConflictError, NotFoundError, UsageError } from "../../../shared/errors.ts"
import { isUlid } from "../../../shared/ids.ts"
import { JobStatus, isTerminal, type Job } from "../../../shared/protocol/schemas.ts"
import { rejectUnknownFlags } from "../../run.ts"
import { duration, table, time } from "../../table.ts"
import { withStore } from "./_store.ts"

const config = { type: "string", description: "coordinator YAML config" } as const

function outcome(j: Job): string {
  if (j.exitSignal) return j.exitSignal
  if (j.exitCode !== null) return String(j.exitCode)
  return j.error ? "error" : "-"
}

const lsArgs = {
  status: { type: "string", description: "only jobs in this state (queued, assigned, running, completed, failed, canceled)" },
  worker: { type: "string", description: "only jobs of this worker" },
  limit: { type: "string", description: "at most this many (default 50)" },
  json: { type: "boolean", description: "print a JSON array" },
  config,
} as const

const ls = defineCommand({
  meta: { name: "ls", description: "List jobs, newest first" },
  args: lsArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(lsArgs, rawArgs)
    if (args.status !== undefined && !v.is(JobStatus, args.status)) throw new UsageError(`--status must be one of ${JobStatus.options.join(", ")}`)
    if (args.limit !== undefined && !/^\d+$/.test(args.limit)) throw new UsageError("--limit must be a number")
    const jobs = await withStore(args.config, (s) =>
      s.listJobs({ status: args.status as JobStatus | undefined, worker: args.worker, limit: args.limit ? Number(args.limit) : 50 }),
    )
    if (args.json) return void process.stdout.write(JSON.stringify(jobs) + "\n")
    if (!jobs.length) return void process.stdout.write("no jobs\n")
    process.stdout.write(
      table(
        ["ID", "STATUS", "EXIT", "BINARY", "REQUESTER", "WORKER", "CREATED", "DURATION", "ARGS"],
        jobs.map((j) => [
          j.id,
          j.status,
          outcome(j),
          j.binary,
          j.requester,
          j.workerId,
          time(j.createdAt),
          duration(j.finishedAt && j.startedAt ? j.finishedAt - j.startedAt : null),
          truncate(j.args.join(" "), 60),
        ]),
      ),
    )
  },
})

const truncate = (s: string, n: number) => (s.length > n ? s.slice(0, n - 1) + "…" : s)

const showArgs = { id: { type: "positional", description: "job id", required: true }, json: { type: "boolean", description: "print JSON" }, config } as const
const show = defineCommand({
  meta: { name: "show", description: "Show one job" },
  args: showArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(showArgs, rawArgs)
    if (!isUlid(args.id)) throw new UsageError(`${args.id} is not a job id (ULID)`)
    const found = await withStore(args.config, async (s) => {
      const job = await s.getJob(args.id)
      return job && { job, events: await s.events(args.id) }
    })
    if (!found) throw new NotFoundError(`no job ${args.id}`)
    const { job, events } = found
    if (args.json) return void process.stdout.write(JSON.stringify({ ...job, events }) + "\n")
    const rows: [string, string][] = [
      ["id", job.id],
      ["status", job.status],
      ["exit", outcome(job)],
      ["error", job.error ?? "-"],
      ["binary", job.binary],
      ["args", JSON.stringify(job.args)],
      ["paths", job.paths.join(", ") || "-"],
      ["cwd", job.cwd ?? "-"],
      ["requester", job.requester],
      ["worker", job.workerId ?? "-"],
      ["attempt", String(job.epoch)],
      ["created", time(job.createdAt)],
      ["assigned", time(job.assignedAt)],
      ["started", time(job.startedAt)],
      ["finished", time(job.finishedAt)],
      ["run time", duration(job.finishedAt && job.startedAt ? job.finishedAt - job.startedAt : null)],
    ]
    process.stdout.write(rows.map(([k, val]) => `${k.padEnd(10)} ${val}`).join("\n") + "\n")
    if (events.length) {
      process.stdout.write("\ntimeline\n")
      process.stdout.write(table(["TIME", "STATUS", "ATTEMPT", "WORKER", "REASON"], events.map((e) => [time(e.at), e.status, String(e.epoch), e.workerId, e.reason])))
    }
  },
})

const cancelArgs = { id: { type: "positional", description: "job id", required: true }, config } as const
const cancel = defineCommand({
  meta: { name: "cancel", description: "Cancel a job: at once if it has not started, otherwise its worker stops the process (q, SIGTERM, SIGKILL)" },
  args: cancelArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(cancelArgs, rawArgs)
    if (!isUlid(args.id)) throw new UsageError(`${args.id} is not a job id (ULID)`)
    const { job, changed } = await withStore(args.config, async (s) => {
      const job = await s.getJob(args.id)
      if (!job) throw new NotFoundError(`no job ${args.id}`)
      const changed = await s.requestCancel(args.id, "canceled by an administrator", Date.now())
      return { job: changed ?? job, changed: !!changed }
    })
    // Unchanged and terminal: it had ended before. Unchanged and running: a cancel is already under way.
    if (!changed && isTerminal(job.status)) throw new ConflictError(`job ${job.id} already ended: ${job.status}`)
    process.stdout.write(`${job.id} ${job.status === "canceled" ? "canceled" : "canceling"}\n`)
  },
})

export default defineCommand({
  meta: { name: "jobs", description: "Inspect jobs" },
  subCommands: { ls, show, cancel },
})
