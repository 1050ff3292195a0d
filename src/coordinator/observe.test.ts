import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import type { Job } from "../shared/protocol/schemas.ts"
import type { Store } from "../store/index.ts"
import { memoryStore, newJob, registration, T0 } from "../../test/helpers/fixtures.ts"
import { observeStore } from "./observe.ts"

const reg = registration()

describe("observeStore", () => {
  let raw: Store
  let store: Store
  let log: string[]

  beforeEach(async () => {
    raw = await memoryStore()
    log = []
    store = observeStore(raw, {
      changed: () => log.push("changed"),
      submitted: (j: Job) => log.push(`submitted ${j.id}`),
      started: (j: Job) => log.push(`started ${j.id}`),
      ended: (j: Job) => log.push(`ended ${j.id} ${j.status}`),
    })
  })
  afterEach(async () => {
    await store.close()
  })

  test("a job's life is reported once per transition, whichever method made it", async () => {
    await store.createJob(newJob("a"), T0)
    await store.assign("a", "w1", T0 + 1)
    await store.start("a", "w1", 1, T0 + 2)
    await store.appendOutput(
      "a",
      "w1",
      1,
      [{ seq: 1, stream: "stderr", data: new Uint8Array([65]) }],
      undefined,
      T0 + 3,
    )
    await store.appendOutput("a", "w1", 1, [], { code: 0, signal: null }, T0 + 4)
    // A repeated final upload (the answer was lost) is not a second ending.
    await store.appendOutput("a", "w1", 1, [], { code: 0, signal: null }, T0 + 5)
    expect(log).toEqual([
      "submitted a",
      "changed",
      "changed",
      "started a",
      "changed",
      "changed",
      "ended a completed",
      "changed",
      "changed",
    ])
  })

  test("guarded calls that change nothing report nothing", async () => {
    await store.createJob(newJob("b"), T0)
    log = []
    expect(await store.start("b", "w1", 1, T0)).toBeUndefined()
    expect(await store.failJob("nope", "x", T0)).toBeUndefined()
    expect(await store.reapWorkers(T0)).toEqual([])
    expect(await store.requestDrain("nope", true, T0)).toBeUndefined()
    expect(log).toEqual([])
  })

  test("endings by the janitor's methods and worker changes are reported", async () => {
    await store.createJob(newJob("c"), T0)
    await store.requestCancel("c", "x", T0)
    await store.createJob(newJob("d", { retries: 1 }), T0)
    await store.assign("d", "w1", T0)
    expect(await store.loseJob("d", 1, "gone", T0)).toMatchObject({ requeued: true })
    await store.upsertWorker("w9", reg, "t", T0)
    expect(log.filter((l) => l.startsWith("ended"))).toEqual(["ended c canceled"])
    expect(log.filter((l) => l === "changed").length).toBe(6)
  })

  test("reads pass straight through, bound to the store", async () => {
    await store.createJob(newJob("e"), T0)
    expect((await store.getJob("e"))?.id).toBe("e")
    expect(store.kind).toBe("sqlite")
    expect((await store.stats()).jobs.queued).toBe(1)
  })
})
