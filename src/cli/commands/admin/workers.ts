import { defineCommand } from "citty"
import { defineCommandStrict } from "../../args.ts"
import { UsageError } from "../../../shared/errors.ts"
import { isName } from "../../../shared/ids.ts"
import { workerDetail, workersTable, workerState, type WorkerView } from "../../views.ts"
import { jsonArg, modeArgs, modeOf, print, remember } from "./_args.ts"
import { withBackend } from "./_backend.ts"

const idArg = { id: { type: "positional", description: "worker id (its client_id)", required: true } } as const

function workerId(id: string): string {
  if (!isName(id)) throw new UsageError(`${JSON.stringify(id)} is not a worker id (1-64 letters, digits, '_' or '-')`)
  return id
}

const lsArgs = { ...jsonArg, ...modeArgs } as const
const ls = defineCommandStrict({
  meta: {
    name: "ls",
    description:
      'List workers: state (an admin drain shows as "draining (admin)"), load/slots, binaries, paths, version, last seen',
  },
  args: lsArgs,
  async run({ args }) {
    const workers = await withBackend(modeOf(args), (b) => b.listWorkers())
    print(args.json, workers, () => (workers.length ? workersTable(workers, Date.now()) : "no workers\n"))
  },
})

const oneArgs = { ...idArg, ...jsonArg, ...modeArgs } as const
const show = defineCommandStrict({
  meta: { name: "show", description: "Show one worker and the jobs assigned to or running on it" },
  args: oneArgs,
  async run({ args }) {
    const id = workerId(args.id)
    const { worker, jobs } = await withBackend(modeOf(args), async (b) => {
      const worker = await b.getWorker(id)
      const [running, assigned] = await Promise.all([
        b.listJobs({ worker: id, status: "running", limit: 1000 }),
        b.listJobs({ worker: id, status: "assigned", limit: 1000 }),
      ])
      return { worker, jobs: [...running, ...assigned].sort((a, b) => (a.id < b.id ? 1 : -1)) }
    })
    print(args.json, { ...worker, jobs }, () => workerDetail(worker, jobs, Date.now()))
  },
})

/** What a drain or undrain did, in words: it depends on whether the worker is serving right now. */
function drained(w: WorkerView, on: boolean, local: boolean): string {
  const later = local ? " (local mode: the coordinator acts on it at the worker's next poll)" : ""
  if (w.status === "offline" || w.status === "registering")
    return `${w.id} is ${w.status}; it ${on ? "stays drained" : "takes jobs again"} when it comes back${later}\n`
  if (on)
    return `${w.id} ${workerState(w)}: gets no new jobs; ${w.load ? `its ${w.load} current job(s) run to the end` : "it has no current jobs"}${later}\n`
  if (w.status === "draining") return `${w.id} is still draining: the worker itself is shutting down\n`
  return `${w.id} ${w.status}: gets new jobs again${later}\n`
}

const drainCmd = (on: boolean) =>
  defineCommandStrict({
    meta: {
      name: on ? "drain" : "undrain",
      description: on
        ? "Drain a worker: it keeps its running jobs and gets no new ones, across its re-registrations and restarts, until undrained"
        : "Undrain a worker: it gets new jobs again",
    },
    args: oneArgs,
    async run({ args }) {
      const id = workerId(args.id)
      const { worker, local } = await withBackend(modeOf(args), async (b) => ({
        worker: await b.setDrain(id, on),
        local: b.mode === "local",
      }))
      print(args.json, worker, () => drained(worker, on, local))
    },
  })

export default defineCommand({
  meta: { name: "workers", description: "Inspect and drain workers" },
  // Accepted here too, so that `admin workers --config F <verb>` finds the verb.
  args: modeArgs,
  setup: ({ args }) => remember(args),
  subCommands: { ls, show, drain: drainCmd(true), undrain: drainCmd(false) },
})
