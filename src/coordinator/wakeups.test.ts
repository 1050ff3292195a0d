import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import type { Job } from "../shared/protocol/schemas.ts"
import { Kind } from "../shared/protocol/frames.ts"
import type { Store } from "../store/index.ts"
import type { StoreChange } from "../store/types.ts"
import { T0, memoryStore, newJob, outputChunk, registration } from "../../test/helpers/fixtures.ts"
import { topic, type Notifier } from "./hub.ts"
import { wireWakeups } from "./wakeups.ts"

const reg = registration()
const out = (seq: number) => [outputChunk(seq, "A", "stderr")]

/** A notifier that records what it was told, a counting scheduler and metrics, on one store. */
function recorder() {
  const log: string[] = []
  /** The hints the job's output stream was told, in order: `job <status>`, `output`, or `none`. */
  const hints: string[] = []
  const notifier: Notifier = {
    kind: "test",
    size: 0,
    wait: async () => {},
    subscribe: () => ({ wait: async () => {}, close: () => {} }),
    notify: (t, hint) => {
      log.push(t)
      if (t.endsWith(":output")) hints.push(hint?.job ? `job ${hint.job.status}` : hint?.output ? "output" : "none")
    },
  }
  return {
    log,
    hints,
    targets: {
      notifier,
      scheduler: { kick: () => void log.push("kick") },
      metrics: {
        submitted: (j: Job) => void log.push(`submitted ${j.id}`),
        started: (j: Job) => void log.push(`started ${j.id}`),
        ended: (j: Job) => void log.push(`ended ${j.id} ${j.status}`),
      },
    },
  }
}

describe("the store's change hook", () => {
  let store: Store
  let changes: StoreChange[]

  beforeEach(async () => {
    store = await memoryStore()
    // The worker the jobs are assigned to (an assignment takes one of a known worker's slots), seen
    // long after the reaping below.
    await store.upsertWorker("w1", registration({ maxJobs: 64 }), "t", T0 + 3_600_000)
    changes = []
    store.changes((c) => void changes.push(c))
  })
  afterEach(async () => {
    await store.close()
  })

  const jobSteps = () =>
    changes.flatMap((c) =>
      c.type === "job" ? [`${c.from ?? "-"}>${c.to} ${c.event} e${c.epoch} ${c.worker ?? "-"}`] : [],
    )

  test("a job's life is reported once per transition, whichever method made it, with the stream events between", async () => {
    await store.createJob(newJob("a"), T0)
    await store.assign("a", "w1", T0 + 1)
    await store.start("a", "w1", 1, T0 + 2)
    await store.appendOutput("a", "w1", 1, out(1), undefined, T0 + 3)
    await store.appendOutput("a", "w1", 1, [], { code: 0, signal: null }, T0 + 4)
    // A repeated final upload (the answer was lost) is not a second ending.
    await store.appendOutput("a", "w1", 1, [], { code: 0, signal: null }, T0 + 5)
    expect(changes.map((c) => c.type)).toEqual(["job", "job", "job", "output", "job"])
    expect(jobSteps()).toEqual([
      "->queued submit e0 -",
      "queued>assigned assign e1 w1",
      "assigned>running start e1 w1",
      "running>completed exit e1 w1",
    ])
    const end = changes.at(-1)!
    expect(end.type === "job" && end.job).toMatchObject({ id: "a", status: "completed", exitCode: 0 })
  })

  test("guarded calls that change nothing report nothing", async () => {
    await store.createJob(newJob("b"), T0)
    changes = []
    expect(await store.start("b", "w1", 1, T0)).toBeUndefined()
    expect(await store.failJob("nope", "x", T0)).toBeUndefined()
    expect(await store.reapWorkers(T0)).toEqual([])
    expect(await store.requestDrain("nope", true, T0)).toBeUndefined()
    expect(await store.appendOutput("b", "w1", 1, out(1), undefined, T0)).toMatchObject({ ok: false })
    expect(await store.setWorkerStatus("nope", "offline", T0)).toBe(false)
    await store.touchWorker("nope", T0)
    expect(changes).toEqual([])
  })

  test("a transaction that rolls back reports nothing", async () => {
    await store.createJob(newJob("c"), T0)
    changes = []
    await expect(store.createJob(newJob("c"), T0)).rejects.toThrow()
    expect(changes).toEqual([])
  })

  test("endings by the janitor's methods, a cancel, and worker changes are reported", async () => {
    await store.createJob(newJob("c"), T0)
    await store.requestCancel("c", "x", T0)
    await store.createJob(newJob("d", { retries: 1 }), T0)
    await store.assign("d", "w1", T0)
    expect(await store.loseJob("d", 1, "gone", T0)).toMatchObject({ requeued: true })
    await store.upsertWorker("w9", reg, "t", T0)
    expect(await store.verifyWorker("w9", "t", T0)).toBe(true)
    await store.touchWorker("w9", T0)
    await store.requestDrain("w9", true, T0)
    expect(await store.reapWorkers(T0 + 1)).toEqual(["w9"])
    expect(jobSteps()).toEqual([
      "->queued submit e0 -",
      "queued>canceled cancel e0 -",
      "->queued submit e0 -",
      "queued>assigned assign e1 w1",
      "assigned>queued lose e1 w1",
    ])
    expect(changes.flatMap((c) => (c.type === "worker" ? [`${c.worker} ${c.what}`] : []))).toEqual([
      "w9 registered",
      "w9 verified",
      "w9 seen",
      "w9 drain",
      "w9 reaped",
    ])
  })

  test("a running job asked to cancel is reported as canceling, and its end as canceled", async () => {
    await store.createJob(newJob("r"), T0)
    await store.assign("r", "w1", T0)
    await store.start("r", "w1", 1, T0)
    await store.requestCancel("r", "by alice", T0)
    await store.appendOutput("r", "w1", 1, [], { code: 255, signal: null }, T0)
    expect(jobSteps().slice(-2)).toEqual(["running>canceling cancel e1 w1", "running>canceled exit e1 w1"])
    const canceling = changes.at(-2)!
    expect(canceling.type === "job" && canceling.reason).toBe("by alice")
  })

  test("stored input is reported; nothing when there was nothing to store", async () => {
    await store.createJob(newJob("i", { stdin: true }), T0)
    changes = []
    expect(await store.appendInput("i", [])).toBe(true)
    expect(await store.appendInput("i", [{ seq: 1, kind: 1, data: new Uint8Array([1]) }])).toBe(true)
    expect(changes).toEqual([{ type: "input", job: "i", worker: null, stdin: true }])
  })

  test("a listener removed hears nothing more; a failing one does not fail the write", async () => {
    const heard: string[] = []
    const off = store.changes((c) => void heard.push(c.type))
    store.changes(() => {
      throw new Error("boom")
    })
    await store.createJob(newJob("x"), T0)
    off()
    expect(await store.assign("x", "w1", T0)).toMatchObject({ status: "assigned" })
    expect(heard).toEqual(["job"])
  })
})

describe("wakeups derived from the changes", () => {
  let store: Store
  let r: ReturnType<typeof recorder>

  beforeEach(async () => {
    store = await memoryStore()
    await store.upsertWorker("w1", registration({ maxJobs: 64 }), "t", T0)
    r = recorder()
    wireWakeups(store, r.targets)
  })
  afterEach(async () => {
    await store.close()
  })

  const since = async (fn: () => Promise<unknown>) => {
    r.log.length = 0
    await fn()
    return [...r.log]
  }
  const J = (id: string) => [topic.output(id), topic.input(id), topic.acked(id)]

  test("a job's output stream is told the job as each transition committed it, and that output was stored", async () => {
    await store.createJob(newJob("a"), T0)
    await store.assign("a", "w1", T0)
    await store.start("a", "w1", 1, T0)
    await store.appendOutput("a", "w1", 1, out(1), undefined, T0)
    await store.appendOutput("a", "w1", 1, out(2), { code: 0, signal: null }, T0)
    expect(r.hints).toEqual(["job queued", "job assigned", "job running", "output", "output", "job completed"])
  })

  test("submit: the job's streams, dashboards, the metric and a scheduling pass", async () => {
    expect(await since(() => store.createJob(newJob("a"), T0))).toEqual([
      ...J("a"),
      topic.changes,
      "submitted a",
      "kick",
    ])
  })

  test("an assignment wakes the worker's poll, its own start and end do not; an end by the worker frees its slot", async () => {
    await store.createJob(newJob("a"), T0)
    expect(await since(() => store.assign("a", "w1", T0))).toEqual([...J("a"), topic.worker("w1"), topic.changes])
    expect(await since(() => store.start("a", "w1", 1, T0))).toEqual([...J("a"), topic.changes, "started a"])
    expect(await since(() => store.appendOutput("a", "w1", 1, out(1), undefined, T0))).toEqual([
      topic.output("a"),
      topic.changes,
    ])
    expect(await since(() => store.appendOutput("a", "w1", 1, out(2), { code: 1, signal: null }, T0))).toEqual([
      topic.output("a"),
      topic.changes,
      ...J("a"),
      topic.changes,
      "ended a failed",
      "kick",
    ])
  })

  test("a cancel wakes the streams and the worker; only a freed slot asks for a pass", async () => {
    await store.createJob(newJob("q"), T0)
    expect(await since(() => store.requestCancel("q", "x", T0))).toEqual([...J("q"), topic.changes, "ended q canceled"])
    await store.createJob(newJob("a"), T0)
    await store.assign("a", "w1", T0)
    expect(await since(() => store.requestCancel("a", "x", T0))).toEqual([
      ...J("a"),
      topic.worker("w1"),
      topic.changes,
      "ended a canceled",
      "kick",
    ])
    await store.createJob(newJob("r"), T0)
    await store.assign("r", "w1", T0)
    await store.start("r", "w1", 1, T0)
    expect(await since(() => store.requestCancel("r", "x", T0))).toEqual([...J("r"), topic.worker("w1"), topic.changes])
  })

  test("the janitor's endings of a lost worker's jobs ask for no pass; a re-queue does", async () => {
    await store.createJob(newJob("l"), T0)
    await store.assign("l", "w1", T0)
    await store.start("l", "w1", 1, T0)
    expect(await since(() => store.loseJob("l", 1, "gone", T0))).toEqual([
      ...J("l"),
      topic.worker("w1"),
      topic.changes,
      "ended l failed",
    ])
    await store.createJob(newJob("u"), T0)
    await store.assign("u", "w1", T0)
    expect(await since(() => store.unassign("u", 1, "late", T0))).toEqual([
      ...J("u"),
      topic.worker("w1"),
      topic.changes,
      "kick",
    ])
  })

  test("a worker that gives its running job up frees its slot: a pass, as for any end it reports", async () => {
    // Ended (no retries left) and canceled (a cancel was under way): the worker is alive and its slot free.
    for (const [id, cancel, ended] of [
      ["g", false, "failed"],
      ["h", true, "canceled"],
    ] as const) {
      await store.createJob(newJob(id), T0)
      await store.assign(id, "w1", T0)
      await store.start(id, "w1", 1, T0)
      if (cancel) await store.requestCancel(id, "by alice", T0)
      const gaveUp = { code: null, signal: "SIGKILL", abandoned: "worker w1 was shut down while running the job" }
      expect(await since(() => store.appendOutput(id, "w1", 1, [], gaveUp, T0))).toEqual([
        ...J(id),
        topic.changes,
        `ended ${id} ${ended}`,
        "kick",
      ])
    }
  })

  test("workers: every change wakes its poll and dashboards; a poll only asks for a pass; reaping asks for none", async () => {
    const W = [topic.worker("w1"), topic.changes]
    expect(await since(() => store.upsertWorker("w1", reg, "t", T0))).toEqual([...W, "kick"])
    expect(await since(() => store.verifyWorker("w1", "t", T0))).toEqual([...W, "kick"])
    expect(await since(() => store.touchWorker("w1", T0))).toEqual(["kick"])
    expect(await since(() => store.requestDrain("w1", false, T0))).toEqual([...W, "kick"])
    expect(await since(() => store.reapWorkers(T0 + 1))).toEqual(W)
  })

  test("stored input wakes the job's input stream only; identities and retention wake dashboards", async () => {
    await store.createJob(newJob("i"), T0)
    expect(await since(() => store.appendInput("i", [{ seq: 1, kind: 1, data: new Uint8Array([1]) }]))).toEqual([
      topic.input("i"),
    ])
    expect(await since(() => store.addUser("bob", "client", "k", T0))).toEqual([topic.changes])
    expect(await since(() => store.removeUser("bob"))).toEqual([topic.changes])
  })

  test("a signal for a running job without stdin wakes its worker's poll; stdin of a job relaying it does not", async () => {
    await store.upsertWorker("w1", reg, "t", T0)
    await store.verifyWorker("w1", "t", T0)
    for (const [id, stdin] of [
      ["s", false],
      ["p", true],
    ] as const) {
      await store.createJob(newJob(id, { stdin }), T0)
      await store.assign(id, "w1", T0)
      await store.start(id, "w1", 1, T0)
    }
    const signal = [{ seq: 1, kind: Kind.signal, data: new TextEncoder().encode("SIGINT") }]
    expect(await since(() => store.appendInput("s", signal))).toEqual([topic.input("s"), topic.worker("w1")])
    expect(await since(() => store.appendInput("p", signal))).toEqual([topic.input("p")])
  })

  test("the caller's acknowledgement wakes only an upload waiting for room in the job's window", async () => {
    await store.upsertWorker("w1", reg, "t", T0)
    await store.verifyWorker("w1", "t", T0)
    await store.createJob(newJob("k", { attached: true }), T0)
    await store.assign("k", "w1", T0)
    await store.start("k", "w1", 1, T0)
    await store.appendOutput("k", "w1", 1, [outputChunk(1, "x")], undefined, T0)
    const [row] = await store.readOutput("k", 0, 1)
    expect(await since(() => store.ackOutput("k", row!.pos, 1024))).toEqual([topic.acked("k")])
  })
})
