import { isTerminal, type Job } from "../shared/protocol/schemas.ts"
import type { Store } from "../store/index.ts"

export interface StoreEvents {
  /** A job or worker changed in a way someone watching would see (dashboards re-read). */
  changed(): void
  /** A job was created. */
  submitted(job: Job): void
  /** An attempt of `job` started running (assigned → running). */
  started(job: Job): void
  /** `job` reached a terminal state through this coordinator. */
  ended(job: Job): void
}

type Method = keyof Store

/** Methods returning the job they changed (undefined when the guard did not match). */
const JOB_TRANSITIONS: Method[] = [
  "createJob",
  "assign",
  "start",
  "failJob",
  "requestCancel",
  "forceCanceled",
  "unassign",
]
/** Methods that change workers (or many rows) and are worth a re-read when they return. */
const WORKER_CHANGES: Method[] = [
  "upsertWorker",
  "verifyWorker",
  "setWorkerStatus",
  "requestDrain",
  "prune",
  "removeUser",
]

/**
 * The store as the coordinator uses it, reporting what each successful change did. Every state change
 * already goes through one of these methods, so metrics and live views hear of all of them, whichever
 * route, scheduler pass or janitor run made it, without each caller remembering to tell them.
 */
export function observeStore(store: Store, on: Partial<StoreEvents>): Store {
  const changed = () => on.changed?.()
  const job = (j: Job | undefined, method: Method) => {
    if (!j) return
    if (method === "createJob") on.submitted?.(j)
    if (method === "start" && j.status === "running") on.started?.(j)
    if (isTerminal(j.status)) on.ended?.(j)
    changed()
  }
  const wrap: Partial<Record<Method, unknown>> = {}
  for (const m of JOB_TRANSITIONS) {
    const fn = (store[m] as (...a: unknown[]) => Promise<Job | undefined>).bind(store)
    wrap[m] = async (...args: unknown[]) => {
      const res = await fn(...args)
      job(res, m)
      return res
    }
  }
  for (const m of WORKER_CHANGES) {
    const fn = (store[m] as (...a: unknown[]) => Promise<unknown>).bind(store)
    wrap[m] = async (...args: unknown[]) => {
      const res = await fn(...args)
      if (res) changed()
      return res
    }
  }
  wrap.loseJob = async (...args: Parameters<Store["loseJob"]>) => {
    const res = await store.loseJob(...args)
    job(res?.job, "loseJob")
    return res
  }
  wrap.reapWorkers = async (...args: Parameters<Store["reapWorkers"]>) => {
    const res = await store.reapWorkers(...args)
    if (res.length) changed()
    return res
  }
  wrap.appendOutput = async (...args: Parameters<Store["appendOutput"]>) => {
    const res = await store.appendOutput(...args)
    if (res.ok) {
      if (res.ended) on.ended?.(res.job)
      // Output or progress arrived: a live log tail or progress bar moves.
      changed()
    }
    return res
  }
  return { ...bindAll(store), ...wrap } as Store
}

/** The store's own methods bound to it (a plain object copy would lose `this`). */
function bindAll(store: Store): Store {
  const out: Record<string, unknown> = { kind: store.kind }
  for (const k of Object.keys(store) as Method[]) {
    const val = store[k]
    out[k] = typeof val === "function" ? (val as (...a: unknown[]) => unknown).bind(store) : val
  }
  return out as unknown as Store
}
