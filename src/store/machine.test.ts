import { describe, expect, test } from "bun:test"
import type { Job, JobStatus } from "../shared/protocol/schemas.ts"
import { jobRecord } from "../../test/helpers/fixtures.ts"
import { RULES, columnStep, step, storedStatus, type ColumnGuard, type JobEvent, type JobTarget } from "./machine.ts"

const job = (status: JobStatus, over: Partial<Job> = {}): Job =>
  jobRecord({ status, epoch: 3, workerId: status === "queued" ? null : "w1", ...over })

/** One event of each type, as the attempt at epoch 3 on w1 sends it. */
const EVENTS: Record<JobEvent["type"], JobEvent> = {
  submit: { type: "submit" },
  assign: { type: "assign", worker: "w2" },
  start: { type: "start", worker: "w1", epoch: 3 },
  exit: { type: "exit", worker: "w1", epoch: 3, code: 0, signal: null },
  lose: { type: "lose", epoch: 3 },
  fail: { type: "fail" },
  cancel: { type: "cancel" },
  withdraw: { type: "withdraw" },
  forceCancel: { type: "forceCancel", epoch: 3 },
  unassign: { type: "unassign", epoch: 3 },
  answer: { type: "answer", code: 0 },
}

const STATES: JobStatus[] = ["queued", "assigned", "running", "completed", "failed", "canceled"]

/**
 * Every (from, event) pair with the guards satisfied: where it goes, or "-" when it is refused. Written
 * out by hand rather than derived from RULES, so that a rule added, dropped or moved fails here.
 */
/** Nothing leaves an ended state. */
const REFUSED = Object.fromEntries(Object.keys(EVENTS).map((e) => [e, "-"])) as Record<JobEvent["type"], "-">

const TABLE: Record<JobStatus, Record<JobEvent["type"], JobTarget | "-">> = {
  queued: {
    submit: "-",
    assign: "assigned",
    start: "-",
    exit: "-",
    lose: "-",
    fail: "failed",
    cancel: "canceled",
    withdraw: "canceled",
    forceCancel: "-",
    unassign: "-",
    answer: "-",
  },
  assigned: {
    submit: "-",
    assign: "-",
    start: "running",
    exit: "-",
    lose: "failed",
    fail: "failed",
    cancel: "canceled",
    withdraw: "canceled",
    forceCancel: "-",
    unassign: "queued",
    answer: "-",
  },
  running: {
    submit: "-",
    assign: "-",
    start: "-",
    exit: "completed",
    lose: "failed",
    fail: "failed",
    cancel: "canceling",
    withdraw: "-",
    forceCancel: "canceled",
    unassign: "-",
    answer: "-",
  },
  completed: REFUSED,
  failed: REFUSED,
  canceled: REFUSED,
}

const to = (j: Job | undefined, ev: JobEvent) => step(j, ev)?.to ?? "-"

describe("job state machine", () => {
  for (const from of STATES)
    for (const [type, ev] of Object.entries(EVENTS) as [JobEvent["type"], JobEvent][])
      test(`${from} on ${type} → ${TABLE[from][type]}`, () => {
        expect(to(job(from), ev)).toBe(TABLE[from][type])
      })

  test("a new job is only ever submitted, to queued", () => {
    expect(to(undefined, EVENTS.submit)).toBe("queued")
    for (const ev of Object.values(EVENTS).filter((e) => e.type !== "submit")) expect(to(undefined, ev)).toBe("-")
  })

  test("every rule's target is reachable from its state and every event has a rule", () => {
    const events = new Set<string>(RULES.map((r) => r.event))
    expect([...events].sort()).toEqual(Object.keys(EVENTS).sort())
    for (const r of RULES) expect(r.guard.length).toBeGreaterThan(0)
  })

  test("a step says where it came from and which event made it", () => {
    expect(step(job("queued"), EVENTS.assign)).toEqual({ from: "queued", to: "assigned", event: EVENTS.assign })
  })

  describe("guards", () => {
    test("answer: only a job never assigned (epoch 0), to completed or failed by its exit code", () => {
      const fresh = job("queued", { epoch: 0, workerId: null })
      expect(to(fresh, { type: "answer", code: 0 })).toBe("completed")
      expect(to(fresh, { type: "answer", code: 1 })).toBe("failed")
      // epoch 3: it was assigned once and re-queued; its answer is a worker's now
      expect(to(job("queued"), { type: "answer", code: 0 })).toBe("-")
    })

    test("start: only the worker and epoch of the assignment, and not once a cancel was asked", () => {
      expect(to(job("assigned"), { type: "start", worker: "w2", epoch: 3 })).toBe("-")
      expect(to(job("assigned"), { type: "start", worker: "w1", epoch: 2 })).toBe("-")
      expect(to(job("assigned", { cancelRequestedAt: 1 }), EVENTS.start)).toBe("-")
    })

    test("exit: completed only when clean; any other exit fails; a requested cancel ends canceled", () => {
      const running = job("running")
      expect(to(running, { ...EVENTS.exit, code: 1 } as JobEvent)).toBe("failed")
      expect(to(running, { ...EVENTS.exit, code: null, signal: "SIGKILL" } as JobEvent)).toBe("failed")
      expect(to(running, { ...EVENTS.exit, error: "no such path" } as JobEvent)).toBe("failed")
      expect(to(job("running", { cancelRequestedAt: 1 }), EVENTS.exit)).toBe("canceled")
      expect(to(running, { ...EVENTS.exit, worker: "w2" } as JobEvent)).toBe("-")
      expect(to(running, { ...EVENTS.exit, epoch: 4 } as JobEvent)).toBe("-")
    })

    test("lose: back to the queue only when detached with retries left; canceled when a cancel was asked", () => {
      for (const from of ["assigned", "running"] as const) {
        expect(to(job(from, { retries: 2, attempts: 1 }), EVENTS.lose)).toBe("queued")
        expect(to(job(from, { retries: 2, attempts: 2 }), EVENTS.lose)).toBe("failed")
        expect(to(job(from, { retries: 2, attached: true }), EVENTS.lose)).toBe("failed")
        expect(to(job(from, { retries: 2 }), { type: "lose", epoch: 2 })).toBe("-")
        expect(to(job(from, { retries: 2 }), { type: "lose", epoch: 3, worker: "w2" })).toBe("-")
      }
      expect(to(job("running", { retries: 2, cancelRequestedAt: 1 }), EVENTS.lose)).toBe("canceled")
    })

    test("fail: with an epoch, only while the job is still at it", () => {
      expect(to(job("queued"), { type: "fail", epoch: 3 })).toBe("failed")
      expect(to(job("queued"), { type: "fail", epoch: 2 })).toBe("-")
    })

    test("cancel: a running job is asked once", () => {
      expect(to(job("running", { cancelRequestedAt: 1 }), EVENTS.cancel)).toBe("-")
    })

    test("forceCancel and unassign: only at the epoch read", () => {
      expect(to(job("running"), { type: "forceCancel", epoch: 2 })).toBe("-")
      expect(to(job("assigned"), { type: "unassign", epoch: 2 })).toBe("-")
    })
  })

  test("canceling is stored as running; every other target as itself", () => {
    expect(storedStatus("canceling")).toBe("running")
    for (const s of STATES) expect(storedStatus(s)).toBe(s)
  })

  test("a transition decided from the event alone matches step on every job its guard could meet", () => {
    const matches = (j: Job, g: ColumnGuard) =>
      j.status === g.status &&
      (g.epoch === undefined || j.epoch === g.epoch) &&
      (g.workerId === undefined || j.workerId === g.workerId) &&
      (g.cancelRequested === undefined || (j.cancelRequestedAt !== null) === g.cancelRequested)
    const events: JobEvent[] = [
      ...Object.values(EVENTS),
      { type: "start", worker: "w2", epoch: 3 },
      { type: "start", worker: "w1", epoch: 2 },
    ]
    let decided = 0
    for (const ev of events) {
      const c = columnStep(ev)
      if (!c) continue
      decided++
      for (const status of STATES)
        for (const epoch of [2, 3])
          for (const workerId of [null, "w1", "w2"])
            for (const cancelRequestedAt of [null, 5])
              for (const attached of [false, true])
                for (const [attempts, retries] of [
                  [0, 0],
                  [1, 2],
                ]) {
                  const j = job(status, { epoch, workerId, cancelRequestedAt, attached, attempts, retries })
                  const s = step(j, ev)
                  // The guarded write takes exactly the jobs step takes, and to the same place.
                  expect({ ev: ev.type, status, ok: matches(j, c.guard) }).toEqual({ ev: ev.type, status, ok: !!s })
                  if (s) expect(s).toEqual({ ...c.step, from: j.status })
                }
    }
    expect(decided).toBe(4)
  })
})
