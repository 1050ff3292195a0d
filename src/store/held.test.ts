import { afterAll, afterEach, describe, expect, test } from "bun:test"
import { Database } from "bun:sqlite"
import {
  EXIT_OK,
  mappedJob as newJob,
  outputChunk as out,
  registration,
  T0,
  tempDir,
} from "../../test/helpers/fixtures.ts"
import { createHeldOutput, type HeldOutput } from "./held.ts"
import { createSqliteStore } from "./sqlite/index.ts"
import type { OutputChunk, Store } from "./types.ts"

const text = (d: Uint8Array) => new TextDecoder().decode(d)
const b = (s: string) => new TextEncoder().encode(s)

describe("createHeldOutput", () => {
  test("holds within its budget only, and gives the room back on drop and forget", () => {
    const h = createHeldOutput(10)
    expect(h.hold("j", 1, 1, b("aaaaaa"))).toBe(true)
    expect(h.hold("j", 1, 2, b("bbbbb"))).toBe(false)
    expect(h.get("j", 1, 2)).toBeUndefined()
    expect(h.hold("k", 1, 1, b("cccc"))).toBe(true)
    expect(h.bytes).toBe(10)
    h.drop("j", 1, 1)
    expect(h.bytes).toBe(4)
    expect(h.hold("j", 1, 2, b("bbbbb"))).toBe(true)
    h.forget("k")
    expect(h.bytes).toBe(5)
    expect(h.get("k", 1, 1)).toBeUndefined()
  })

  test("a small view of a large upload body is copied, so the body is not kept alive uncounted; a large one is kept", () => {
    const h = createHeldOutput(1024 * 1024)
    const body = new Uint8Array(1024 * 1024).fill(7)
    h.hold("j", 1, 1, body.subarray(10, 11))
    const small = h.get("j", 1, 1)!.data
    expect(small.buffer.byteLength).toBeLessThan(1024)
    expect([...small]).toEqual([7])
    h.hold("j", 1, 2, body.subarray(0, 600 * 1024))
    expect(h.get("j", 1, 2)!.data.buffer).toBe(body.buffer)
    expect(h.bytes).toBe(600 * 1024 + 1)
  })

  test("entries and the lowest sequence are per attempt; a new attempt replaces the old one's", () => {
    const h = createHeldOutput(100)
    h.hold("j", 1, 3, b("c"))
    h.hold("j", 1, 2, b("b"))
    expect(h.entries("j", 1).map(([s, d]) => `${s}:${text(d)}`)).toEqual(["2:b", "3:c"])
    expect(h.lowest("j", 1)).toBe(2)
    expect(h.complete("j", 1)).toBe(false)
    h.markComplete("j", 1)
    expect(h.complete("j", 1)).toBe(true)
    h.hold("j", 2, 1, b("x"))
    expect(h.get("j", 1, 2)).toBeUndefined()
    expect(h.complete("j", 2)).toBe(false)
    expect(h.bytes).toBe(1)
  })

  test("holds: whether any payload of the job is here, whatever its attempts left behind", () => {
    const h = createHeldOutput(100)
    expect(h.holds("j")).toBe(false)
    h.hold("j", 1, 1, b("a"))
    expect(h.holds("j")).toBe(true)
    h.markComplete("j", 1)
    h.drop("j", 1, 1)
    // The attempt is still known (complete), but nothing of it is held.
    expect(h.holds("j")).toBe(false)
    h.hold("j", 1, 2, b("b"))
    h.forget("j")
    expect(h.holds("j")).toBe(false)
  })
})

describe("a SQLite store with held output", () => {
  const tmp = tempDir("held")
  afterAll(tmp.remove)
  const B = { windowBytes: 100, stderrTailBytes: 4, detachedBytes: 100 }
  let open: Store[] = []
  afterEach(async () => {
    for (const s of open) await s.close()
    open = []
  })
  const storeOn = async (path: string, held?: HeldOutput) => {
    const s = createSqliteStore({ path, held })
    open.push(s)
    await s.migrate()
    await s.upsertWorker("w1", registration({ maxJobs: 64 }), "tok", T0)
    return s
  }
  const started = async (store: Store, id: string, attached = true) => {
    await store.createJob(newJob(id, { attached }), T0)
    const a = await store.assign(id, "w1", T0 + 1)
    await store.start(id, "w1", a!.epoch, T0 + 2)
  }
  const put = (store: Store, id: string, chunks: OutputChunk[], exit?: typeof EXIT_OK) =>
    store.appendOutput(id, "w1", 1, chunks, exit, T0 + 10, undefined, B, { retain: true })
  const read = async (store: Store, id: string) =>
    (await store.readOutput(id, 0, 100)).map((r) => `${r.stream[3]}:${text(r.data)}`)
  /** The bytes a job's rows store, and those they say are held in memory. */
  const rows = (path: string, id: string) => {
    const db = new Database(path, { readonly: true })
    try {
      return db.query("SELECT sum(length(data)) AS stored, sum(held) AS held FROM job_output WHERE job_id = ?").get(id)
    } finally {
      db.close()
    }
  }

  test("an attached job's stdout is held, not stored; stderr and detached output are stored; durable says what is", async () => {
    const path = tmp.fresh()
    const store = await storeOn(path, createHeldOutput(1 << 20))
    await started(store, "a")
    await started(store, "d", false)
    expect(await put(store, "a", [out(1, "o1"), out(2, "e1", "stderr")])).toMatchObject({ ok: true, durable: 0 })
    expect(await put(store, "d", [out(1, "o1")])).toMatchObject({ ok: true, durable: 1 })
    expect(rows(path, "a")).toEqual({ stored: 2, held: 2 })
    expect(rows(path, "d")).toEqual({ stored: 2, held: 0 })
    expect(await read(store, "a")).toEqual(["o:o1", "e:e1"])
    // A worker that does not keep what it sends gets everything stored.
    expect(await store.appendOutput("a", "w1", 1, [out(3, "o2")], undefined, T0 + 10, undefined, B)).toMatchObject({
      ok: true,
    })
    expect(rows(path, "a")).toEqual({ stored: 4, held: 2 })
  })

  test("held rows count in the window; an acknowledgement frees their memory and moves durable on", async () => {
    const path = tmp.fresh()
    const held = createHeldOutput(1 << 20)
    const store = await storeOn(path, held)
    await started(store, "a")
    await put(store, "a", [out(1, "x".repeat(60))])
    expect(await put(store, "a", [out(2, "y".repeat(50))])).toMatchObject({ ok: false, reason: "window-full" })
    // The refused upload held nothing.
    expect(held.bytes).toBe(60)
    const [row] = await store.readOutput("a", 0, 10)
    await store.ackOutput("a", row!.pos, B.stderrTailBytes)
    expect(held.bytes).toBe(0)
    expect(await put(store, "a", [out(2, "y".repeat(50))])).toMatchObject({ ok: true, durable: 1 })
  })

  test("over the budget, output is stored as before", async () => {
    const path = tmp.fresh()
    const store = await storeOn(path, createHeldOutput(3))
    await started(store, "a")
    await put(store, "a", [out(1, "abc"), out(2, "def")])
    expect(rows(path, "a")).toEqual({ stored: 3, held: 3 })
    expect(await read(store, "a")).toEqual(["o:abc", "o:def"])
  })

  test("the end stores what is held: the finished job's output outlives the memory", async () => {
    const path = tmp.fresh()
    const held = createHeldOutput(1 << 20)
    const store = await storeOn(path, held)
    await started(store, "a")
    await put(store, "a", [out(1, "one")])
    expect(await put(store, "a", [out(2, "two")], EXIT_OK)).toMatchObject({ ok: true, finished: true, durable: 2 })
    expect(rows(path, "a")).toEqual({ stored: 6, held: 0 })
    expect(held.bytes).toBe(0)
    expect(await read(await storeOn(path), "a")).toEqual(["o:one", "o:two"])
  })

  test("after a restart: held rows are not read until the worker sends them again, under their old positions", async () => {
    const path = tmp.fresh()
    const before = await storeOn(path, createHeldOutput(1 << 20))
    await started(before, "a")
    await put(before, "a", [out(1, "one"), out(2, "e", "stderr")])
    await put(before, "a", [out(3, "two")])
    const positions = (await before.readOutput("a", 0, 10)).map((r) => r.pos)
    // The process is gone with its memory; its rows remain.
    const store = await storeOn(path, createHeldOutput(1 << 20))
    expect(await store.readOutput("a", 0, 10)).toEqual([])
    expect(await read(await storeOn(path), "a")).toEqual([])
    // Any upload first learns where the lost output starts; it takes nothing else.
    expect(await put(store, "a", [out(4, "three")])).toMatchObject({ ok: false, reason: "resend", expected: 1 })
    expect(await put(store, "a", [out(1, "one"), out(2, "e", "stderr")])).toMatchObject({
      ok: false,
      reason: "resend",
      expected: 3,
    })
    expect(await read(store, "a")).toEqual(["o:one", "e:e"])
    expect(await put(store, "a", [out(3, "two")])).toMatchObject({ ok: true, durable: 0 })
    expect(await put(store, "a", [out(4, "three")])).toMatchObject({ ok: true, durable: 0 })
    const after = await store.readOutput("a", 0, 10)
    expect(after.map((r) => text(r.data))).toEqual(["one", "e", "two", "three"])
    expect(after.slice(0, 3).map((r) => r.pos)).toEqual(positions)
  })

  test("a payload sent again with another size is not taken for the lost one", async () => {
    const path = tmp.fresh()
    const before = await storeOn(path, createHeldOutput(1 << 20))
    await started(before, "a")
    await put(before, "a", [out(1, "one")])
    const store = await storeOn(path, createHeldOutput(1 << 20))
    expect(await put(store, "a", [out(1, "forged")])).toMatchObject({ ok: false, reason: "resend", expected: 1 })
    expect(await store.readOutput("a", 0, 10)).toEqual([])
  })

  test("a job that ended while its held output was lost: the lost rows are skipped, the rest is read", async () => {
    const path = tmp.fresh()
    const before = await storeOn(path, createHeldOutput(1 << 20))
    await started(before, "a")
    await put(before, "a", [out(1, "lost"), out(2, "e", "stderr"), out(3, "f", "stderr")])
    const store = await storeOn(path, createHeldOutput(1 << 20))
    await store.failJob("a", "its worker was lost", T0 + 20)
    expect(await read(store, "a")).toEqual(["e:e", "e:f"])
    // A page is filled past the skipped row: one shorter than asked means nothing more (a follower stops there).
    expect((await store.readOutput("a", 0, 2)).map((r) => text(r.data))).toEqual(["e", "f"])
  })
})
