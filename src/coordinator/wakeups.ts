import { isTerminal } from "../shared/protocol/schemas.ts"
import type { Store, StoreChange } from "../store/types.ts"
import { topic, type Notifier } from "./hub.ts"
import type { Metrics } from "./metrics.ts"
import type { Scheduler } from "./scheduler.ts"

/** Who is told of the store's changes; each part is optional (tests wire what they look at). */
export interface WakeupTargets {
  notifier: Notifier
  scheduler?: Pick<Scheduler, "kick">
  metrics?: Pick<Metrics, "submitted" | "started" | "ended">
}

/**
 * The one place that decides who hears of a change, derived from what committed rather than placed by
 * each route, scheduler pass or janitor run, so a new transition cannot skip a waiter or a metric:
 * - a job's output and input streams hear of every transition of the job (with the job as it
 *   committed), and of its stored output or input (hinted as such); the worker of the attempt (its
 *   poll) hears of every transition that concerns it (assigned, given back, canceled...) except those it
 *   reported itself (its start, its exit, its giving the job up);
 * - an upload waiting for room in a job's output window hears of the caller's acknowledgements and of
 *   every transition of the job (a cancel lets it through);
 * - a worker's poll hears of every change to the worker, except its own polls, and of input stored for
 *   a job of its own that does not relay stdin: that job's downlink is opened only when the poll says
 *   there is something on it (a signal), while a job relaying stdin has followed its downlink from the start;
 * - the scheduler runs a pass when one could assign something: a job became queued, a slot was freed
 *   by a job's end that its worker reported (its exit, or its giving the job up) or an administrator or
 *   caller made (not when the janitor ends the job of a worker that stopped answering: that slot is
 *   nobody's to fill), or a worker
 *   registered, was verified, polled, or was drained or undrained;
 * - dashboards (`topic.changes`) hear of everything but polls and stdin;
 * - metrics count submissions, starts and ends.
 */
export function wakeups(to: WakeupTargets): (change: StoreChange) => void {
  const { notifier: n, scheduler, metrics } = to
  return (c) => {
    switch (c.type) {
      case "job": {
        // The job as committed rides along: a stream it only changed the state of needs to read nothing.
        const hint = { job: c.job }
        n.notify(topic.output(c.job.id), hint)
        n.notify(topic.input(c.job.id), hint)
        // An upload waiting for room re-tries: a job being stopped no longer waits for its window.
        n.notify(topic.acked(c.job.id))
        // Its poll hears of what others decide for the attempt (assigned, given back, canceled...), not
        // of what the worker itself reported (its start, its exit, its giving up): it knows those.
        if (c.worker && !c.byWorker) n.notify(topic.worker(c.worker))
        n.notify(topic.changes)
        if (c.from === null) metrics?.submitted(c.job)
        if (c.to === "running") metrics?.started(c.job)
        const ended = c.to !== "canceling" && isTerminal(c.to)
        if (ended) metrics?.ended(c.job)
        const freed = ended && (c.from === "assigned" || c.from === "running")
        // The janitor's endings of a silent worker's jobs free nothing anyone can use; a worker that
        // reports giving its job up (shut down, self-fenced, downlink refused) is alive and has a slot.
        const janitors = (c.event === "lose" && !c.byWorker) || c.event === "forceCancel"
        if (c.to === "queued" || (freed && !janitors)) scheduler?.kick()
        return
      }
      case "worker":
        if (c.what !== "seen") {
          n.notify(topic.worker(c.worker))
          n.notify(topic.changes)
        }
        if (c.what !== "reaped" && c.what !== "status") scheduler?.kick()
        return
      case "output":
        n.notify(topic.output(c.job), { output: true })
        n.notify(topic.changes)
        return
      case "input":
        n.notify(topic.input(c.job), { input: true })
        if (c.worker && !c.stdin) n.notify(topic.worker(c.worker))
        return
      case "acked":
        n.notify(topic.acked(c.job))
        return
      case "user":
      case "pruned":
        n.notify(topic.changes)
        return
    }
  }
}

/** Wires `store`'s change hook to the targets; returns the function that unwires it. */
export function wireWakeups(store: Store, to: WakeupTargets): () => void {
  return store.changes(wakeups(to))
}
