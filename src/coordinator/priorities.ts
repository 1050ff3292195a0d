import type { CoordinatorConfig } from "../shared/config/server-schema.ts"
import type { Labels, Lane, Priority } from "../shared/protocol/capabilities.ts"

/**
 * A submitted job's priority and the labels its worker must have, from the coordinator's `scheduling`
 * config (docs/scheduling.md): the identity's priority (`priorities`, default `normal`), overridden by
 * the first client rule that matches and sets one; the labels of every matching rule. Pure.
 */
export function classify(
  s: CoordinatorConfig["scheduling"],
  job: { requester: string; binary: string; args: string[] },
): { priority: Priority; labels: Labels } {
  let priority: Priority | undefined
  const labels: Labels = {}
  for (const r of s.rules) {
    const m = r.match
    const ids = m.identity === undefined ? undefined : Array.isArray(m.identity) ? m.identity : [m.identity]
    if (ids && !ids.includes(job.requester)) continue
    if (m.binary !== undefined && m.binary !== job.binary) continue
    if (m.args_contain && !containsRun(job.args, m.args_contain)) continue
    priority ??= r.priority
    Object.assign(labels, r.labels)
  }
  // Own keys only: an identity named `constructor` or `toString` must not read Object.prototype.
  const own = Object.hasOwn(s.priorities, job.requester) ? s.priorities[job.requester] : undefined
  return { priority: priority ?? own ?? "normal", labels }
}

/** Does `args` hold `run` as consecutive arguments? */
export function containsRun(args: string[], run: string[]): boolean {
  outer: for (let i = 0; i + run.length <= args.length; i++) {
    for (let j = 0; j < run.length; j++) if (args[i + j] !== run[j]) continue outer
    return true
  }
  return false
}

/** Priority levels above `batch`: each is worth `aging_seconds` of waiting. */
const LEVEL: Record<Priority, number> = { interactive: 2, normal: 1, batch: 0 }

/**
 * A job's place in its lane's queue (lowest first): its submission time minus `aging × level`. The
 * effective priority of a waiting job is its level plus its wait over `aging`, so ordering by that is
 * ordering by this key, which does not change while the job waits: the database orders the queue on an
 * index, and a job re-queued after a lost attempt keeps its place. A `batch` job therefore waits at most
 * 2 × aging longer than an `interactive` one submitted after it: nothing starves. Probes are first come,
 * first served (their own lane, always dispatched first).
 */
export function queueKey(lane: Lane, priority: Priority, createdAt: number, agingMs: number): number {
  return lane === "probe" ? createdAt : createdAt - LEVEL[priority] * agingMs
}
