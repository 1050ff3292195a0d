import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test"
import { rng } from "../../../test/helpers/rng.ts"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConflictError } from "../../shared/errors.ts"
import type { ExitReport, Job, WorkerRegistration } from "../../shared/protocol/schemas.ts"
import { createSqliteStore } from "../sqlite/index.ts"
import type { NewJob, OutputChunk, Store, UploadResult } from "../types.ts"

const tmp = mkdtempSync(join(tmpdir(), "dffmpeg-store-"))
let files = 0
const tempPath = () => join(tmp, `db-${++files}`, "dffmpeg.db")

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true })
})

const rand = rng(42)
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (rand() * 256) | 0
  return out
}
const text = (s: string) => new TextEncoder().encode(s)
const same = (a: Uint8Array | null, b: Uint8Array | null) => a !== null && b !== null && Buffer.from(a).equals(Buffer.from(b))

const T0 = 1_700_000_000_000
const KEY = Buffer.alloc(32, 1).toString("base64")

const newJob = (id: string, over: Partial<NewJob> = {}): NewJob => ({
  id,
  requester: "alice",
  binary: "ffmpeg",
  args: ["-i", "$Movies/a b.mkv", "-f", "null", "-"],
  paths: ["Movies"],
  cwd: "$Movies/sub",
  stdin: true,
  ...over,
})

const reg = (over: Partial<WorkerRegistration> = {}): WorkerRegistration => ({
  binaries: ["ffmpeg"],
  paths: ["Movies"],
  maxJobs: 2,
  version: "1.0.0",
  capabilities: { gpu: false },
  ...over,
})

const out = (seq: number, data: string | Uint8Array, stream: "stdout" | "stderr" = "stdout"): OutputChunk => ({
  seq,
  stream,
  data: typeof data === "string" ? text(data) : data,
})

const ok0: ExitReport = { code: 0, signal: null }

function testStore(name: string, create: () => Store) {
  describe(`${name} store`, () => {
    let store: Store

    beforeEach(async () => {
      store = create()
      await store.migrate()
    })
    afterEach(async () => {
      await store.close()
    })

    /** A job assigned to `worker` (epoch 1) and, unless told otherwise, started. */
    const running = async (id: string, worker = "w1", start = true): Promise<Job> => {
      await store.createJob(newJob(id), T0)
      const assigned = await store.assign(id, worker, T0 + 1)
      if (!start) return assigned!
      return (await store.start(id, worker, assigned!.epoch, T0 + 2))!
    }

    test("migrate is idempotent", async () => {
      await store.migrate()
      await store.migrate()
      expect(await store.listUsers()).toEqual([])
    })

    describe("users", () => {
      test("are added, read with their key, listed by name without keys and removed", async () => {
        expect(await store.addUser("bob", "worker", KEY, T0)).toEqual({ name: "bob", role: "worker", createdAt: T0 })
        await store.addUser("alice", "admin", KEY, T0 + 1)
        expect(await store.getCredential("bob")).toEqual({ name: "bob", role: "worker", key: KEY, createdAt: T0 })
        expect(await store.listUsers()).toEqual([
          { name: "alice", role: "admin", createdAt: T0 + 1 },
          { name: "bob", role: "worker", createdAt: T0 },
        ])
        expect(await store.removeUser("bob")).toBe(true)
        expect(await store.removeUser("bob")).toBe(false)
        expect(await store.getCredential("bob")).toBeUndefined()
        expect((await store.listUsers()).map((u) => u.name)).toEqual(["alice"])
      })

      test("adding an existing name throws ConflictError and keeps the first key", async () => {
        await store.addUser("bob", "client", KEY, T0)
        const err = await store.addUser("bob", "admin", "other", T0 + 1).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(ConflictError)
        expect((err as ConflictError).status).toBe(409)
        expect(await store.getCredential("bob")).toMatchObject({ role: "client", key: KEY })
      })

      test("an unknown user has no credential", async () => {
        expect(await store.getCredential("nobody")).toBeUndefined()
      })
    })

    describe("workers", () => {
      test("upsert registers once and later updates everything but registeredAt", async () => {
        const first = await store.upsertWorker("w1", reg(), T0)
        expect(first).toEqual({
          id: "w1",
          binaries: ["ffmpeg"],
          paths: ["Movies"],
          maxJobs: 2,
          version: "1.0.0",
          capabilities: { gpu: false },
          status: "online",
          registeredAt: T0,
          lastSeen: T0,
        })
        const again = await store.upsertWorker("w1", reg({ binaries: ["ffmpeg", "ffprobe"], maxJobs: 4 }), T0 + 10)
        expect(again).toMatchObject({ binaries: ["ffmpeg", "ffprobe"], maxJobs: 4, registeredAt: T0, lastSeen: T0 + 10 })
        await store.touchWorker("w1", T0 + 20)
        expect((await store.getWorker("w1"))?.lastSeen).toBe(T0 + 20)
        expect((await store.listWorkers()).map((w) => w.id)).toEqual(["w1"])
        expect(await store.getWorker("w2")).toBeUndefined()
      })
    })

    describe("jobs", () => {
      test("createJob stores a queued job with every field, and getJob reads it back", async () => {
        const created = await store.createJob(newJob("j1", { stdin: false, cwd: null }), T0)
        const expected: Job = {
          id: "j1",
          requester: "alice",
          binary: "ffmpeg",
          args: ["-i", "$Movies/a b.mkv", "-f", "null", "-"],
          paths: ["Movies"],
          cwd: null,
          stdin: false,
          status: "queued",
          epoch: 0,
          workerId: null,
          exitCode: null,
          exitSignal: null,
          error: null,
          createdAt: T0,
          updatedAt: T0,
          assignedAt: null,
          startedAt: null,
          finishedAt: null,
        }
        expect(created).toEqual(expected)
        expect(await store.getJob("j1")).toEqual(expected)
        expect(await store.getJob("nope")).toBeUndefined()
      })

      test("createJob with an existing id throws", async () => {
        await store.createJob(newJob("j1"), T0)
        await expect(store.createJob(newJob("j1"), T0)).rejects.toThrow()
      })

      test("listJobs filters by requester, status and worker, newest id first, up to limit", async () => {
        await store.createJob(newJob("j1", { requester: "alice" }), T0)
        await store.createJob(newJob("j2", { requester: "bob" }), T0)
        await store.createJob(newJob("j3", { requester: "alice" }), T0)
        await store.createJob(newJob("j4", { requester: "alice" }), T0)
        await store.assign("j3", "w1", T0)
        await store.assign("j2", "w2", T0)

        const ids = async (f: Parameters<Store["listJobs"]>[0]) => (await store.listJobs(f)).map((j) => j.id)
        expect(await ids({})).toEqual(["j4", "j3", "j2", "j1"])
        expect(await ids({ requester: "alice" })).toEqual(["j4", "j3", "j1"])
        expect(await ids({ status: "queued" })).toEqual(["j4", "j1"])
        expect(await ids({ status: "assigned" })).toEqual(["j3", "j2"])
        expect(await ids({ worker: "w1" })).toEqual(["j3"])
        expect(await ids({ requester: "alice", status: "assigned" })).toEqual(["j3"])
        expect(await ids({ requester: "bob", worker: "w1" })).toEqual([])
        expect(await ids({ limit: 2 })).toEqual(["j4", "j3"])
        expect(await ids({ requester: "carol" })).toEqual([])
      })

      test("queuedJobs lists only queued jobs, oldest id first, up to limit", async () => {
        for (const id of ["j3", "j1", "j4", "j2"]) await store.createJob(newJob(id), T0)
        await store.assign("j1", "w1", T0)
        expect((await store.queuedJobs(10)).map((j) => j.id)).toEqual(["j2", "j3", "j4"])
        expect((await store.queuedJobs(2)).map((j) => j.id)).toEqual(["j2", "j3"])
      })
    })

    describe("assign and start", () => {
      test("assign is a guarded transition: the first wins, a second returns undefined", async () => {
        await store.createJob(newJob("j1"), T0)
        const first = await store.assign("j1", "w1", T0 + 5)
        expect(first).toMatchObject({ status: "assigned", workerId: "w1", epoch: 1, assignedAt: T0 + 5, updatedAt: T0 + 5 })
        expect(await store.assign("j1", "w2", T0 + 6)).toBeUndefined()
        expect(await store.getJob("j1")).toMatchObject({ workerId: "w1", epoch: 1 })
        expect(await store.assign("missing", "w1", T0)).toBeUndefined()
      })

      test("concurrent assigns of one job give it to exactly one worker", async () => {
        await store.createJob(newJob("j1"), T0)
        const results = await Promise.all(["w1", "w2", "w3", "w4"].map((w) => store.assign("j1", w, T0)))
        const winners = results.filter((r) => r !== undefined)
        expect(winners).toHaveLength(1)
        expect((await store.getJob("j1"))?.epoch).toBe(1)
      })

      test("assignedTo lists the worker's assigned, not yet started jobs", async () => {
        for (const id of ["j1", "j2", "j3"]) await store.createJob(newJob(id), T0)
        await store.assign("j2", "w1", T0)
        await store.assign("j1", "w1", T0)
        await store.assign("j3", "w2", T0)
        expect((await store.assignedTo("w1")).map((j) => j.id)).toEqual(["j1", "j2"])
        await store.start("j1", "w1", 1, T0)
        expect((await store.assignedTo("w1")).map((j) => j.id)).toEqual(["j2"])
      })

      test.each([
        ["another worker", "w2", 1],
        ["an older epoch", "w1", 0],
        ["a newer epoch", "w1", 2],
      ])("start refuses %s", async (_name, worker, epoch) => {
        await running("j1", "w1", false)
        expect(await store.start("j1", worker, epoch, T0 + 3)).toBeUndefined()
        expect((await store.getJob("j1"))?.status).toBe("assigned")
      })

      test("start moves assigned to running once, for the assigned worker and epoch", async () => {
        await running("j1", "w1", false)
        expect(await store.start("j1", "w1", 1, T0 + 3)).toMatchObject({ status: "running", startedAt: T0 + 3, updatedAt: T0 + 3 })
        expect(await store.start("j1", "w1", 1, T0 + 4)).toBeUndefined()
      })

      test("start refuses a queued job", async () => {
        await store.createJob(newJob("j1"), T0)
        expect(await store.start("j1", "w1", 0, T0)).toBeUndefined()
      })
    })

    describe("appendOutput", () => {
      const append = (id: string, chunks: OutputChunk[], exit?: ExitReport, opts: { worker?: string; epoch?: number; now?: number } = {}) =>
        store.appendOutput(id, opts.worker ?? "w1", opts.epoch ?? 1, chunks, exit, opts.now ?? T0 + 10)
      const bodies = async (id: string) => (await store.readOutput(id, 0, 1000)).map((r) => new TextDecoder().decode(r.data))

      test("accepts chunks in order across uploads", async () => {
        await running("j1")
        expect(await append("j1", [out(1, "a"), out(2, "b")])).toMatchObject({ ok: true, finished: false })
        expect(await append("j1", [out(3, "c", "stderr")])).toMatchObject({ ok: true, finished: false })
        expect(await bodies("j1")).toEqual(["a", "b", "c"])
        expect((await store.getJob("j1"))?.updatedAt).toBe(T0 + 10)
      })

      test("ignores repeated sequence numbers, so a retried upload is idempotent", async () => {
        await running("j1")
        await append("j1", [out(1, "a"), out(2, "b")])
        expect(await append("j1", [out(1, "a"), out(2, "b")])).toMatchObject({ ok: true, finished: false })
        expect(await append("j1", [out(2, "B"), out(3, "c")])).toMatchObject({ ok: true })
        expect(await bodies("j1")).toEqual(["a", "b", "c"])
      })

      test.each([
        ["a skipped seq", [out(1, "a"), out(3, "c")], 2],
        ["a batch starting after the next seq", [out(2, "b")], 1],
        ["an out-of-order batch", [out(2, "b"), out(1, "a")], 1],
      ])("refuses %s as a gap, naming the expected seq and storing nothing", async (_name, chunks, expected) => {
        await running("j1")
        const res = await append("j1", chunks)
        expect(res).toMatchObject({ ok: false, reason: "gap", expected })
        expect(await bodies("j1")).toEqual([])
      })

      test("refuses a gap after earlier uploads with the next expected seq", async () => {
        await running("j1")
        await append("j1", [out(1, "a"), out(2, "b")])
        expect(await append("j1", [out(5, "e")])).toMatchObject({ ok: false, reason: "gap", expected: 3 })
        expect(await append("j1", [out(3, "c")], ok0)).toMatchObject({ ok: true, finished: true })
        expect(await bodies("j1")).toEqual(["a", "b", "c"])
      })

      test.each([
        ["an older epoch", { epoch: 0 }],
        ["a newer epoch", { epoch: 2 }],
        ["another worker", { worker: "w2" }],
      ])("refuses an upload from %s as stale", async (_name, opts) => {
        await running("j1")
        const res = await append("j1", [out(1, "x")], ok0, opts)
        expect(res).toMatchObject({ ok: false, reason: "stale" })
        expect(await store.getJob("j1")).toMatchObject({ status: "running", finishedAt: null })
        expect(await bodies("j1")).toEqual([])
      })

      test("refuses output for a job that was assigned but not started", async () => {
        await running("j1", "w1", false)
        expect(await append("j1", [out(1, "x")])).toMatchObject({ ok: false, reason: "stale" })
      })

      test("reports an unknown job as not-found", async () => {
        expect(await append("nope", [out(1, "x")])).toEqual({ ok: false, reason: "not-found" })
      })

      test.each<[string, ExitReport, Partial<Job>]>([
        ["exit code 0 completes the job", { code: 0, signal: null }, { status: "completed", exitCode: 0, exitSignal: null, error: null }],
        ["exit code 1 fails the job", { code: 1, signal: null }, { status: "failed", exitCode: 1, exitSignal: null, error: null }],
        ["a signal fails the job", { code: null, signal: "SIGKILL" }, { status: "failed", exitCode: null, exitSignal: "SIGKILL" }],
        ["a signal fails the job even with code 0", { code: 0, signal: "SIGTERM" }, { status: "failed", exitCode: 0, exitSignal: "SIGTERM" }],
        ["a worker error fails the job", { code: null, signal: null, error: "binary ffmpeg not found" }, { status: "failed", error: "binary ffmpeg not found" }],
      ])("%s", async (_name, exit, expected) => {
        await running("j1")
        const res = await append("j1", [out(1, "last")], exit, { now: T0 + 99 })
        expect(res.ok).toBe(true)
        expect(res).toMatchObject({ finished: true, job: { ...expected, finishedAt: T0 + 99 } })
        expect(await store.getJob("j1")).toMatchObject({ ...expected, finishedAt: T0 + 99, updatedAt: T0 + 99 })
        expect(await bodies("j1")).toEqual(["last"])
      })

      test("the job returned with the exit equals the stored job", async () => {
        await running("j1")
        const res = (await append("j1", [out(1, "x")], { code: 3, signal: null })) as Extract<UploadResult, { ok: true }>
        expect(res.job).toEqual((await store.getJob("j1"))!)
      })

      test("an exit with no chunks ends the job", async () => {
        await running("j1")
        expect(await append("j1", [], ok0)).toMatchObject({ ok: true, finished: true, job: { status: "completed" } })
      })

      test("a retried final upload after completion succeeds without storing anything twice", async () => {
        await running("j1")
        await append("j1", [out(1, "a")])
        await append("j1", [out(2, "b")], ok0)
        const retry = await append("j1", [out(2, "b")], ok0, { now: T0 + 50 })
        expect(retry).toMatchObject({ ok: true, finished: true, job: { status: "completed", finishedAt: T0 + 10 } })
        expect(await append("j1", [], ok0)).toMatchObject({ ok: true, finished: true })
        expect(await bodies("j1")).toEqual(["a", "b"])
      })

      test("new output after the job ended is refused as stale", async () => {
        await running("j1")
        await append("j1", [out(1, "a")], ok0)
        expect(await append("j1", [out(2, "late")])).toMatchObject({ ok: false, reason: "stale" })
        expect(await bodies("j1")).toEqual(["a"])
      })

      test("an empty upload without exit is accepted and changes nothing", async () => {
        await running("j1")
        expect(await append("j1", [])).toMatchObject({ ok: true, finished: false })
        expect((await store.getJob("j1"))?.updatedAt).toBe(T0 + 2)
      })
    })

    describe("readOutput", () => {
      test("returns rows in position order with their stream and exact bytes", async () => {
        await running("j1")
        const chunks: OutputChunk[] = []
        for (let seq = 1; seq <= 40; seq++) {
          const size = [0, 1, 255, 4096, 70_000][seq % 5]
          chunks.push(out(seq, randomBytes(size), seq % 3 ? "stdout" : "stderr"))
        }
        // Uploaded in several batches, as a worker would.
        for (let i = 0; i < chunks.length; i += 7) await store.appendOutput("j1", "w1", 1, chunks.slice(i, i + 7), undefined, T0)

        const rows = await store.readOutput("j1", 0, 1000)
        expect(rows).toHaveLength(40)
        for (let i = 1; i < rows.length; i++) expect(rows[i].pos).toBeGreaterThan(rows[i - 1].pos)
        rows.forEach((r, i) => {
          expect(r.stream).toBe(chunks[i].stream)
          expect(r.data).toBeInstanceOf(Uint8Array)
          expect(r.data.length).toBe(chunks[i].data.length)
          expect(same(r.data, chunks[i].data)).toBe(true)
        })
      })

      test("pages with after and limit", async () => {
        await running("j1")
        await store.appendOutput("j1", "w1", 1, [1, 2, 3, 4, 5].map((s) => out(s, `c${s}`)), undefined, T0)
        const all = await store.readOutput("j1", 0, 100)
        const page1 = await store.readOutput("j1", 0, 2)
        const page2 = await store.readOutput("j1", page1[1].pos, 2)
        const page3 = await store.readOutput("j1", page2[1].pos, 2)
        expect([...page1, ...page2, ...page3]).toEqual(all)
        expect(page3).toHaveLength(1)
        expect(await store.readOutput("j1", all[4].pos, 10)).toEqual([])
      })

      test("keeps the output of different jobs apart", async () => {
        await running("j1")
        await running("j2")
        await store.appendOutput("j1", "w1", 1, [out(1, "one")], undefined, T0)
        await store.appendOutput("j2", "w1", 1, [out(1, "two")], undefined, T0)
        expect((await store.readOutput("j1", 0, 10)).map((r) => new TextDecoder().decode(r.data))).toEqual(["one"])
        expect((await store.readOutput("j2", 0, 10)).map((r) => new TextDecoder().decode(r.data))).toEqual(["two"])
        expect(await store.readOutput("nope", 0, 10)).toEqual([])
      })
    })

    describe("input", () => {
      test("appendInput is idempotent by seq and readInput returns seq order with the end marker as null", async () => {
        await store.createJob(newJob("j1"), T0)
        const a = randomBytes(1000)
        const b = randomBytes(70_000)
        expect(await store.appendInput("j1", [{ seq: 2, data: b }, { seq: 1, data: a }])).toBe(true)
        // A retry repeats seq 2 with different bytes: the first write stays.
        expect(await store.appendInput("j1", [{ seq: 2, data: text("dup") }, { seq: 3 }])).toBe(true)
        expect(await store.appendInput("j1", [{ seq: 3 }])).toBe(true)

        const rows = await store.readInput("j1", 0, 100)
        expect(rows.map((r) => r.seq)).toEqual([1, 2, 3])
        expect(same(rows[0].data, a)).toBe(true)
        expect(same(rows[1].data, b)).toBe(true)
        expect(rows[2].data).toBeNull()
      })

      test("an empty chunk is stored as empty bytes, not as the end marker", async () => {
        await store.createJob(newJob("j1"), T0)
        await store.appendInput("j1", [{ seq: 1, data: new Uint8Array(0) }])
        const [row] = await store.readInput("j1", 0, 10)
        expect(row.data).not.toBeNull()
        expect(row.data).toHaveLength(0)
      })

      test("readInput pages with after and limit", async () => {
        await store.createJob(newJob("j1"), T0)
        await store.appendInput("j1", [1, 2, 3, 4].map((seq) => ({ seq, data: text(`s${seq}`) })))
        expect((await store.readInput("j1", 1, 2)).map((r) => r.seq)).toEqual([2, 3])
        expect((await store.readInput("j1", 4, 2)).map((r) => r.seq)).toEqual([])
      })

      test("appendInput refuses an unknown job and accepts an empty batch", async () => {
        expect(await store.appendInput("nope", [{ seq: 1, data: text("x") }])).toBe(false)
        await store.createJob(newJob("j1"), T0)
        expect(await store.appendInput("j1", [])).toBe(true)
        expect(await store.readInput("j1", 0, 10)).toEqual([])
      })
    })

    describe("failJob", () => {
      test.each([
        ["queued", async (_s: Store) => {}],
        [
          "assigned",
          async (s: Store) => {
            await s.assign("j1", "w1", T0)
          },
        ],
        [
          "running",
          async (s: Store) => {
            await s.assign("j1", "w1", T0)
            await s.start("j1", "w1", 1, T0)
          },
        ],
      ])("ends a %s job as failed with the reason", async (_status, prepare) => {
        await store.createJob(newJob("j1"), T0)
        await prepare(store)
        const failed = await store.failJob("j1", "worker refused the job", T0 + 7)
        expect(failed).toMatchObject({ status: "failed", error: "worker refused the job", finishedAt: T0 + 7, updatedAt: T0 + 7 })
        expect(await store.getJob("j1")).toEqual(failed!)
      })

      test.each<[string, ExitReport]>([
        ["completed", { code: 0, signal: null }],
        ["failed", { code: 2, signal: null }],
      ])("leaves a %s job alone and returns undefined", async (status, exit) => {
        await running("j1")
        await store.appendOutput("j1", "w1", 1, [], exit, T0 + 5)
        expect(await store.failJob("j1", "too late", T0 + 9)).toBeUndefined()
        expect(await store.getJob("j1")).toMatchObject({ status, error: null, finishedAt: T0 + 5 })
      })

      test("fails a job only once and ignores unknown jobs", async () => {
        await store.createJob(newJob("j1"), T0)
        expect(await store.failJob("j1", "first", T0)).toBeDefined()
        expect(await store.failJob("j1", "second", T0)).toBeUndefined()
        expect((await store.getJob("j1"))?.error).toBe("first")
        expect(await store.failJob("nope", "x", T0)).toBeUndefined()
      })
    })

    test("workerLoads counts assigned and running jobs per worker", async () => {
      await running("a1", "w1", false) // assigned
      await running("a2", "w1") // running
      await running("a3", "w1") // running, then completed
      await store.appendOutput("a3", "w1", 1, [], ok0, T0)
      await running("b1", "w2") // running, then failed
      await store.failJob("b1", "lost", T0)
      await running("b2", "w2", false) // assigned
      await store.createJob(newJob("q1"), T0) // queued, no worker

      const loads = await store.workerLoads()
      expect(Object.fromEntries(loads)).toEqual({ w1: 2, w2: 1 })
    })

    test("workerLoads is empty when nothing is assigned", async () => {
      await store.createJob(newJob("q1"), T0)
      expect((await store.workerLoads()).size).toBe(0)
    })
  })
}

testStore("sqlite :memory:", () => createSqliteStore({ path: ":memory:" }))
testStore("sqlite file", () => createSqliteStore({ path: tempPath() }))

describe("two sqlite store instances on one file (coordinator + admin CLI)", () => {
  let path: string
  let coordinator: Store
  let admin: Store

  beforeEach(async () => {
    path = tempPath()
    coordinator = createSqliteStore({ path })
    await coordinator.migrate()
    admin = createSqliteStore({ path })
    await admin.migrate()
  })
  afterEach(async () => {
    await admin.close()
    await coordinator.close()
  })

  test("both can write, and each sees the other's writes", async () => {
    await admin.addUser("alice", "client", KEY, T0)
    await coordinator.createJob(newJob("j1"), T0)
    await coordinator.assign("j1", "w1", T0)
    await coordinator.start("j1", "w1", 1, T0)
    await coordinator.appendOutput("j1", "w1", 1, [out(1, "hello")], undefined, T0)

    expect(await coordinator.getCredential("alice")).toMatchObject({ role: "client", key: KEY })
    expect((await admin.getJob("j1"))?.status).toBe("running")
    expect((await admin.readOutput("j1", 0, 10)).map((r) => new TextDecoder().decode(r.data))).toEqual(["hello"])

    // The admin cancels the job; the coordinator's next upload sees it ended.
    expect(await admin.failJob("j1", "canceled by admin", T0 + 1)).toMatchObject({ status: "failed" })
    expect(await coordinator.appendOutput("j1", "w1", 1, [out(2, "more")], undefined, T0 + 2)).toMatchObject({ ok: false, reason: "stale" })
    expect(await admin.removeUser("alice")).toBe(true)
    expect(await coordinator.getCredential("alice")).toBeUndefined()
  })

  test("a reopened file keeps its data", async () => {
    await coordinator.createJob(newJob("j1"), T0)
    await admin.addUser("bob", "admin", KEY, T0)
    const third = createSqliteStore({ path })
    try {
      await third.migrate()
      expect((await third.getJob("j1"))?.status).toBe("queued")
      expect((await third.listUsers()).map((u) => u.name)).toEqual(["bob"])
    } finally {
      await third.close()
    }
  })
})
