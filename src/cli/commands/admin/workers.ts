import { UsageError } from "../../../shared/errors.ts"
import { isName } from "../../../shared/ids.ts"
import { workerDetail, workersTable, workerState, type WorkerView } from "../../views.ts"
import { adminVerb, jsonArg, modeArgs, noun } from "./_args.ts"

const idArg = { id: { type: "positional", description: "worker id (its client_id)", required: true } } as const

function workerId(id: string): string {
  if (!isName(id)) throw new UsageError(`${JSON.stringify(id)} is not a worker id (1-64 letters, digits, '_' or '-')`)
  return id
}

const lsArgs = { ...jsonArg, ...modeArgs } as const
const ls = adminVerb(
  "ls",
  'List workers: state (an admin drain shows as "draining (admin)"), load/slots, binaries, paths, version, last seen',
  lsArgs,
  {
    input: () => undefined,
    call: (b) => b.listWorkers(),
    readOnly: true,
    show: (workers) => (workers.length ? workersTable(workers, Date.now()) : "no workers\n"),
  },
)

const oneArgs = { ...idArg, ...jsonArg, ...modeArgs } as const
const show = adminVerb("show", "Show one worker and the jobs assigned to or running on it", oneArgs, {
  input: (args) => workerId(args.id),
  call: async (b, id) => {
    const worker = await b.getWorker(id)
    const [running, assigned] = await Promise.all([
      b.listJobs({ worker: id, status: "running", limit: 1000 }),
      b.listJobs({ worker: id, status: "assigned", limit: 1000 }),
    ])
    return { worker, jobs: [...running, ...assigned].sort((a, b) => (a.id < b.id ? 1 : -1)) }
  },
  readOnly: true,
  show: ({ worker, jobs }) => ({ json: { ...worker, jobs }, text: workerDetail(worker, jobs, Date.now()) }),
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
  adminVerb(
    on ? "drain" : "undrain",
    on
      ? "Drain a worker: it keeps its running jobs and gets no new ones, across its re-registrations and restarts, until undrained"
      : "Undrain a worker: it gets new jobs again",
    oneArgs,
    {
      input: (args) => workerId(args.id),
      call: (b, id) => b.setDrain(id, on),
      show: (worker, _, local) => drained(worker, on, local),
    },
  )

export default noun("workers", "Inspect and drain workers", {
  ls,
  show,
  drain: drainCmd(true),
  undrain: drainCmd(false),
})
