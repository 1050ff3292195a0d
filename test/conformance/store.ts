import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { ConflictError, IdentityInUseError } from "../../src/shared/errors.ts"
import { Kind } from "../../src/shared/protocol/frames.ts"
import { NO_NEEDS } from "../../src/shared/protocol/capabilities.ts"
import type { ExitReport, Job, WorkerRegistration } from "../../src/shared/protocol/schemas.ts"
import type { CoordinatorRow, NewJob, OutputChunk, Store, UploadResult } from "../../src/store/types.ts"
import { PRUNE_BATCH } from "../../src/store/sql/store.ts"
import { SCHEMA_VERSION } from "../../src/store/sql/migrations.ts"
import {
  EXIT_OK as ok0,
  mappedJob as newJob,
  outputChunk as out,
  registration,
  sameBytes as same,
  T0,
  TEST_KEY as KEY,
  bytes as text,
} from "../helpers/fixtures.ts"
import { rng } from "../helpers/rng.ts"

/**
 * The Store contract (src/store/types.ts) as tests: every engine's adapter runs this same suite,
 * `testStore("<engine>", open, peer)`, where `open` gives a fresh, empty store (the suite migrates and
 * closes it) and `peer`, when the engine has a second connection to give, another store on the database
 * `open` gave last (as a second coordinator has): the concurrency tests race several of them.
 */

const rand = rng(42)
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (rand() * 256) | 0
  return out
}

const reg = (over: Partial<WorkerRegistration> = {}): WorkerRegistration =>
  registration({ paths: ["Movies"], version: "1.0.0", capabilities: { gpu: false }, ...over })

export function testStore(name: string, open: () => Store | Promise<Store>, peer?: () => Store | Promise<Store>) {
  describe(`${name} store`, () => {
    let store: Store

    beforeEach(async () => {
      store = await open()
      await store.migrate()
    })
    afterEach(async () => {
      await store.close()
    })

    /**
     * `store.assign` to a worker registered first when it is not (an assignment takes one of a known
     * worker's slots: these have plenty, the capacity tests register their own).
     */
    const assign = async (id: string, worker: string, at: number, s: Store = store): Promise<Job | undefined> => {
      if (!(await s.getWorker(worker))) await s.upsertWorker(worker, reg({ maxJobs: 64, maxProbeJobs: 64 }), "tok", T0)
      return s.assign(id, worker, at)
    }

    /** A job assigned to `worker` (epoch 1) and, unless told otherwise, started. */
    const running = async (id: string, worker = "w1", start = true): Promise<Job> => {
      await store.createJob(newJob(id), T0)
      const assigned = await assign(id, worker, T0 + 1)
      if (!start) return assigned!
      return (await store.start(id, worker, assigned!.epoch, T0 + 2))!
    }

    test("ping is a round trip: it answers while the store is open and throws once it is closed", async () => {
      expect(await store.ping()).toBeUndefined()
      await store.close()
      await expect(store.ping()).rejects.toThrow()
    })

    test("clock: the database's time, within a second of this host's (the same machine)", async () => {
      const before = Date.now()
      const t = await store.clock()
      const after = Date.now()
      expect(typeof t).toBe("number")
      expect(t).toBeGreaterThan(before - 1000)
      expect(t).toBeLessThan(after + 1000)
    })

    describe("nonces", () => {
      test("a (client, nonce) pair is new once, a replay after; another client's same nonce is its own", async () => {
        expect(await store.rememberNonce("alice", "n".repeat(16), T0)).toBe(true)
        expect(await store.rememberNonce("alice", "n".repeat(16), T0 + 5)).toBe(false)
        expect(await store.rememberNonce("bob", "n".repeat(16), T0)).toBe(true)
        expect(await store.rememberNonce("alice", "m".repeat(64), T0)).toBe(true)
        // Byte for byte: a nonce differing only in case is another one (MySQL's default collation would not say so).
        expect(await store.rememberNonce("alice", "N".repeat(16), T0)).toBe(true)
      })

      test("pruneNonces deletes at most `limit` of those before the cutoff, oldest first", async () => {
        for (let i = 0; i < 7; i++)
          expect(await store.rememberNonce("c", `nonce-${i}`.padEnd(16, "x"), T0 + i)).toBe(true)
        expect(await store.pruneNonces(T0 + 5, 3)).toBe(3)
        // The oldest went: they are new again; the ones after the cutoff are still replays.
        expect(await store.rememberNonce("c", "nonce-0".padEnd(16, "x"), T0 + 100)).toBe(true)
        expect(await store.rememberNonce("c", "nonce-6".padEnd(16, "x"), T0 + 100)).toBe(false)
        expect(await store.pruneNonces(T0 + 5, 100)).toBe(2)
        expect(await store.rememberNonce("c", "nonce-4".padEnd(16, "x"), T0 + 100)).toBe(true)
        expect(await store.rememberNonce("c", "nonce-5".padEnd(16, "x"), T0 + 100)).toBe(false)
        expect(await store.pruneNonces(T0 + 5, 100)).toBe(0)
      })
    })

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
      test("a rotated key replaces the old one; getUser never shows the key", async () => {
        await store.addUser("bob", "client", KEY, T0)
        expect(await store.setUserKey("bob", "new-key")).toBe(true)
        expect(await store.getCredential("bob")).toMatchObject({ key: "new-key" })
        expect(await store.getUser("bob")).toEqual({ name: "bob", role: "client", createdAt: T0 })
        expect(await store.setUserKey("nobody", "k")).toBe(false)
        expect(await store.getUser("nobody")).toBeUndefined()
      })
    })

    describe("workers", () => {
      test("upsert registers once and later updates everything but registeredAt", async () => {
        const first = await store.upsertWorker("w1", reg(), "tok1", T0)
        expect(first).toEqual({
          id: "w1",
          binaries: ["ffmpeg"],
          paths: ["Movies"],
          maxJobs: 2,
          version: "1.0.0",
          capabilities: { gpu: false },
          tools: {},
          labels: {},
          weight: 1,
          maxProbeJobs: 4,
          pollClosedAt: null,
          status: "registering",
          registeredAt: T0,
          lastSeen: T0,
          drainRequested: false,
          instance: null,
          hostLoad: null,
        })
        expect(await store.verifyWorker("w1", "tok1", T0 + 5)).toBe(true)
        const again = await store.upsertWorker(
          "w1",
          reg({ binaries: ["ffmpeg", "ffprobe"], maxJobs: 4 }),
          "tok2",
          T0 + 10,
        )
        expect(again).toMatchObject({
          binaries: ["ffmpeg", "ffprobe"],
          maxJobs: 4,
          status: "online",
          registeredAt: T0,
          lastSeen: T0 + 10,
        })
        await store.touchWorker("w1", T0 + 20)
        expect((await store.getWorker("w1"))?.lastSeen).toBe(T0 + 20)
        expect((await store.listWorkers()).map((w) => w.id)).toEqual(["w1"])
        expect(await store.getWorker("w2")).toBeUndefined()
      })

      test("touchWorker records when the poll connection closed, and a new poll clears it", async () => {
        await store.upsertWorker("w1", reg(), "tok1", T0)
        await store.touchWorker("w1", T0 + 1, "closed")
        expect(await store.getWorker("w1")).toMatchObject({ lastSeen: T0 + 1, pollClosedAt: T0 + 1 })
        // A heartbeat alone says nothing about the poll connection.
        await store.touchWorker("w1", T0 + 2)
        expect(await store.getWorker("w1")).toMatchObject({ lastSeen: T0 + 2, pollClosedAt: T0 + 1 })
        await store.touchWorker("w1", T0 + 3, "open")
        expect(await store.getWorker("w1")).toMatchObject({ lastSeen: T0 + 3, pollClosedAt: null })
      })

      test("a poll close written late does not undo a poll opened since (on another coordinator)", async () => {
        await store.upsertWorker("w1", reg(), "tok1", T0)
        await store.touchWorker("w1", T0 + 5, "open")
        // The close of a poll that ended at T0 + 4, recorded after the worker's next poll opened.
        await store.touchWorker("w1", T0 + 4, "closed")
        expect(await store.getWorker("w1")).toMatchObject({ lastSeen: T0 + 5, pollClosedAt: null })
        await store.touchWorker("w1", T0 + 6, "closed")
        expect(await store.getWorker("w1")).toMatchObject({ lastSeen: T0 + 6, pollClosedAt: T0 + 6 })
      })
    })

    describe("one identity, one worker", () => {
      const A = { id: "01J0000000000000000000000A", host: "host-a", pid: 11 }
      const B = { id: "01J0000000000000000000000B", host: "host-b", pid: 22 }
      const live = { quietMs: 1000, staleMs: 10_000 }
      const refused = async (p: Promise<unknown>) => {
        const err = await p.then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(err).toBeInstanceOf(IdentityInUseError)
        return err as IdentityInUseError
      }

      test("a second live process is refused, naming the first; its stop leaves the first serving", async () => {
        await store.upsertWorker("w1", reg({ instance: A }), "tokA", T0, undefined, live)
        expect(await store.verifyWorker("w1", "tokA", T0 + 1)).toBe(true)
        await store.touchWorker("w1", T0 + 2, "open")
        // Its poll is open: live until staleMs without a word, whatever quietMs says.
        const err = await refused(store.upsertWorker("w1", reg({ instance: B }), "tokB", T0 + 5000, undefined, live))
        expect(err.message).toContain("host-a")
        expect(err.message).toContain(A.id)
        expect(err.details).toMatchObject({ identity: "w1", instance: A.id, host: "host-a", pid: 11, pollOpen: true })
        expect((err.details as { retryAfterSeconds: number }).retryAfterSeconds).toBe(6)
        // The refused one's stop: nothing changes for the one serving.
        expect(await store.setWorkerStatus("w1", "offline", T0 + 5001, B.id)).toBe(false)
        const w = await store.getWorker("w1")
        expect(w).toMatchObject({ status: "online", instance: A, lastSeen: T0 + 2 })
        expect(await store.workerToken("w1")).toBeUndefined()
        // The same process registering again keeps its state.
        expect(await store.upsertWorker("w1", reg({ instance: A }), "t", T0 + 6000, undefined, live)).toMatchObject({
          status: "online",
          instance: A,
        })
        // Its own stop does deregister it.
        expect(await store.setWorkerStatus("w1", "offline", T0 + 6001, A.id)).toBe(true)
        expect((await store.getWorker("w1"))?.status).toBe("offline")
      })

      test("a process gone takes over: quiet with its poll closed, silent past staleMs, or offline", async () => {
        await store.upsertWorker("w1", reg({ instance: A }), "tokA", T0, undefined, live)
        await store.verifyWorker("w1", "tokA", T0)
        // Killed: its poll connection closed at T0 + 100, nothing heard since.
        await store.touchWorker("w1", T0 + 100, "closed")
        const err = await refused(store.upsertWorker("w1", reg({ instance: B }), "tokB", T0 + 600, undefined, live))
        expect(err.details).toMatchObject({ pollOpen: false, pollClosedAt: T0 + 100, lastSeen: T0 + 100 })
        const took = await store.upsertWorker("w1", reg({ instance: B }), "tokB", T0 + 1101, undefined, live)
        // A new process proves its channel again, with its own token.
        expect(took).toMatchObject({ status: "registering", instance: B })
        expect(await store.workerToken("w1")).toBe("tokB")
        expect(await store.verifyWorker("w1", "tokB", T0 + 1102)).toBe(true)
        // Silent past staleMs, its poll still counted open (a broker's lease not yet expired).
        await store.touchWorker("w1", T0 + 2000, "open")
        await refused(store.upsertWorker("w1", reg({ instance: A }), "t", T0 + 12_000, undefined, live))
        expect(await store.upsertWorker("w1", reg({ instance: A }), "t2", T0 + 12_001, undefined, live)).toMatchObject({
          instance: A,
          status: "registering",
        })
        // Offline (stopped, or reaped): anyone with the identity's key may register.
        await store.setWorkerStatus("w1", "offline", T0 + 12_002)
        expect(await store.upsertWorker("w1", reg({ instance: B }), "t3", T0 + 12_003, undefined, live)).toMatchObject({
          instance: B,
        })
      })

      test("a worker that sends no instance is not checked (older workers)", async () => {
        await store.upsertWorker("w1", reg({ instance: A }), "tokA", T0, undefined, live)
        await store.verifyWorker("w1", "tokA", T0)
        expect(await store.upsertWorker("w1", reg(), "t", T0 + 1, undefined, live)).toMatchObject({ status: "online" })
      })

      test("a heartbeat stores the host load it carries; one without keeps the last", async () => {
        await store.upsertWorker("w1", reg(), "tok", T0)
        const load = {
          at: "2026-12-03T10:00:00.000Z",
          cpuPercent: 12.5,
          load1: 0.75,
          cpus: 8,
          memUsedBytes: 4 * 2 ** 30,
          memTotalBytes: 16 * 2 ** 30,
          gpus: [
            { name: "NVIDIA GeForce RTX 3060", utilPercent: 40, memUsedBytes: 2 ** 30, memTotalBytes: 12 * 2 ** 30 },
          ],
        }
        await store.heartbeat("w1", [], T0 + 1, load)
        expect((await store.getWorker("w1"))?.hostLoad).toEqual(load)
        await store.heartbeat("w1", [], T0 + 2)
        expect(await store.getWorker("w1")).toMatchObject({ hostLoad: load, lastSeen: T0 + 2 })
        expect((await store.listWorkers())[0].hostLoad).toEqual(load)
      })
    })

    describe("operator views", () => {
      test("an administrator's drain is sticky across re-registration and verification, and undrain restores", async () => {
        await store.upsertWorker("w1", reg(), "t1", T0)
        await store.verifyWorker("w1", "t1", T0 + 1)
        expect(await store.requestDrain("w1", true, T0 + 2)).toMatchObject({ status: "draining", drainRequested: true })
        // The worker re-registers without knowing: it stays draining.
        expect(await store.upsertWorker("w1", reg(), "t2", T0 + 3)).toMatchObject({ status: "draining" })
        // Offline, then back: it must verify again, and comes back draining.
        await store.reapWorkers(T0 + 10)
        expect(await store.upsertWorker("w1", reg(), "t3", T0 + 11)).toMatchObject({
          status: "registering",
          drainRequested: true,
        })
        expect(await store.verifyWorker("w1", "t3", T0 + 12)).toBe(true)
        expect(await store.getWorker("w1")).toMatchObject({ status: "draining" })
        expect(await store.requestDrain("w1", false, T0 + 13)).toMatchObject({
          status: "online",
          drainRequested: false,
        })
        expect(await store.upsertWorker("w1", reg(), "t4", T0 + 14)).toMatchObject({ status: "online" })
        // A worker draining on its own (shutting down) is not revived by an administrator's undrain.
        await store.requestDrain("w1", true, T0 + 15)
        expect(await store.upsertWorker("w1", reg({ draining: true }), "t5", T0 + 16)).toMatchObject({
          status: "draining",
        })
        expect(await store.requestDrain("w1", false, T0 + 17)).toMatchObject({
          status: "draining",
          drainRequested: false,
        })
        expect(await store.requestDrain("nope", true, T0)).toBeUndefined()
      })

      test("stats count jobs and workers by state, queue age and slots", async () => {
        const empty = await store.stats()
        expect(empty).toEqual({
          jobs: { queued: 0, assigned: 0, running: 0, completed: 0, failed: 0, canceled: 0 },
          oldestQueuedAt: null,
          workers: { registering: 0, online: 0, draining: 0, offline: 0 },
          slots: { used: 0, total: 0 },
        })
        await store.upsertWorker("w1", reg({ maxJobs: 3 }), "t", T0)
        await store.verifyWorker("w1", "t", T0)
        await store.upsertWorker("w2", reg({ maxJobs: 5 }), "t", T0)
        await store.createJob(newJob("q1"), T0 + 5)
        await store.createJob(newJob("q2"), T0 + 7)
        await running("r1")
        await store.createJob(newJob("c1"), T0)
        await store.requestCancel("c1", "x", T0 + 1)
        const st = await store.stats()
        expect(st.jobs).toEqual({ queued: 2, assigned: 0, running: 1, completed: 0, failed: 0, canceled: 1 })
        expect(st.oldestQueuedAt).toBe(T0 + 5)
        expect(st.workers).toEqual({ registering: 1, online: 1, draining: 0, offline: 0 })
        expect(st.slots).toEqual({ used: 1, total: 3 })
      })

      test("lastOutput returns a stream's last chunks oldest first", async () => {
        await running("j1")
        await store.appendOutput(
          "j1",
          "w1",
          1,
          [out(1, "a", "stderr"), out(2, "x"), out(3, "b", "stderr"), out(4, "c", "stderr")],
          undefined,
          T0 + 3,
        )
        const tail = await store.lastOutput("j1", "stderr", 2)
        expect(tail.map((r) => new TextDecoder().decode(r.data))).toEqual(["b", "c"])
        expect((await store.lastOutput("j1", "stdout", 10)).length).toBe(1)
        expect(await store.lastOutput("none", "stderr", 10)).toEqual([])
      })

      test("lastOutputBytes keeps whole chunks within the byte cap and only the end of the one across it", async () => {
        await running("j1")
        await store.appendOutput(
          "j1",
          "w1",
          1,
          [out(1, "aaaa\n", "stderr"), out(2, "x".repeat(100)), out(3, "bbbbbb\n", "stderr"), out(4, "cc\n", "stderr")],
          undefined,
          T0 + 3,
        )
        const dec = (rows: { data: Uint8Array }[]) => rows.map((r) => new TextDecoder().decode(r.data))
        const whole = await store.lastOutputBytes("j1", "stderr", 10, 1000)
        expect({ data: dec(whole.rows), truncated: whole.truncated }).toEqual({
          data: ["aaaa\n", "bbbbbb\n", "cc\n"],
          truncated: false,
        })
        const cut = await store.lastOutputBytes("j1", "stderr", 10, 6)
        expect({ data: dec(cut.rows), truncated: cut.truncated }).toEqual({ data: ["bb\n", "cc\n"], truncated: true })
        expect(cut.rows.map((r) => r.stream)).toEqual(["stderr", "stderr"])
        // A cap that ends exactly at a chunk boundary drops the older chunks without an empty piece.
        const edge = await store.lastOutputBytes("j1", "stderr", 10, 10)
        expect({ data: dec(edge.rows), truncated: edge.truncated }).toEqual({
          data: ["bbbbbb\n", "cc\n"],
          truncated: true,
        })
        // The chunk limit still applies, and is not a byte truncation.
        expect(await store.lastOutputBytes("j1", "stderr", 1, 1000)).toMatchObject({
          truncated: false,
          rows: [{ data: text("cc\n") }],
        })
        expect(await store.lastOutputBytes("none", "stderr", 10, 1000)).toEqual({ rows: [], truncated: false })
      })

      test("activeJobCounts counts one requester's queued, assigned and running jobs", async () => {
        await store.createJob(newJob("q1"), T0)
        await store.createJob(newJob("q2"), T0)
        await store.createJob(newJob("b1", { requester: "bob" }), T0)
        await running("r1")
        await running("a1", "w2", false)
        await store.createJob(newJob("c1"), T0)
        await store.requestCancel("c1", "x", T0 + 1)
        expect(await store.activeJobCounts("alice")).toEqual({ queued: 2, assigned: 1, running: 1 })
        expect(await store.activeJobCounts("bob")).toEqual({ queued: 1, assigned: 0, running: 0 })
        expect(await store.activeJobCounts("nobody")).toEqual({ queued: 0, assigned: 0, running: 0 })
      })

      test("inputBytes sums stored stdin bytes only and reports the last sequence number", async () => {
        await store.createJob(newJob("j1"), T0)
        expect(await store.inputBytes("j1")).toEqual({ bytes: 0, lastSeq: 0 })
        await store.appendInput("j1", [
          { seq: 1, kind: Kind.stdin, data: randomBytes(1000) },
          { seq: 2, kind: Kind.signal, data: text("SIGINT") },
          { seq: 3, kind: Kind.stdin, data: randomBytes(24) },
        ])
        // A repeated sequence number is stored once.
        await store.appendInput("j1", [
          { seq: 3, kind: Kind.stdin, data: randomBytes(24) },
          { seq: 4, kind: Kind.stdinEnd, data: new Uint8Array(0) },
        ])
        expect(await store.inputBytes("j1")).toEqual({ bytes: 1024, lastSeq: 4 })
        expect(await store.inputBytes("none")).toEqual({ bytes: 0, lastSeq: 0 })
      })

      test("progress is stored with output (even without new bytes), kept at the end and cleared on a new attempt", async () => {
        await store.createJob(newJob("j1", { retries: 1 }), T0)
        await assign("j1", "w1", T0 + 1)
        await store.start("j1", "w1", 1, T0 + 2)
        const p = { timeMs: 5000, durationMs: 10000, percent: 50, speed: 2, fps: 50, frame: 250, etaMs: 2500 }
        await store.appendOutput("j1", "w1", 1, [], undefined, T0 + 3, p)
        expect((await store.getJob("j1"))?.progress).toEqual({ ...p, at: T0 + 3 })
        // A stale attempt's progress is refused with its output.
        expect(await store.appendOutput("j1", "w9", 1, [], undefined, T0 + 4, { ...p, percent: 99 })).toMatchObject({
          ok: false,
        })
        expect((await store.getJob("j1"))?.progress?.percent).toBe(50)
        // Lost and re-queued: the next attempt starts from nothing.
        await store.loseJob("j1", 1, "gone", T0 + 5)
        expect(await store.getJob("j1")).toMatchObject({ status: "queued", progress: null })
        await assign("j1", "w2", T0 + 6)
        await store.start("j1", "w2", 2, T0 + 7)
        await store.appendOutput("j1", "w2", 2, [], { code: 0, signal: null }, T0 + 8, {
          ...p,
          timeMs: 10000,
          percent: 100,
          etaMs: 0,
        })
        expect(await store.getJob("j1")).toMatchObject({ status: "completed", progress: { percent: 100, at: T0 + 8 } })
      })

      test("listJobs filters by several states and pages newest first by id", async () => {
        for (const id of ["j1", "j2", "j3", "j4"]) await store.createJob(newJob(id), T0)
        await store.requestCancel("j2", "x", T0)
        expect((await store.listJobs({ statuses: ["queued"] })).map((j) => j.id)).toEqual(["j4", "j3", "j1"])
        expect(
          (await store.listJobs({ statuses: ["queued", "canceled"], before: "j3", limit: 1 })).map((j) => j.id),
        ).toEqual(["j2"])
        expect(await store.listJobs({ statuses: [] })).toEqual([])
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
          env: {},
          files: [],
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
          attached: false,
          pathTokens: false,
          retries: 0,
          attempts: 0,
          excluded: [],
          heartbeatAt: null,
          clientSeenAt: null,
          cancelRequestedAt: null,
          progress: null,
          lane: "transcode",
          priority: "normal",
          needs: NO_NEEDS,
          pin: null,
          queueKey: T0,
          barred: [],
        }
        expect(created).toEqual(expected)
        expect(await store.getJob("j1")).toEqual(expected)
        expect(await store.getJob("nope")).toBeUndefined()
      })

      test("a job's pathTokens is stored and read back, in summaries too (the scheduler's eligibility reads it)", async () => {
        await store.createJob(newJob("j1", { pathTokens: true }), T0)
        await store.createJob(newJob("j2"), T0)
        expect((await store.getJob("j1"))?.pathTokens).toBe(true)
        expect((await store.getJob("j2"))?.pathTokens).toBe(false)
        const queued = await store.queuedSince(T0 + 1)
        expect(Object.fromEntries(queued.map((j) => [j.id, j.pathTokens]))).toEqual({ j1: true, j2: false })
      })

      test("a job's environment is stored as given and read back by getJob, listings, summaries and assignments", async () => {
        const env = { FFREPORT: "file=$Movies/r.log:level=32", LC_ALL: "C.UTF-8", TZ: "" }
        await store.createJob(newJob("j1", { env }), T0)
        await store.createJob(newJob("j2"), T0)
        expect((await store.getJob("j1"))?.env).toEqual(env)
        expect((await store.getJob("j2"))?.env).toEqual({})
        expect((await store.listJobs({})).map((j) => j.env)).toEqual([{}, env])
        expect((await store.getJobSummary("j1"))?.env).toEqual(env)
        await assign("j1", "w1", T0)
        expect((await store.assignedTo("w1")).map((j) => j.env)).toEqual([env])
      })

      test("a job's files are stored apart and read back with the whole job and its assignment, not in summaries", async () => {
        const files = [{ arg: 3, content: "file '$Movies/a.ts'\nduration 2\n" }]
        await store.createJob(newJob("j1", { files }), T0)
        await store.createJob(newJob("j2"), T0)
        expect((await store.getJob("j1"))?.files).toEqual(files)
        expect((await store.getJob("j2"))?.files).toEqual([])
        expect((await store.getJobSummary("j1"))?.files).toEqual([])
        await assign("j1", "w1", T0)
        expect((await store.assignedTo("w1")).map((j) => j.files)).toEqual([files])
      })

      test("values as large as the coordinator's limits admit are stored whole (MySQL's TEXT holds 64 KiB)", async () => {
        // limits.max_args_bytes defaults to 256 KiB (up to 64 MiB); concat lists take up to 4 MiB a job;
        // a worker's tools may name 4096 encoders, decoders, filters... each.
        const long = (n: number, seed: string) => Array.from({ length: n }, (_, i) => `${seed}${i}`).join(",")
        const args = ["-i", "$Movies/a.mkv", "-af", `volume=1:precision=${long(40_000, "x")}`, "-f", "null", "-"]
        const env = { FFREPORT: `file=$Movies/${long(15_000, "r")}.log` }
        const files = [{ arg: 1, content: long(120_000, "file '$Movies/a.ts'\n") }]
        expect(JSON.stringify(args).length).toBeGreaterThan(200_000)
        expect(files[0].content.length).toBeGreaterThan(2_000_000)
        await store.createJob(newJob("j1", { args, env, files }), T0)
        const job = await store.getJob("j1")
        expect(job?.args).toEqual(args)
        expect(job?.env).toEqual(env)
        expect(job?.files).toEqual(files)
        const names = (prefix: string) => Array.from({ length: 4096 }, (_, i) => `${prefix}_${i}`)
        const ffmpeg = {
          version: "7.1",
          encoders: names("enc"),
          decoders: names("dec"),
          hwaccels: [],
          hwDevices: [],
          filters: names("filter"),
          muxers: names("mux"),
          demuxers: names("demux"),
        }
        await store.upsertWorker("w1", reg({ tools: { ffmpeg, ffprobe: ffmpeg } }), "tok1", T0)
        expect((await store.getWorker("w1"))?.tools).toEqual({ ffmpeg, ffprobe: ffmpeg })
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
        await assign("j3", "w1", T0)
        await assign("j2", "w2", T0)

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

      test("queuedJobs lists only queued jobs, oldest id first", async () => {
        for (const id of ["j3", "j1", "j4", "j2"]) await store.createJob(newJob(id), T0)
        await assign("j1", "w1", T0)
        expect((await store.queuedJobs(10)).map((j) => j.id)).toEqual(["j2", "j3", "j4"])
      })

      test("queuedJobs returns at most `limit` jobs", async () => {
        for (const id of ["j3", "j1", "j4", "j2"]) await store.createJob(newJob(id), T0)
        expect((await store.queuedJobs(2)).map((j) => j.id)).toEqual(["j1", "j2"])
      })

      test("queuedJobs orders by queue key then id, per lane, and pages after a cursor", async () => {
        // A job's queue key defaults to its submission time; a priority's head start lowers it.
        await store.createJob(newJob("a", { queueKey: T0 + 50 }), T0)
        await store.createJob(newJob("b"), T0 + 10)
        await store.createJob(newJob("c", { queueKey: T0 + 10 }), T0 + 20)
        await store.createJob(newJob("p", { lane: "probe" }), T0 + 30)
        const ids = (jobs: { id: string }[]) => jobs.map((j) => j.id)
        expect(ids(await store.queuedJobs(10))).toEqual(["b", "c", "p", "a"])
        expect(ids(await store.queuedJobs(10, undefined, "transcode"))).toEqual(["b", "c", "a"])
        expect(ids(await store.queuedJobs(10, undefined, "probe"))).toEqual(["p"])
        const [first] = await store.queuedJobs(1, undefined, "transcode")
        expect(first.queueKey).toBe(T0 + 10)
        expect(ids(await store.queuedJobs(10, { key: first.queueKey, id: first.id }, "transcode"))).toEqual(["c", "a"])
        expect(ids(await store.queuedJobs(10, { key: T0 + 10, id: "c" }, "transcode"))).toEqual(["a"])
      })

      test("createJob of an attached job records the caller as seen, with its retries", async () => {
        const job = await store.createJob(newJob("j1", { attached: true, retries: 3 }), T0)
        expect(job).toMatchObject({
          attached: true,
          retries: 3,
          attempts: 0,
          clientSeenAt: T0,
          cancelRequestedAt: null,
          heartbeatAt: null,
        })
        await store.touchClient("j1", T0 + 50)
        expect((await store.getJob("j1"))?.clientSeenAt).toBe(T0 + 50)
      })
    })

    describe("assign and start", () => {
      test("assign is a guarded transition: the first wins, a second returns undefined", async () => {
        await store.createJob(newJob("j1"), T0)
        const first = await assign("j1", "w1", T0 + 5)
        expect(first).toMatchObject({
          status: "assigned",
          workerId: "w1",
          epoch: 1,
          assignedAt: T0 + 5,
          updatedAt: T0 + 5,
        })
        expect(await assign("j1", "w2", T0 + 6)).toBeUndefined()
        expect(await store.getJob("j1")).toMatchObject({ workerId: "w1", epoch: 1 })
        expect(await assign("missing", "w1", T0)).toBeUndefined()
      })

      test("concurrent assigns of one job give it to exactly one worker", async () => {
        await store.createJob(newJob("j1"), T0)
        const results = await Promise.all(["w1", "w2", "w3", "w4"].map((w) => assign("j1", w, T0)))
        const winners = results.filter((r) => r !== undefined)
        expect(winners).toHaveLength(1)
        expect((await store.getJob("j1"))?.epoch).toBe(1)
      })

      test("assignedTo lists the worker's assigned, not yet started jobs", async () => {
        for (const id of ["j1", "j2", "j3"]) await store.createJob(newJob(id), T0)
        await assign("j2", "w1", T0)
        await assign("j1", "w1", T0)
        await assign("j3", "w2", T0)
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
        expect(await store.start("j1", "w1", 1, T0 + 3)).toMatchObject({
          status: "running",
          startedAt: T0 + 3,
          updatedAt: T0 + 3,
        })
        expect(await store.start("j1", "w1", 1, T0 + 4)).toBeUndefined()
      })

      test("start refuses a queued job", async () => {
        await store.createJob(newJob("j1"), T0)
        expect(await store.start("j1", "w1", 0, T0)).toBeUndefined()
      })

      test("start records the worker's note (its profile's rewrites) in the timeline", async () => {
        await running("j1", "w1", false)
        await store.start("j1", "w1", 1, T0 + 3, "profile: h264_nvenc -> h264_qsv")
        expect((await store.events("j1")).at(-1)).toMatchObject({
          status: "running",
          workerId: "w1",
          reason: "profile: h264_nvenc -> h264_qsv",
        })
      })
    })

    describe("createAnswered", () => {
      test("a job ended at once with its answer's output and exit code, never assigned", async () => {
        const job = await store.createAnswered(
          newJob("j1", { lane: "probe", pin: "w1" }),
          {
            rows: [
              { stream: "stdout", data: text("ffmpeg version 5.1\n") },
              { stream: "stderr", data: text("e") },
            ],
            code: 0,
          },
          "answered from the info cache: ffmpeg 5.1 of worker w1",
          T0,
        )
        expect(job).toMatchObject({
          status: "completed",
          exitCode: 0,
          epoch: 0,
          workerId: null,
          finishedAt: T0,
          error: null,
        })
        expect(job.pin).toBe("w1")
        const rows = await store.readOutput("j1", 0, 10)
        expect(rows.map((r) => r.stream)).toEqual(["stdout", "stderr"])
        expect(same(rows[0]!.data, text("ffmpeg version 5.1\n"))).toBe(true)
        expect((await store.events("j1")).map((e) => [e.status, e.reason])).toEqual([
          ["queued", null],
          ["completed", "answered from the info cache: ffmpeg 5.1 of worker w1"],
        ])
        expect(await store.queuedJobs(10)).toEqual([])
      })

      test("a non-zero exit code ends it failed; an empty answer stores no rows", async () => {
        const job = await store.createAnswered(
          newJob("j1"),
          { rows: [{ stream: "stdout", data: new Uint8Array() }], code: 1 },
          "cached",
          T0,
        )
        expect(job).toMatchObject({ status: "failed", exitCode: 1 })
        expect(await store.readOutput("j1", 0, 10)).toEqual([])
      })

      test("answerJob ends a queued job never assigned with the answer; one assigned meanwhile is left to run", async () => {
        await store.createJob(newJob("j1"), T0)
        await store.createJob(newJob("j2"), T0)
        await assign("j2", "w1", T0 + 1)
        const answer = { rows: [{ stream: "stdout" as const, data: text("v\n") }], code: 0 }
        expect(await store.answerJob("j1", answer, "answered with job j0's answer", T0 + 2)).toMatchObject({
          status: "completed",
          exitCode: 0,
          finishedAt: T0 + 2,
        })
        expect(same((await store.readOutput("j1", 0, 10))[0]!.data, text("v\n"))).toBe(true)
        expect((await store.events("j1")).at(-1)?.reason).toBe("answered with job j0's answer")
        expect(await store.answerJob("j2", answer, "late", T0 + 2)).toBeUndefined()
        expect((await store.getJob("j2"))!.status).toBe("assigned")
        expect(await store.readOutput("j2", 0, 10)).toEqual([])
        expect(await store.answerJob("j1", answer, "twice", T0 + 3)).toBeUndefined()
        expect(await store.answerJob("nope", answer, "unknown", T0 + 3)).toBeUndefined()
      })

      test("reports the submission, the output and the end to listeners", async () => {
        const seen: string[] = []
        store.changes((c) => seen.push(c.type === "job" ? `job:${c.to}` : c.type))
        await store.createAnswered(
          newJob("j1"),
          { rows: [{ stream: "stdout", data: text("x") }], code: 0 },
          "cached",
          T0,
        )
        expect(seen).toEqual(["job:queued", "job:completed", "output"])
      })
    })

    describe("appendOutput", () => {
      const append = (
        id: string,
        chunks: OutputChunk[],
        exit?: ExitReport,
        opts: { worker?: string; epoch?: number; now?: number } = {},
      ) => store.appendOutput(id, opts.worker ?? "w1", opts.epoch ?? 1, chunks, exit, opts.now ?? T0 + 10)
      const bodies = async (id: string) =>
        (await store.readOutput(id, 0, 1000)).map((r) => new TextDecoder().decode(r.data))

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
        [
          "exit code 0 completes the job",
          { code: 0, signal: null },
          { status: "completed", exitCode: 0, exitSignal: null, error: null },
        ],
        [
          "exit code 1 fails the job",
          { code: 1, signal: null },
          { status: "failed", exitCode: 1, exitSignal: null, error: null },
        ],
        [
          "a signal fails the job",
          { code: null, signal: "SIGKILL" },
          { status: "failed", exitCode: null, exitSignal: "SIGKILL" },
        ],
        [
          "a signal fails the job even with code 0",
          { code: 0, signal: "SIGTERM" },
          { status: "failed", exitCode: 0, exitSignal: "SIGTERM" },
        ],
        [
          "a worker error fails the job",
          { code: null, signal: null, error: "binary ffmpeg not found" },
          { status: "failed", error: "binary ffmpeg not found" },
        ],
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
        const res = (await append("j1", [out(1, "x")], { code: 3, signal: null })) as Extract<
          UploadResult,
          { ok: true }
        >
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
        for (let i = 0; i < chunks.length; i += 7)
          await store.appendOutput("j1", "w1", 1, chunks.slice(i, i + 7), undefined, T0)

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
        await store.appendOutput(
          "j1",
          "w1",
          1,
          [1, 2, 3, 4, 5].map((s) => out(s, `c${s}`)),
          undefined,
          T0,
        )
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

    describe("bounded output: window, acknowledgements, stderr tail, detached cap", () => {
      const B = { windowBytes: 10, stderrTailBytes: 4, detachedBytes: 10 }
      const started = async (id: string, attached: boolean) => {
        await store.createJob(newJob(id, { attached }), T0)
        const a = await assign(id, "w1", T0 + 1)
        await store.start(id, "w1", a!.epoch, T0 + 2)
      }
      const put = (id: string, chunks: OutputChunk[], exit?: ExitReport) =>
        store.appendOutput(id, "w1", 1, chunks, exit, T0 + 10, undefined, B)
      const stored = async (id: string) =>
        (await store.readOutput(id, 0, 1000)).map((r) => `${r.stream[3]}:${new TextDecoder().decode(r.data)}`)

      test("an attached job's upload that would overfill its window is refused and stores nothing; an ack makes room", async () => {
        await started("j1", true)
        expect(await put("j1", [out(1, "aaaaaa")])).toMatchObject({ ok: true })
        expect(await put("j1", [out(2, "bbbbb")])).toMatchObject({ ok: false, reason: "window-full" })
        expect(await stored("j1")).toEqual(["o:aaaaaa"])
        const [row] = await store.readOutput("j1", 0, 10)
        expect(await store.ackOutput("j1", row.pos, B.stderrTailBytes)).toBe(row.pos)
        // The same batch again: its sequence number was never taken, so nothing is lost or doubled.
        expect(await put("j1", [out(2, "bbbbb")], ok0)).toMatchObject({ ok: true, finished: true })
        expect(await stored("j1")).toEqual(["o:bbbbb"])
        expect((await store.getJob("j1"))?.status).toBe("completed")
      })

      test("a job being stopped is never held behind its full window: its stdout is dropped, its end stored", async () => {
        await started("j1", true)
        await put("j1", [out(1, "aaaaaa")])
        expect(await put("j1", [out(2, "bbbbb")])).toMatchObject({ ok: false, reason: "window-full" })
        await store.requestCancel("j1", "the caller went away", T0 + 20)
        const killed = { code: null, signal: "SIGKILL" }
        expect(await put("j1", [out(2, "bbbbb"), out(3, "bye", "stderr")], killed)).toMatchObject({ ok: true })
        expect(await stored("j1")).toEqual(["o:aaaaaa", "e:bye"])
        expect((await store.getJob("j1"))?.status).toBe("canceled")
      })

      test("an empty window takes an upload larger than the window (the body cap bounds it)", async () => {
        await started("j1", true)
        expect(await put("j1", [out(1, "x".repeat(25))])).toMatchObject({ ok: true })
        expect(await put("j1", [out(2, "y")])).toMatchObject({ ok: false, reason: "window-full" })
      })

      test("an ack deletes stdout up to it and keeps the newest stderr as a tail; unacknowledged rows stay", async () => {
        await started("j1", true)
        await put("j1", [out(1, "o1"), out(2, "e1", "stderr"), out(3, "e2", "stderr")])
        await put("j1", [out(4, "e3", "stderr"), out(5, "o2")])
        const rows = await store.readOutput("j1", 0, 10)
        const seen: string[] = []
        const stop = store.changes((c) => seen.push(c.type))
        expect(await store.ackOutput("j1", rows[3].pos, B.stderrTailBytes)).toBe(rows[3].pos)
        stop()
        expect(seen).toEqual(["acked"])
        // e1 is older than the 4-byte tail (e2, e3); o2 is not acknowledged yet.
        expect(await stored("j1")).toEqual(["e:e2", "e:e3", "o:o2"])
        // Resuming after the last acknowledged position is gapless.
        expect((await store.readOutput("j1", rows[3].pos, 10)).map((r) => r.pos)).toEqual([rows[4].pos])
      })

      test("an ack never reaches past what is stored, never goes back, and is refused for nothing unknown", async () => {
        await started("j1", true)
        await put("j1", [out(1, "a")])
        const [row] = await store.readOutput("j1", 0, 10)
        expect(await store.ackOutput("j1", row.pos + 1_000_000, 4)).toBe(row.pos)
        await put("j1", [out(2, "b")])
        // Written after the ack: a later position, not acknowledged.
        expect(await stored("j1")).toEqual(["o:b"])
        expect(await store.ackOutput("j1", 0, 4)).toBe(row.pos)
        expect(await store.ackOutput("nope", 5, 4)).toBeUndefined()
      })

      test("a detached job is never refused: past its cap stdout is dropped behind a marker, stderr kept as its tail", async () => {
        await started("j1", false)
        expect(await put("j1", [out(1, "12345678"), out(2, "e", "stderr")])).toMatchObject({ ok: true })
        expect(await put("j1", [out(3, "abc"), out(4, "e2", "stderr"), out(5, "defg")])).toMatchObject({ ok: true })
        expect(await put("j1", [out(6, "x", "stderr"), out(7, "y", "stderr"), out(8, "z", "stderr")])).toMatchObject({
          ok: true,
        })
        const marker = (n?: number) =>
          n === undefined
            ? "dffmpeg: output truncated: the job's stored output reached relay.detached_output_mb (10 bytes); later stdout is dropped\n"
            : `dffmpeg: output truncated: ${n} bytes of stdout dropped past relay.detached_output_mb (10 bytes)\n`
        // Stderr after the marker keeps its newest rows within the 4-byte tail (the marker itself stays).
        // Stdout is kept to the cap's exact byte ("a" of "abc").
        expect(await stored("j1")).toEqual(["o:12345678", "e:e", "o:a", `e:${marker()}`, "e:x", "e:y", "e:z"])
        expect(await ackIgnored("j1")).toBe(true)
        expect(await put("j1", [], ok0)).toMatchObject({ ok: true, finished: true })
        expect(await stored("j1")).toEqual(["o:12345678", "e:e", "o:a", `e:${marker(6)}`, "e:x", "e:y", "e:z"])
        expect((await store.getJob("j1"))?.status).toBe("completed")
      })
      /** A detached job's acknowledgement changes nothing: later readers get what it kept. */
      const ackIgnored = async (id: string) => {
        const before = await stored(id)
        await store.ackOutput(id, Number.MAX_SAFE_INTEGER, 0)
        return JSON.stringify(await stored(id)) === JSON.stringify(before)
      }

      test("a re-queued attempt of a truncated detached job starts whole again", async () => {
        await store.createJob(newJob("j1", { retries: 1 }), T0)
        await assign("j1", "w1", T0 + 1)
        await store.start("j1", "w1", 1, T0 + 2)
        await put("j1", [out(1, "x".repeat(11))])
        expect((await stored("j1")).map((r) => r.slice(0, 22))).toEqual(["o:xxxxxxxxxx", "e:dffmpeg: output trun"])
        expect((await store.loseJob("j1", 1, "gone", T0 + 20))?.requeued).toBe(true)
        await assign("j1", "w2", T0 + 21)
        await store.start("j1", "w2", 2, T0 + 22)
        await store.appendOutput("j1", "w2", 2, [out(1, "0123456789")], ok0, T0 + 30, undefined, B)
        expect(await stored("j1")).toEqual(["o:0123456789"])
      })
    })

    describe("input", () => {
      const end = (seq: number) => ({ seq, kind: Kind.stdinEnd, data: new Uint8Array(0) })

      test("appendInput is idempotent by seq and readInput returns seq order with each entry's kind", async () => {
        await store.createJob(newJob("j1"), T0)
        const a = randomBytes(1000)
        const b = randomBytes(70_000)
        expect(
          await store.appendInput("j1", [
            { seq: 2, kind: Kind.stdin, data: b },
            { seq: 1, kind: Kind.stdin, data: a },
          ]),
        ).toBe(true)
        // A retry repeats seq 2 with different bytes (and kind): the first write stays.
        expect(
          await store.appendInput("j1", [
            { seq: 2, kind: Kind.signal, data: text("dup") },
            { seq: 3, kind: Kind.signal, data: text("SIGINT") },
          ]),
        ).toBe(true)
        expect(await store.appendInput("j1", [{ seq: 3, kind: Kind.stdin, data: text("x") }, end(4)])).toBe(true)
        expect(await store.appendInput("j1", [end(4)])).toBe(true)

        const rows = await store.readInput("j1", 0, 100)
        expect(rows.map((r) => [r.seq, r.kind])).toEqual([
          [1, Kind.stdin],
          [2, Kind.stdin],
          [3, Kind.signal],
          [4, Kind.stdinEnd],
        ])
        expect(same(rows[0].data, a)).toBe(true)
        expect(same(rows[1].data, b)).toBe(true)
        expect(new TextDecoder().decode(rows[2].data)).toBe("SIGINT")
        expect(rows[3].data).toBeInstanceOf(Uint8Array)
        expect(rows[3].data).toHaveLength(0)
      })

      test("an empty stdin chunk keeps its kind: it is not the end marker", async () => {
        await store.createJob(newJob("j1"), T0)
        await store.appendInput("j1", [{ seq: 1, kind: Kind.stdin, data: new Uint8Array(0) }])
        const [row] = await store.readInput("j1", 0, 10)
        expect(row).toEqual({ seq: 1, kind: Kind.stdin, data: new Uint8Array(0) })
      })

      test("readInput pages with after and limit", async () => {
        await store.createJob(newJob("j1"), T0)
        await store.appendInput(
          "j1",
          [1, 2, 3, 4].map((seq) => ({ seq, kind: Kind.stdin, data: text(`s${seq}`) })),
        )
        expect((await store.readInput("j1", 1, 2)).map((r) => r.seq)).toEqual([2, 3])
        expect((await store.readInput("j1", 4, 2)).map((r) => r.seq)).toEqual([])
      })

      test("appendInput refuses an unknown job and accepts an empty batch", async () => {
        expect(await store.appendInput("nope", [{ seq: 1, kind: Kind.stdin, data: text("x") }])).toBe(false)
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
            await assign("j1", "w1", T0, s)
          },
        ],
        [
          "running",
          async (s: Store) => {
            await assign("j1", "w1", T0, s)
            await s.start("j1", "w1", 1, T0)
          },
        ],
      ])("ends a %s job as failed with the reason", async (_status, prepare) => {
        await store.createJob(newJob("j1"), T0)
        await prepare(store)
        const failed = await store.failJob("j1", "worker refused the job", T0 + 7)
        expect(failed).toMatchObject({
          status: "failed",
          error: "worker refused the job",
          finishedAt: T0 + 7,
          updatedAt: T0 + 7,
        })
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

    test("workerLoads counts assigned and running transcodes per worker", async () => {
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

    test("laneLoads counts assigned and running jobs per worker and lane", async () => {
      await running("a1", "w1", false)
      await store.createJob(newJob("p1", { lane: "probe" }), T0)
      await assign("p1", "w1", T0)
      await store.createJob(newJob("p2", { lane: "probe" }), T0)
      await assign("p2", "w2", T0)
      expect(Object.fromEntries(await store.laneLoads())).toEqual({
        w1: { probe: 1, transcode: 1 },
        w2: { probe: 1, transcode: 0 },
      })
      // The load views show against max_jobs counts transcodes only.
      expect(Object.fromEntries(await store.workerLoads())).toEqual({ w1: 1 })
    })

    test("workerLoads is empty when nothing is assigned", async () => {
      await store.createJob(newJob("q1"), T0)
      expect((await store.workerLoads()).size).toBe(0)
    })

    /** Creates `id` with `over`, assigns it to `worker` at the next epoch and, unless told otherwise, starts it. */
    const job = async (id: string, over: Partial<NewJob> = {}, worker = "w1", start = true, at = T0): Promise<Job> => {
      await store.createJob(newJob(id, over), at)
      return attempt(id, worker, start, at + 1)
    }
    /** Assigns a queued job to `worker` and, unless told otherwise, starts it. */
    const attempt = async (id: string, worker: string, start = true, at = T0 + 1): Promise<Job> => {
      const assigned = await assign(id, worker, at)
      expect(assigned?.status).toBe("assigned")
      if (!start) return assigned!
      const started = await store.start(id, worker, assigned!.epoch, at + 1)
      expect(started?.status).toBe("running")
      return started!
    }
    const statuses = async (id: string) => (await store.events(id)).map((e) => e.status)
    const TERMINAL = ["completed", "failed", "canceled"]
    const terminals = async (id: string) => (await store.events(id)).filter((e) => TERMINAL.includes(e.status))
    const bodies = async (id: string) =>
      (await store.readOutput(id, 0, 1000)).map((r) => new TextDecoder().decode(r.data))

    describe("timeline", () => {
      test("records queued, assigned, running and completed, once each, with time, epoch, worker and reason", async () => {
        await store.createJob(newJob("j1"), T0)
        await assign("j1", "w1", T0 + 1)
        await store.start("j1", "w1", 1, T0 + 2)
        await store.appendOutput("j1", "w1", 1, [out(1, "a")], undefined, T0 + 3)
        await store.appendOutput("j1", "w1", 1, [out(2, "b")], ok0, T0 + 4)
        // Refused transitions and a retried final upload record nothing.
        expect(await store.appendOutput("j1", "w1", 1, [out(2, "b")], ok0, T0 + 5)).toMatchObject({
          ok: true,
          finished: true,
        })
        expect(await assign("j1", "w2", T0 + 6)).toBeUndefined()
        expect(await store.start("j1", "w1", 1, T0 + 6)).toBeUndefined()
        expect(await store.failJob("j1", "late", T0 + 6)).toBeUndefined()
        expect(await store.requestCancel("j1", "late", T0 + 6)).toBeUndefined()
        expect(await store.forceCanceled("j1", 1, "late", T0 + 6)).toBeUndefined()
        expect(await store.loseJob("j1", 1, "late", T0 + 6)).toBeUndefined()
        expect(await store.unassign("j1", 1, "late", T0 + 6)).toBeUndefined()

        expect(await store.events("j1")).toEqual([
          { at: T0, status: "queued", epoch: 0, workerId: null, reason: null },
          { at: T0 + 1, status: "assigned", epoch: 1, workerId: "w1", reason: null },
          { at: T0 + 2, status: "running", epoch: 1, workerId: "w1", reason: null },
          { at: T0 + 4, status: "completed", epoch: 1, workerId: "w1", reason: null },
        ])
      })

      test("a failing exit is the one terminal event, with the worker's error as its reason", async () => {
        await job("j1")
        await store.appendOutput(
          "j1",
          "w1",
          1,
          [],
          { code: null, signal: null, error: "binary ffmpeg not found" },
          T0 + 9,
        )
        expect(await store.appendOutput("j1", "w1", 1, [], ok0, T0 + 10)).toMatchObject({
          ok: true,
          job: { status: "failed" },
        })
        expect(await terminals("j1")).toEqual([
          { at: T0 + 9, status: "failed", epoch: 1, workerId: "w1", reason: "binary ffmpeg not found" },
        ])
      })

      test("keeps each job's timeline apart, and an unknown job has none", async () => {
        await job("j1")
        await store.createJob(newJob("j2"), T0 + 5)
        await store.failJob("j2", "nope", T0 + 6)
        expect(await statuses("j1")).toEqual(["queued", "assigned", "running"])
        expect(await store.events("j2")).toEqual([
          { at: T0 + 5, status: "queued", epoch: 0, workerId: null, reason: null },
          { at: T0 + 6, status: "failed", epoch: 0, workerId: null, reason: "nope" },
        ])
        expect(await store.events("nope")).toEqual([])
      })
    })

    describe("heartbeat", () => {
      test("refreshes the jobs that are still the worker's own at that epoch and returns the others as stale", async () => {
        await store.upsertWorker("w1", reg({ maxJobs: 64 }), "tok", T0)
        await store.verifyWorker("w1", "tok", T0)
        await job("run") // running on w1, epoch 1
        await job("asg", {}, "w1", false) // assigned to w1, not started
        await job("old") // running on w1 at epoch 1; the worker holds epoch 0
        await job("other", {}, "w2") // someone else's
        await job("done")
        await store.appendOutput("done", "w1", 1, [], ok0, T0 + 5)
        await job("failed")
        await store.failJob("failed", "admin", T0 + 5)
        await job("lost", { retries: 1 })
        await store.loseJob("lost", 1, "gone", T0 + 5) // re-queued: no longer w1's

        const held = [
          { id: "run", epoch: 1 },
          { id: "asg", epoch: 1 },
          { id: "old", epoch: 0 },
          { id: "other", epoch: 1 },
          { id: "done", epoch: 1 },
          { id: "failed", epoch: 1 },
          { id: "lost", epoch: 1 },
          { id: "ghost", epoch: 1 },
        ]
        const stale = await store.heartbeat("w1", held, T0 + 100)
        expect(stale).toEqual(held.slice(2))
        expect((await store.getJob("run"))?.heartbeatAt).toBe(T0 + 100)
        expect((await store.getJob("asg"))?.heartbeatAt).toBe(T0 + 100)
        expect((await store.getJob("old"))?.heartbeatAt).toBe(T0 + 2)
        expect((await store.getJob("other"))?.heartbeatAt).toBe(T0 + 2)
        expect((await store.getJob("done"))?.heartbeatAt).toBe(T0 + 2)
        expect((await store.getJob("lost"))?.heartbeatAt).toBeNull()
        expect((await store.getWorker("w1"))?.lastSeen).toBe(T0 + 100)
        // The stale jobs were left as they were.
        expect(await store.getJob("old")).toMatchObject({ status: "running", workerId: "w1", epoch: 1 })
        expect(await store.getJob("done")).toMatchObject({ status: "completed" })
        expect(await store.getJob("lost")).toMatchObject({ status: "queued", workerId: null })
      })

      test("with nothing held it only refreshes the worker, and never revives an offline one", async () => {
        await store.upsertWorker("w1", reg(), "tok", T0)
        await store.verifyWorker("w1", "tok", T0)
        expect(await store.heartbeat("w1", [], T0 + 10)).toEqual([])
        expect(await store.getWorker("w1")).toMatchObject({ status: "online", lastSeen: T0 + 10 })
        await store.setWorkerStatus("w1", "offline", T0 + 20)
        expect(await store.heartbeat("w1", [], T0 + 30)).toEqual([])
        expect(await store.getWorker("w1")).toMatchObject({ status: "offline", lastSeen: T0 + 20 })
      })

      test("a heartbeat keeps a running job out of runningWithoutHeartbeat", async () => {
        await job("j1")
        await job("j2")
        expect((await store.runningWithoutHeartbeat(T0 + 50)).map((j) => j.id)).toEqual(["j1", "j2"])
        await store.heartbeat("w1", [{ id: "j1", epoch: 1 }], T0 + 60)
        expect((await store.runningWithoutHeartbeat(T0 + 50)).map((j) => j.id)).toEqual(["j2"])
        // Output counts as a sign of life too.
        await store.appendOutput("j2", "w1", 1, [out(1, "x")], undefined, T0 + 70)
        expect(await store.runningWithoutHeartbeat(T0 + 50)).toEqual([])
        // The comparison is strict: a heartbeat at exactly the cutoff is fresh.
        expect((await store.runningWithoutHeartbeat(T0 + 61)).map((j) => j.id)).toEqual(["j1"])
      })
    })

    describe("cancelIfCallerGone", () => {
      test("keeps an attached job whose caller was seen at or after the close, cancels it once not", async () => {
        await store.createJob(newJob("j1", { attached: true }), T0)
        await running("j2")
        await store.touchClient("j1", T0 + 10)
        // Seen at T0 + 10: a stream closed at T0 + 5 or at T0 + 10 was re-opened (maybe elsewhere).
        expect(await store.cancelIfCallerGone("j1", T0 + 5, "gone", T0 + 11)).toBeUndefined()
        expect(await store.cancelIfCallerGone("j1", T0 + 10, "gone", T0 + 11)).toBeUndefined()
        expect((await store.getJob("j1"))?.status).toBe("queued")
        expect(await store.cancelIfCallerGone("j1", T0 + 11, "gone", T0 + 12)).toMatchObject({
          status: "canceled",
          error: "gone",
        })
        // A running job is asked to stop, as by requestCancel; an ended one is left alone.
        const j2 = await store.cancelIfCallerGone("j2", T0 + 11, "gone", T0 + 12)
        expect(j2).toMatchObject({ status: "running", cancelRequestedAt: T0 + 12 })
        expect(await store.cancelIfCallerGone("j1", T0 + 20, "again", T0 + 21)).toBeUndefined()
        expect(await store.cancelIfCallerGone("nope", T0 + 20, "gone", T0 + 21)).toBeUndefined()
      })
    })

    describe("requestCancel", () => {
      test.each([
        ["queued", false],
        ["assigned", true],
      ])("cancels a %s job at once", async (status, assigned) => {
        await store.createJob(newJob("j1"), T0)
        if (assigned) await assign("j1", "w1", T0 + 1)
        const done = await store.requestCancel("j1", "canceled by alice", T0 + 5)
        expect(done).toMatchObject({
          status: "canceled",
          error: "canceled by alice",
          finishedAt: T0 + 5,
          updatedAt: T0 + 5,
        })
        expect(await store.getJob("j1")).toEqual(done!)
        expect(await terminals("j1")).toEqual([
          {
            at: T0 + 5,
            status: "canceled",
            epoch: assigned ? 1 : 0,
            workerId: assigned ? "w1" : null,
            reason: "canceled by alice",
          },
        ])
        expect((await statuses("j1"))[assigned ? 1 : 0]).toBe(status)
        // Already ended: nothing more happens.
        expect(await store.requestCancel("j1", "again", T0 + 6)).toBeUndefined()
        expect(await terminals("j1")).toHaveLength(1)
      })

      test("marks a running job, which keeps running until its worker reports the exit; it then ends canceled", async () => {
        await job("j1")
        const marked = await store.requestCancel("j1", "canceled by alice", T0 + 5)
        expect(marked).toMatchObject({
          status: "running",
          cancelRequestedAt: T0 + 5,
          error: "canceled by alice",
          finishedAt: null,
          workerId: "w1",
          epoch: 1,
        })
        // A second request changes nothing.
        expect(await store.requestCancel("j1", "again", T0 + 6)).toBeUndefined()
        expect((await store.getJob("j1"))?.cancelRequestedAt).toBe(T0 + 5)
        // The worker still owns the job: its heartbeat and output are accepted.
        expect(await store.heartbeat("w1", [{ id: "j1", epoch: 1 }], T0 + 7)).toEqual([])
        expect(await store.appendOutput("j1", "w1", 1, [out(1, "partial")], undefined, T0 + 8)).toMatchObject({
          ok: true,
          finished: false,
        })

        const res = await store.appendOutput("j1", "w1", 1, [out(2, "end")], { code: 255, signal: null }, T0 + 9)
        expect(res).toMatchObject({
          ok: true,
          finished: true,
          job: { status: "canceled", exitCode: 255, error: "canceled by alice", finishedAt: T0 + 9 },
        })
        expect(await bodies("j1")).toEqual(["partial", "end"])
        expect(await store.events("j1")).toEqual([
          { at: T0, status: "queued", epoch: 0, workerId: null, reason: null },
          { at: T0 + 1, status: "assigned", epoch: 1, workerId: "w1", reason: null },
          { at: T0 + 2, status: "running", epoch: 1, workerId: "w1", reason: null },
          { at: T0 + 5, status: "canceling", epoch: 1, workerId: "w1", reason: "canceled by alice" },
          { at: T0 + 9, status: "canceled", epoch: 1, workerId: "w1", reason: "canceled by alice" },
        ])
      })

      test("a cancel-requested job that exits 0 still ends canceled", async () => {
        await job("j1")
        await store.requestCancel("j1", "stop", T0 + 5)
        const res = await store.appendOutput("j1", "w1", 1, [], ok0, T0 + 6)
        expect(res).toMatchObject({ ok: true, job: { status: "canceled", exitCode: 0, error: "stop" } })
        expect((await terminals("j1")).map((e) => e.status)).toEqual(["canceled"])
      })

      test.each<[string, ExitReport | "fail"]>([
        ["completed", ok0],
        ["failed", { code: 1, signal: null }],
        ["failed", "fail"],
      ])("leaves a %s job alone and returns undefined", async (status, how) => {
        await job("j1")
        if (how === "fail") await store.failJob("j1", "x", T0 + 5)
        else await store.appendOutput("j1", "w1", 1, [], how, T0 + 5)
        const before = await store.getJob("j1")
        expect(await store.requestCancel("j1", "too late", T0 + 9)).toBeUndefined()
        expect(await store.getJob("j1")).toEqual(before!)
        expect(before?.status).toBe(status as Job["status"])
        expect(await terminals("j1")).toHaveLength(1)
        expect(await store.requestCancel("nope", "x", T0)).toBeUndefined()
      })

      test("withdrawJob ends a queued or assigned job with its exit code, and leaves a running one alone", async () => {
        await store.createJob(newJob("j1"), T0)
        expect(await store.withdrawJob("j1", "SIGTERM before start", 255, T0 + 1)).toMatchObject({
          status: "canceled",
          exitCode: 255,
          error: "SIGTERM before start",
          finishedAt: T0 + 1,
        })
        await job("j2", {}, "w1", false)
        expect(await store.withdrawJob("j2", "SIGHUP before start", 129, T0 + 5)).toMatchObject({
          status: "canceled",
          exitCode: 129,
        })
        // Never started: the worker's start claim is refused.
        expect(await store.start("j2", "w1", 1, T0 + 6)).toBeUndefined()
        expect(await statuses("j2")).toEqual(["queued", "assigned", "canceled"])
        await job("j3")
        expect(await store.withdrawJob("j3", "too late", 255, T0 + 5)).toBeUndefined()
        expect(await store.getJob("j3")).toMatchObject({ status: "running", exitCode: null, cancelRequestedAt: null })
        expect(await store.withdrawJob("j1", "again", 1, T0 + 9)).toBeUndefined()
      })

      test("forceCanceled ends a running job at that epoch only", async () => {
        await job("j1")
        await store.requestCancel("j1", "stop", T0 + 5)
        expect(await store.forceCanceled("j1", 0, "gone", T0 + 6)).toBeUndefined()
        expect(await store.forceCanceled("j1", 1, "stop; worker gone", T0 + 7)).toMatchObject({
          status: "canceled",
          error: "stop; worker gone",
          finishedAt: T0 + 7,
        })
        expect(await store.forceCanceled("j1", 1, "again", T0 + 8)).toBeUndefined()
        expect((await terminals("j1")).map((e) => [e.status, e.reason])).toEqual([["canceled", "stop; worker gone"]])
        // A late exit from the worker is acknowledged but changes nothing.
        expect(await store.appendOutput("j1", "w1", 1, [], ok0, T0 + 9)).toMatchObject({
          ok: true,
          job: { status: "canceled" },
        })
        expect(await terminals("j1")).toHaveLength(1)
      })
    })

    describe("unassign", () => {
      test("puts an assigned job back in the queue at that epoch, excluding its worker", async () => {
        await job("j1", {}, "w1", false)
        const back = await store.unassign("j1", 1, "worker w1 did not start the job", T0 + 20)
        expect(back).toMatchObject({
          status: "queued",
          workerId: null,
          assignedAt: null,
          epoch: 1,
          excluded: ["w1"],
          attempts: 0,
          finishedAt: null,
          updatedAt: T0 + 20,
        })
        expect(await store.getJob("j1")).toEqual(back!)
        expect((await store.events("j1")).at(-1)).toEqual({
          at: T0 + 20,
          status: "queued",
          epoch: 1,
          workerId: "w1",
          reason: "worker w1 did not start the job",
        })
        // The worker can no longer start it; nor is it offered to it any more.
        expect(await store.start("j1", "w1", 1, T0 + 21)).toBeUndefined()
        expect(await store.assignedTo("w1")).toEqual([])
        expect((await store.queuedJobs(10)).map((j) => j.id)).toEqual(["j1"])
      })

      test.each([
        ["an older epoch", 0],
        ["a newer epoch", 2],
      ])("refuses %s", async (_name, epoch) => {
        await job("j1", {}, "w1", false)
        expect(await store.unassign("j1", epoch, "x", T0 + 5)).toBeUndefined()
        expect(await store.getJob("j1")).toMatchObject({ status: "assigned", workerId: "w1", excluded: [] })
      })

      test("refuses a queued, a running and a finished job, and an unknown one", async () => {
        await store.createJob(newJob("q"), T0)
        await job("r")
        await job("c")
        await store.appendOutput("c", "w1", 1, [], ok0, T0 + 5)
        expect(await store.unassign("q", 0, "x", T0 + 9)).toBeUndefined()
        expect(await store.unassign("r", 1, "x", T0 + 9)).toBeUndefined()
        expect(await store.unassign("c", 1, "x", T0 + 9)).toBeUndefined()
        expect(await store.unassign("nope", 1, "x", T0 + 9)).toBeUndefined()
        expect((await store.getJob("r"))?.status).toBe("running")
        expect(await statuses("q")).toEqual(["queued"])
      })

      test("with bar, the worker is also barred from the job for good (excluded only prefers others)", async () => {
        await job("j1", {}, "w1", false)
        expect(await store.unassign("j1", 1, "timed out", T0 + 5, true)).toMatchObject({
          excluded: ["w1"],
          barred: ["w1"],
        })
        await attempt("j1", "w2", false, T0 + 6)
        expect(await store.unassign("j1", 2, "refused", T0 + 7)).toMatchObject({
          excluded: ["w1", "w2"],
          barred: ["w1"],
        })
      })

      test("accumulates excluded workers without repeating one", async () => {
        await job("j1", {}, "w1", false)
        await store.unassign("j1", 1, "x", T0 + 5)
        await attempt("j1", "w2", false, T0 + 6)
        expect(await store.unassign("j1", 2, "x", T0 + 7)).toMatchObject({ excluded: ["w1", "w2"], epoch: 2 })
        await attempt("j1", "w1", false, T0 + 8)
        expect(await store.unassign("j1", 3, "x", T0 + 9)).toMatchObject({ excluded: ["w1", "w2"], epoch: 3 })
        expect(await statuses("j1")).toEqual([
          "queued",
          "assigned",
          "queued",
          "assigned",
          "queued",
          "assigned",
          "queued",
        ])
      })
    })

    describe("loseJob", () => {
      test("fails an attached job with the reason, whatever its retries", async () => {
        await job("j1", { attached: true, retries: 3 })
        await store.appendOutput("j1", "w1", 1, [out(1, "partial")], undefined, T0 + 3)
        const res = await store.loseJob("j1", 1, "worker w1 stopped responding", T0 + 30)
        expect(res?.requeued).toBe(false)
        expect(res?.job).toMatchObject({
          status: "failed",
          error: "worker w1 stopped responding",
          finishedAt: T0 + 30,
          workerId: "w1",
          epoch: 1,
        })
        expect(await store.getJob("j1")).toEqual(res!.job)
        // The caller already streamed the partial output: it stays.
        expect(await bodies("j1")).toEqual(["partial"])
        expect(await terminals("j1")).toEqual([
          { at: T0 + 30, status: "failed", epoch: 1, workerId: "w1", reason: "worker w1 stopped responding" },
        ])
        expect(await store.loseJob("j1", 1, "again", T0 + 31)).toBeUndefined()
        expect(await terminals("j1")).toHaveLength(1)
      })

      test("fails a detached job without retries", async () => {
        await job("j1", { retries: 0 })
        expect(await store.loseJob("j1", 1, "lost", T0 + 30)).toMatchObject({
          requeued: false,
          job: { status: "failed", error: "lost" },
        })
      })

      test("re-queues a detached job with retries twice, dropping each lost attempt's output, then fails it", async () => {
        await job("j1", { retries: 2 })
        await store.appendOutput("j1", "w1", 1, [out(1, "first try")], undefined, T0 + 3)

        const r1 = await store.loseJob("j1", 1, "worker w1 lost", T0 + 10)
        expect(r1?.requeued).toBe(true)
        expect(r1?.job).toMatchObject({
          status: "queued",
          workerId: null,
          epoch: 1,
          attempts: 1,
          excluded: ["w1"],
          heartbeatAt: null,
          startedAt: null,
          assignedAt: null,
          finishedAt: null,
          error: null,
        })
        expect(await store.getJob("j1")).toEqual(r1!.job)
        expect(await bodies("j1")).toEqual([])
        // The lost attempt can no longer write.
        expect(await store.appendOutput("j1", "w1", 1, [out(2, "late")], undefined, T0 + 11)).toMatchObject({
          ok: false,
          reason: "stale",
        })

        // Second attempt: output starts again at seq 1.
        await attempt("j1", "w2", true, T0 + 12)
        expect(await store.appendOutput("j1", "w2", 2, [out(1, "second try")], undefined, T0 + 14)).toMatchObject({
          ok: true,
        })
        expect(await bodies("j1")).toEqual(["second try"])
        const r2 = await store.loseJob("j1", 2, "worker w2 lost", T0 + 20)
        expect(r2).toMatchObject({
          requeued: true,
          job: { status: "queued", attempts: 2, epoch: 2, excluded: ["w1", "w2"] },
        })
        expect(await bodies("j1")).toEqual([])

        await attempt("j1", "w3", true, T0 + 22)
        await store.appendOutput("j1", "w3", 3, [out(1, "third try")], undefined, T0 + 24)
        const r3 = await store.loseJob("j1", 3, "worker w3 lost", T0 + 30)
        expect(r3).toMatchObject({
          requeued: false,
          job: { status: "failed", error: "worker w3 lost", attempts: 3, epoch: 3, finishedAt: T0 + 30 },
        })
        expect(await bodies("j1")).toEqual(["third try"])

        const events = await store.events("j1")
        expect(events.map((e) => [e.status, e.epoch, e.workerId])).toEqual([
          ["queued", 0, null],
          ["assigned", 1, "w1"],
          ["running", 1, "w1"],
          ["queued", 1, "w1"],
          ["assigned", 2, "w2"],
          ["running", 2, "w2"],
          ["queued", 2, "w2"],
          ["assigned", 3, "w3"],
          ["running", 3, "w3"],
          ["failed", 3, "w3"],
        ])
        expect(events[3].reason).toBe("worker w1 lost; retry 1 of 2")
        expect(events[6].reason).toBe("worker w2 lost; retry 2 of 2")
        expect(events.filter((e) => TERMINAL.includes(e.status))).toHaveLength(1)
      })

      test("applies to an assigned job too", async () => {
        await job("d", { retries: 1 }, "w1", false)
        await job("a", { attached: true }, "w1", false)
        expect(await store.loseJob("d", 1, "lost", T0 + 5)).toMatchObject({
          requeued: true,
          job: { status: "queued", attempts: 1 },
        })
        expect(await store.loseJob("a", 1, "lost", T0 + 5)).toMatchObject({
          requeued: false,
          job: { status: "failed" },
        })
      })

      test("cancels instead when a cancel was requested, even with retries left", async () => {
        await job("j1", { retries: 5 })
        await store.requestCancel("j1", "stop", T0 + 5)
        const res = await store.loseJob("j1", 1, "worker w1 lost", T0 + 10)
        expect(res).toMatchObject({ requeued: false, job: { status: "canceled", finishedAt: T0 + 10 } })
        expect(await statuses("j1")).toEqual(["queued", "assigned", "running", "canceling", "canceled"])
      })

      test("refuses another epoch, a queued job, a finished job and an unknown one", async () => {
        await job("j1", { retries: 2 })
        expect(await store.loseJob("j1", 0, "x", T0 + 5)).toBeUndefined()
        expect(await store.loseJob("j1", 2, "x", T0 + 5)).toBeUndefined()
        await store.loseJob("j1", 1, "x", T0 + 5)
        expect(await store.loseJob("j1", 1, "x", T0 + 6)).toBeUndefined() // now queued
        await store.createJob(newJob("q"), T0)
        expect(await store.loseJob("q", 0, "x", T0 + 6)).toBeUndefined()
        await job("c")
        await store.appendOutput("c", "w1", 1, [], ok0, T0 + 5)
        expect(await store.loseJob("c", 1, "x", T0 + 6)).toBeUndefined()
        expect(await store.loseJob("nope", 1, "x", T0 + 6)).toBeUndefined()
        expect((await store.getJob("j1"))?.attempts).toBe(1)
      })
    })

    describe("appendOutput with an abandoned exit", () => {
      const abandon = (id: string, worker: string, epoch: number, chunks: OutputChunk[], at: number) =>
        store.appendOutput(
          id,
          worker,
          epoch,
          chunks,
          { code: null, signal: "SIGKILL", abandoned: `worker ${worker} is shutting down` },
          at,
        )

      test("re-queues a detached job with retries left, dropping the attempt's output (even this upload's), then fails it", async () => {
        await job("j1", { retries: 1 })
        await store.appendOutput("j1", "w1", 1, [out(1, "a")], undefined, T0 + 3)
        const r1 = await abandon("j1", "w1", 1, [out(2, "b")], T0 + 10)
        expect(r1).toMatchObject({
          ok: true,
          finished: true,
          job: { status: "queued", workerId: null, attempts: 1, excluded: ["w1"], finishedAt: null },
        })
        expect(await bodies("j1")).toEqual([])
        expect((await store.events("j1")).at(-1)).toEqual({
          at: T0 + 10,
          status: "queued",
          epoch: 1,
          workerId: "w1",
          reason: "worker w1 is shutting down; retry 1 of 1",
        })

        await attempt("j1", "w2", true, T0 + 11)
        expect(await store.appendOutput("j1", "w2", 2, [out(1, "c")], undefined, T0 + 13)).toMatchObject({ ok: true })
        expect(await bodies("j1")).toEqual(["c"])
        const r2 = await abandon("j1", "w2", 2, [out(2, "d")], T0 + 20)
        expect(r2).toMatchObject({
          ok: true,
          finished: true,
          job: { status: "failed", error: "worker w2 is shutting down", attempts: 2, finishedAt: T0 + 20 },
        })
        expect(await bodies("j1")).toEqual(["c", "d"])
        expect(await statuses("j1")).toEqual([
          "queued",
          "assigned",
          "running",
          "queued",
          "assigned",
          "running",
          "failed",
        ])
      })

      test("fails an attached job with the reason", async () => {
        await job("j1", { attached: true, retries: 2 })
        const res = await abandon("j1", "w1", 1, [out(1, "a")], T0 + 10)
        expect(res).toMatchObject({ ok: true, job: { status: "failed", error: "worker w1 is shutting down" } })
        expect(await bodies("j1")).toEqual(["a"])
        expect(await terminals("j1")).toHaveLength(1)
      })

      test("cancels a job whose cancel was requested", async () => {
        await job("j1", { retries: 2 })
        await store.requestCancel("j1", "stop", T0 + 5)
        expect(await abandon("j1", "w1", 1, [], T0 + 10)).toMatchObject({ ok: true, job: { status: "canceled" } })
        expect((await terminals("j1")).map((e) => e.status)).toEqual(["canceled"])
      })
    })

    describe("workers: registration, status and reaping", () => {
      test("a new worker registers, verifies with its token only, and then re-registers without a token", async () => {
        await store.upsertWorker("w1", reg(), "tok", T0)
        expect(await store.workerToken("w1")).toBe("tok")
        expect(await store.verifyWorker("w1", "wrong", T0 + 1)).toBe(false)
        expect((await store.getWorker("w1"))?.status).toBe("registering")
        // Registering again before verifying hands out a new token: the old one is void.
        await store.upsertWorker("w1", reg(), "tok2", T0 + 2)
        expect(await store.workerToken("w1")).toBe("tok2")
        expect(await store.verifyWorker("w1", "tok", T0 + 3)).toBe(false)
        expect(await store.verifyWorker("w1", "tok2", T0 + 4)).toBe(true)
        expect(await store.getWorker("w1")).toMatchObject({ status: "online", lastSeen: T0 + 4 })
        expect(await store.workerToken("w1")).toBeUndefined()
        // Verified: a re-registration keeps it online (or draining), whatever token it is given.
        expect((await store.upsertWorker("w1", reg({ draining: true }), "tok3", T0 + 5)).status).toBe("draining")
        expect((await store.upsertWorker("w1", reg(), "tok4", T0 + 6)).status).toBe("online")
        expect(await store.workerToken("w1")).toBeUndefined()
        expect(await store.verifyWorker("nope", "tok", T0)).toBe(false)
      })

      test("an offline worker must register and verify again; touching does not revive it", async () => {
        await store.upsertWorker("w1", reg(), "tok", T0)
        await store.verifyWorker("w1", "tok", T0)
        expect(await store.setWorkerStatus("w1", "offline", T0 + 10)).toBe(true)
        await store.touchWorker("w1", T0 + 20)
        expect(await store.getWorker("w1")).toMatchObject({ status: "offline", lastSeen: T0 + 10 })
        expect((await store.upsertWorker("w1", reg(), "again", T0 + 30)).status).toBe("registering")
        expect(await store.verifyWorker("w1", "again", T0 + 31)).toBe(true)
        expect((await store.getWorker("w1"))?.status).toBe("online")
        expect(await store.setWorkerStatus("nope", "offline", T0)).toBe(false)
      })

      test("a registering worker that went offline cannot verify with its old token", async () => {
        await store.upsertWorker("w1", reg(), "tok", T0)
        expect(await store.reapWorkers(T0 + 10)).toEqual(["w1"])
        expect((await store.getWorker("w1"))?.status).toBe("offline")
        const verified = await store.verifyWorker("w1", "tok", T0 + 20)
        expect({ verified, status: (await store.getWorker("w1"))?.status }).toEqual({
          verified: false,
          status: "offline",
        })
      })

      test("reapWorkers takes offline the non-offline workers not seen since the cutoff, once", async () => {
        const add = async (id: string, status: "online" | "draining" | "registering" | "offline", seen: number) => {
          await store.upsertWorker(id, reg(), `t-${id}`, seen)
          if (status !== "registering") await store.verifyWorker(id, `t-${id}`, seen)
          if (status === "draining" || status === "offline") await store.setWorkerStatus(id, status, seen)
        }
        await add("a-online", "online", T0)
        await add("b-draining", "draining", T0)
        await add("c-registering", "registering", T0)
        await add("d-offline", "offline", T0)
        await add("e-at-cutoff", "online", T0 + 50)
        await add("f-fresh", "online", T0 + 100)

        expect((await store.reapWorkers(T0 + 50)).sort()).toEqual(["a-online", "b-draining", "c-registering"])
        const byId = Object.fromEntries((await store.listWorkers()).map((w) => [w.id, w]))
        expect(Object.fromEntries(Object.entries(byId).map(([id, w]) => [id, w.status]))).toEqual({
          "a-online": "offline",
          "b-draining": "offline",
          "c-registering": "offline",
          "d-offline": "offline",
          "e-at-cutoff": "online",
          "f-fresh": "online",
        })
        // Reaping keeps the time the worker was last heard from.
        expect(byId["a-online"].lastSeen).toBe(T0)
        expect(await store.reapWorkers(T0 + 50)).toEqual([])
        expect((await store.reapWorkers(T0 + 101)).sort()).toEqual(["e-at-cutoff", "f-fresh"])
      })
    })

    describe("janitor selections", () => {
      test("assignedSince lists jobs assigned before the cutoff and not started", async () => {
        await job("a1", {}, "w1", false, T0) // assigned at T0+1
        await job("a2", {}, "w1", false, T0 + 10) // assigned at T0+11
        await job("r1", {}, "w1", true, T0) // running
        expect((await store.assignedSince(T0 + 11)).map((j) => j.id)).toEqual(["a1"])
        expect((await store.assignedSince(T0 + 12)).map((j) => j.id)).toEqual(["a1", "a2"])
      })

      test("queuedSince lists jobs queued (or re-queued) before the cutoff", async () => {
        await store.createJob(newJob("q1"), T0)
        await store.createJob(newJob("q2"), T0 + 10)
        await job("back", { retries: 1 }, "w1", true, T0)
        await store.loseJob("back", 1, "lost", T0 + 20) // re-queued at T0+20
        await job("a", {}, "w1", false, T0)
        expect((await store.queuedSince(T0 + 10)).map((j) => j.id)).toEqual(["q1"])
        expect((await store.queuedSince(T0 + 21)).map((j) => j.id)).toEqual(["back", "q1", "q2"])
      })

      test("abandoned lists attached active jobs whose caller was not seen since the cutoff and no cancel was asked", async () => {
        await store.createJob(newJob("att-q", { attached: true }), T0)
        await job("att-r", { attached: true }, "w1", true, T0)
        await job("att-c", { attached: true }, "w1", true, T0)
        await store.requestCancel("att-c", "stop", T0 + 5)
        await job("att-done", { attached: true }, "w1", true, T0)
        await store.appendOutput("att-done", "w1", 1, [], ok0, T0 + 5)
        await store.createJob(newJob("det", { attached: false }), T0)
        await store.createJob(newJob("att-seen", { attached: true }), T0)
        await store.touchClient("att-seen", T0 + 100)
        expect((await store.abandoned(T0 + 50)).map((j) => j.id)).toEqual(["att-q", "att-r"])
        // touchClient does nothing for a finished job.
        await store.touchClient("att-done", T0 + 200)
        expect((await store.getJob("att-done"))?.clientSeenAt).toBe(T0)
      })
    })

    describe("prune", () => {
      test("deletes jobs finished before the cutoff with their output, input and timeline, and workers offline since then", async () => {
        const input = (id: string) =>
          store.appendInput(id, [
            { seq: 1, kind: Kind.stdin, data: text("in") },
            { seq: 2, kind: Kind.stdinEnd, data: new Uint8Array(0) },
          ])
        // Old and finished: completed, failed, canceled.
        await job("old-done", {}, "w1", true, T0)
        await input("old-done")
        await store.appendOutput("old-done", "w1", 1, [out(1, "x")], ok0, T0 + 10)
        await job("old-failed", {}, "w1", true, T0)
        await store.failJob("old-failed", "x", T0 + 10)
        await store.createJob(newJob("old-canceled"), T0)
        await store.requestCancel("old-canceled", "x", T0 + 10)
        // Kept: finished after the cutoff, or never finished however old.
        await job("new-done", {}, "w1", true, T0)
        await input("new-done")
        await store.appendOutput("new-done", "w1", 1, [out(1, "y")], ok0, T0 + 1000)
        await store.createJob(newJob("old-queued"), T0)
        await input("old-queued")
        await job("old-running", {}, "w1", true, T0)
        await store.appendOutput("old-running", "w1", 1, [out(1, "z")], undefined, T0 + 3)
        await job("old-canceling", {}, "w1", true, T0)
        await store.requestCancel("old-canceling", "x", T0 + 10)
        // Workers.
        for (const id of ["w-old-offline", "w-new-offline", "w-old-online", "w-old-registering"])
          await store.upsertWorker(id, reg(), "t", T0)
        await store.verifyWorker("w-old-online", "t", T0)
        await store.setWorkerStatus("w-old-offline", "offline", T0 + 10)
        await store.setWorkerStatus("w-new-offline", "offline", T0 + 1000)

        expect(await store.prune(T0 + 500)).toEqual({ jobs: 3, workers: 1 })

        for (const id of ["old-done", "old-failed", "old-canceled"]) {
          expect(await store.getJob(id)).toBeUndefined()
          expect(await store.events(id)).toEqual([])
          expect(await store.readOutput(id, 0, 10)).toEqual([])
          expect(await store.readInput(id, 0, 10)).toEqual([])
        }
        expect((await store.listJobs({})).map((j) => j.id).sort()).toEqual([
          "new-done",
          "old-canceling",
          "old-queued",
          "old-running",
        ])
        expect(await bodies("new-done")).toEqual(["y"])
        expect(await bodies("old-running")).toEqual(["z"])
        expect(await store.readInput("new-done", 0, 10)).toHaveLength(2)
        expect(await store.readInput("old-queued", 0, 10)).toHaveLength(2)
        expect(await statuses("new-done")).toEqual(["queued", "assigned", "running", "completed"])
        expect(await statuses("old-queued")).toEqual(["queued"])
        expect((await store.listWorkers()).map((w) => w.id)).toEqual([
          "w-new-offline",
          "w-old-online",
          "w-old-registering",
          "w1", // registered (never verified) for the jobs above: kept as w-old-registering is
        ])

        expect(await store.prune(T0 + 500)).toEqual({ jobs: 0, workers: 0 })
        expect(await store.prune(T0 + 1001)).toEqual({ jobs: 1, workers: 1 })
      })

      test("more old jobs than one batch: every batch goes, with its rows, and the kept jobs stay", async () => {
        // 10 old jobs in batches of 4 (4, 4, 2), and the default batch passed by 7.
        for (let i = 0; i < 10; i++) {
          const id = `old-${String(i).padStart(2, "0")}`
          await job(id, {}, "w1", true, T0)
          await store.appendOutput(id, "w1", 1, [out(1, id)], ok0, T0 + 10)
        }
        await job("kept", {}, "w1", true, T0)
        await store.appendOutput("kept", "w1", 1, [out(1, "k")], ok0, T0 + 1000)
        expect(await store.prune(T0 + 500, 4)).toEqual({ jobs: 10, workers: 0 })
        expect((await store.listJobs({})).map((j) => j.id)).toEqual(["kept"])
        expect(await store.readOutput("old-03", 0, 10)).toEqual([])
        expect(await store.events("old-09")).toEqual([])
        expect(await bodies("kept")).toEqual(["k"])

        const many = PRUNE_BATCH + 7
        // Twenty at a time: a server database's pool runs them side by side.
        for (let i = 0; i < many; i += 20)
          await Promise.all(
            Array.from({ length: Math.min(20, many - i) }, async (_, k) => {
              const id = `bulk-${String(i + k).padStart(4, "0")}`
              await store.createJob(newJob(id), T0)
              await store.requestCancel(id, "x", T0 + 10)
            }),
          )
        expect(await store.prune(T0 + 500)).toEqual({ jobs: many, workers: 0 })
        expect((await store.listJobs({ limit: 1000 })).map((j) => j.id)).toEqual(["kept"])
        expect(await store.prune(T0 + 500)).toEqual({ jobs: 0, workers: 0 })
        // Over a thousand round trips to create them on a server database.
      }, 60_000)

      test("a pruned job's files go with it (its id could take new ones)", async () => {
        await store.createJob(newJob("old-files", { files: [{ arg: 1, content: "file '$Movies/a.ts'" }] }), T0)
        await store.requestCancel("old-files", "x", T0 + 10)
        expect(await store.prune(T0 + 500)).toEqual({ jobs: 1, workers: 0 })
        const files = [{ arg: 1, content: "file '$Movies/b.ts'" }]
        await store.createJob(newJob("old-files", { files }), T0 + 600)
        expect((await store.getJob("old-files"))?.files).toEqual(files)
      })
    })

    describe("dashboard console: finished jobs search, throughput, sign-in links, retry", () => {
      /** A job ended `status` at `at` (completed: exit 0; failed: exit 1; canceled before it ran). */
      const ended = async (
        id: string,
        status: "completed" | "failed" | "canceled",
        at: number,
        over: Partial<NewJob> = {},
      ) => {
        if (status === "canceled") {
          await store.createJob(newJob(id, { stdin: false, ...over }), at - 5)
          return store.requestCancel(id, "x", at)
        }
        await job(id, { stdin: false, ...over }, "w1", true, at - 5)
        const code = status === "completed" ? ok0 : { code: 1, signal: null }
        return (await store.appendOutput(id, "w1", 1, [out(1, `${id} said no\n`, "stderr")], code, at)).job
      }

      test("a text search matches a substring of the arguments, any case, with LIKE's wildcards taken literally", async () => {
        const at = T0 + 100
        await ended("01J0000000000000000000000A", "completed", at, { args: ["-i", "$Movies/Holiday 2024.mkv"] })
        await ended("01J0000000000000000000000B", "failed", at, { args: ["-i", "$Movies/100%_done.mkv"] })
        await ended("01J0000000000000000000000C", "completed", at, { args: ["-i", '$Movies/say "hi" \\ o!.mkv'] })
        await ended("01J0000000000000000000000D", "completed", at, { args: ["-i", "$Movies/1000_done.mkv"] })
        await ended("01J0000000000000000000000E", "completed", at, { args: ["-i", "$Movies/Ärger über Ökö.mkv"] })
        const ids = async (text: string, more = {}) =>
          (await store.listJobSummaries({ statuses: ["completed", "failed", "canceled"], text, ...more })).map((j) =>
            j.id.slice(-1),
          )
        expect(await ids("holiday")).toEqual(["A"])
        expect(await ids("HOLIDAY 2024")).toEqual(["A"])
        // `%` and `_` are the text itself, not wildcards: "100%_" is only in B.
        expect(await ids("100%_")).toEqual(["B"])
        expect(await ids("0_d")).toEqual(["D"])
        expect(await ids("%")).toEqual(["B"])
        // Quotes, a backslash and the escape character, as typed (the row keeps them JSON-escaped).
        expect(await ids('"hi" \\ o!')).toEqual(["C"])
        // Letters beyond ASCII match as typed on every engine (SQLite folds the case of ASCII only).
        expect(await ids("Ärger über")).toEqual(["E"])
        expect(await ids("Ökö.MKV")).toEqual(["E"])
        expect(await ids(".mkv")).toEqual(["E", "D", "C", "B", "A"])
        expect(await ids(".mkv", { status: "failed" })).toEqual(["B"])
        expect(await ids("nothing like it")).toEqual([])
      })

      test("finished jobs page newest first by id (keyset): each page continues where the last ended", async () => {
        for (let i = 0; i < 7; i++)
          await ended(`01J000000000000000000000${i}Z`, i % 3 ? "completed" : "failed", T0 + 100 + i)
        await store.createJob(newJob("01J0000000000000000000009Q"), T0)
        const page = (before?: string) =>
          store.listJobSummaries({ statuses: ["completed", "failed", "canceled"], before, limit: 3 })
        const seen: string[] = []
        let before: string | undefined
        for (;;) {
          const rows = await page(before)
          seen.push(...rows.map((j) => j.id[24]))
          if (rows.length < 3) break
          before = rows[rows.length - 1].id
        }
        expect(seen).toEqual(["6", "5", "4", "3", "2", "1", "0"])
        expect(
          (await store.listJobSummaries({ statuses: ["failed"], worker: "w1", requester: "alice" })).map(
            (j) => j.id[24],
          ),
        ).toEqual(["6", "3", "0"])
      })

      test("throughput counts finished jobs per bucket and outcome in one grouped read", async () => {
        const H = 3_600_000
        const h0 = Math.floor(T0 / H) * H + 10 * H
        await ended("t1", "completed", h0 + 5)
        await ended("t2", "completed", h0 + H - 1)
        await ended("t3", "failed", h0 + 10)
        await ended("t4", "completed", h0 + 2 * H)
        await ended("t5", "canceled", h0 + 2 * H + 7)
        await ended("t6", "completed", h0 - 1)
        await store.createJob(newJob("t7"), h0 + 1)
        expect(await store.throughput(h0, H)).toEqual([
          { at: h0, status: "completed", count: 2 },
          { at: h0, status: "failed", count: 1 },
          { at: h0 + 2 * H, status: "canceled", count: 1 },
          { at: h0 + 2 * H, status: "completed", count: 1 },
        ])
        expect(await store.throughput(h0 + 3 * H, H)).toEqual([])
      })

      test("a sign-in link is taken once, only before it expires; expired ones are cleared by the next", async () => {
        const hash = (c: string) => c.repeat(64)
        await store.addSignInLink(hash("a"), "boss", T0 + 1000, T0)
        await store.addSignInLink(hash("b"), "boss", T0 + 1000, T0)
        expect(await store.takeSignInLink(hash("a"), T0 + 999)).toBe("boss")
        expect(await store.takeSignInLink(hash("a"), T0 + 999)).toBeUndefined()
        expect(await store.takeSignInLink(hash("c"), T0)).toBeUndefined()
        // Expired: refused (and gone).
        expect(await store.takeSignInLink(hash("b"), T0 + 1000)).toBeUndefined()
        await store.addSignInLink(hash("d"), "boss", T0 + 1000, T0)
        await store.addSignInLink(hash("e"), "root", T0 + 5000, T0 + 1000)
        // Adding at T0 + 1000 deleted d, which expired then.
        expect(await store.takeSignInLink(hash("d"), T0 + 10)).toBeUndefined()
        expect(await store.takeSignInLink(hash("e"), T0 + 4999)).toBe("root")
      })

      test("retry: a failed detached job becomes a new queued job with the same command; both timelines say so", async () => {
        const files = [{ arg: 3, content: "file '$Movies/a.mkv'\n" }]
        await ended("r-failed", "failed", T0 + 50, { files, priority: "batch", retries: 2 })
        const old = (await store.getJob("r-failed"))!
        const fresh = await store.retryJob("r-failed", { id: "r-new", queueKey: T0 + 60 }, "boss", T0 + 60)
        expect(fresh).toMatchObject({
          id: "r-new",
          status: "queued",
          requester: old.requester,
          binary: old.binary,
          args: old.args,
          paths: old.paths,
          cwd: old.cwd,
          priority: "batch",
          retries: 2,
          attached: false,
          queueKey: T0 + 60,
          epoch: 0,
        })
        expect((await store.getJob("r-new"))!.files).toEqual(files)
        expect((await store.events("r-new")).map((e) => [e.status, e.reason])).toEqual([
          ["queued", "retry of r-failed (by boss)"],
        ])
        expect((await store.events("r-failed")).at(-1)).toMatchObject({
          status: "failed",
          reason: "retried as r-new (by boss)",
        })
        expect((await store.getJob("r-failed"))!.status).toBe("failed")
        // Only a failed detached job: completed, attached, queued and unknown ones write nothing.
        await ended("r-done", "completed", T0 + 50)
        await ended("r-attached", "failed", T0 + 50, { attached: true })
        await store.createJob(newJob("r-queued"), T0)
        for (const id of ["r-done", "r-attached", "r-queued", "r-unknown"])
          expect(
            await store.retryJob(id, { id: `${id}-2`.slice(0, 26), queueKey: T0 }, "boss", T0 + 70),
          ).toBeUndefined()
        expect(await store.getJob("r-done-2")).toBeUndefined()
        expect((await store.events("r-done")).length).toBe(4)
      })
    })

    describe("coordinators", () => {
      const coordinator = (id: string, over: Partial<CoordinatorRow> = {}): CoordinatorRow => ({
        id,
        host: "host-a",
        pid: 4242,
        version: "1.2.3",
        url: "http://127.0.0.1:8000",
        startedAt: T0,
        seenAt: T0,
        ...over,
      })

      test("the schema version is this build's once migrated", async () => {
        expect(await store.schemaVersion()).toBe(SCHEMA_VERSION)
      })

      test("are registered, refreshed by one touch, listed by when they were last seen, and removed", async () => {
        await store.registerCoordinator(coordinator("c1"), 0)
        await store.registerCoordinator(coordinator("c2", { startedAt: T0 + 5, seenAt: T0 + 5, url: null }), 0)
        expect(await store.listCoordinators(T0)).toEqual([
          coordinator("c2", { startedAt: T0 + 5, seenAt: T0 + 5, url: null }),
          coordinator("c1"),
        ])
        expect(await store.touchCoordinator("c1", T0 + 100)).toBe(true)
        // The same time again still finds the row (MySQL counts changed rows unless told to count matched ones).
        expect(await store.touchCoordinator("c1", T0 + 100)).toBe(true)
        expect(await store.touchCoordinator("nobody", T0 + 100)).toBe(false)
        expect(await store.listCoordinators(T0 + 50)).toEqual([coordinator("c1", { seenAt: T0 + 100 })])
        expect(await store.removeCoordinator("c1")).toBe(true)
        expect(await store.removeCoordinator("c1")).toBe(false)
        expect(await store.touchCoordinator("c1", T0 + 200)).toBe(false)
        expect((await store.listCoordinators(0)).map((c) => c.id)).toEqual(["c2"])
      })

      test("registering again rewrites the row, and removes the rows not seen since the cutoff", async () => {
        await store.registerCoordinator(coordinator("dead", { seenAt: T0 }), 0)
        await store.registerCoordinator(coordinator("alive", { seenAt: T0 + 1000 }), 0)
        await store.registerCoordinator(coordinator("me", { seenAt: T0 + 2000, pid: 1 }), 0)
        await store.registerCoordinator(coordinator("me", { seenAt: T0 + 3000, pid: 2 }), T0 + 500)
        expect(await store.listCoordinators(0)).toEqual([
          coordinator("me", { seenAt: T0 + 3000, pid: 2 }),
          coordinator("alive", { seenAt: T0 + 1000 }),
        ])
      })

      test("a host, version or URL longer than its column is cut, not refused", async () => {
        const long = coordinator("c1", {
          host: "h".repeat(300),
          version: "v".repeat(100),
          url: `http://${"u".repeat(300)}`,
        })
        await store.registerCoordinator(long, 0)
        const [row] = await store.listCoordinators(0)
        expect(row.host).toBe("h".repeat(255))
        expect(row.version).toBe("v".repeat(64))
        expect(row.url).toBe(long.url!.slice(0, 255))
      })
    })

    /**
     * Several store instances on one database, as several coordinators have: `peer` opens each (a
     * connection pool of its own).
     */
    // Only where a second store can open the database (not SQLite `:memory:`, one connection per
    // database: the SQLite file runs them), so nothing here is ever registered and then skipped.
    if (peer)
      describe("several stores on one database", () => {
        const peers: Store[] = []
        const stores = async (n: number): Promise<Store[]> => {
          while (peers.length < n - 1) peers.push(await peer!())
          return [store, ...peers.slice(0, n - 1)]
        }
        afterEach(async () => {
          await Promise.all(peers.splice(0).map((p) => p.close()))
        })
        /** `n` queued jobs, created by the stores at once (one transaction each, `ids` spread over them). */
        const queue = async (all: Store[], ids: string[], over: Partial<NewJob> = {}) => {
          await Promise.all(
            all.map(async (s, k) => {
              for (let i = k; i < ids.length; i += all.length) await s.createJob(newJob(ids[i], over), T0)
            }),
          )
        }
        const online = async (id: string, over: Partial<WorkerRegistration>) => {
          await store.upsertWorker(id, reg(over), "tok", T0)
          expect(await store.verifyWorker(id, "tok", T0)).toBe(true)
        }
        /** The worker's jobs assigned or running, per lane, as the database has them. */
        const held = async (worker: string) => (await store.laneLoads()).get(worker) ?? { probe: 0, transcode: 0 }

        test("8 claimers x 1000 jobs: each job is claimed exactly once, none is lost", async () => {
          const all = await stores(8)
          const ids = Array.from({ length: 1000 }, (_, i) => `c${String(i).padStart(4, "0")}`)
          for (let k = 0; k < 8; k++) await online(`claimer${k}`, { maxJobs: 1000 })
          await queue(all, ids)
          // Each claimer reads the head of the queue as every other one does and claims it in an order of
          // its own, until nothing is queued: most of its attempts race another claimer's for the same job.
          const won = await Promise.all(
            all.map(async (s, k) => {
              const mine: string[] = []
              const r = rng(k + 1)
              for (;;) {
                const page = (await s.queuedJobs(64)).map((j) => j.id)
                if (!page.length) return mine
                page.sort(() => r() - 0.5)
                let lost = 0
                for (const id of page) {
                  if (await s.assign(id, `claimer${k}`, T0 + 1)) mine.push(id)
                  else if (++lost === 4) break // the page is stale: read it again
                }
              }
            }),
          )
          const claims = won.flat()
          expect(claims).toHaveLength(1000)
          expect(new Set(claims).size).toBe(1000)
          const loads = await store.laneLoads()
          const rows = await store.listJobs({ limit: 1000 })
          expect(rows.filter((j) => j.status === "assigned" && j.epoch === 1)).toHaveLength(1000)
          for (let k = 0; k < 8; k++) {
            expect(loads.get(`claimer${k}`)?.transcode ?? 0).toBe(won[k].length)
            // The row names the claimer that was told it won, and no other.
            for (const id of won[k].slice(0, 5)) expect((await store.getJob(id))?.workerId).toBe(`claimer${k}`)
          }
        }, 60_000)

        test("concurrent assigners never give a worker more than max_jobs assigned and running", async () => {
          const all = await stores(8)
          await online("w-two", { maxJobs: 2, maxProbeJobs: 8 })
          const ids = Array.from({ length: 12 }, (_, i) => `t${String(i).padStart(2, "0")}`)
          await queue(all, ids)
          /** Every store tries every job still queued on the worker at once; answers how many it got. */
          const rush = async () => {
            const queued = (await store.queuedJobs(100, undefined, "transcode")).map((j) => j.id)
            const got = await Promise.all(all.flatMap((s) => queued.map((id) => s.assign(id, "w-two", T0 + 1))))
            return got.filter(Boolean) as Job[]
          }
          const first = await rush()
          expect(first).toHaveLength(2)
          expect(await held("w-two")).toEqual({ probe: 0, transcode: 2 })
          // Running counts as assigned does: starting one frees nothing.
          await store.start(first[0].id, "w-two", first[0].epoch, T0 + 2)
          expect(await rush()).toHaveLength(0)
          // Its end frees one slot: exactly one more is taken, whoever races for it.
          await store.appendOutput(first[0].id, "w-two", first[0].epoch, [], ok0, T0 + 3)
          expect(await rush()).toHaveLength(1)
          expect(await held("w-two")).toEqual({ probe: 0, transcode: 2 })
          expect((await store.listJobs({ limit: 100 })).filter((j) => j.status === "queued")).toHaveLength(9)
        }, 30_000)

        test("the probe lane: never more than max_probe_jobs probes, apart from the transcodes", async () => {
          const all = await stores(8)
          await online("w-p", { maxJobs: 1, maxProbeJobs: 2, binaries: ["ffmpeg", "ffprobe"] })
          const probes = Array.from({ length: 8 }, (_, i) => `p${String(i).padStart(2, "0")}`)
          const transcodes = Array.from({ length: 4 }, (_, i) => `x${i}`)
          await queue(all, probes, { lane: "probe" })
          await queue(all, transcodes)
          const got = await Promise.all(
            all.flatMap((s) => [...probes, ...transcodes].map((id) => s.assign(id, "w-p", T0 + 1))),
          )
          const won = got.filter(Boolean) as Job[]
          expect(won.filter((j) => j.lane === "probe")).toHaveLength(2)
          expect(won.filter((j) => j.lane === "transcode")).toHaveLength(1)
          expect(await held("w-p")).toEqual({ probe: 2, transcode: 1 })
          // An unknown worker has no slots at all.
          expect(await store.assign(probes[7], "nobody", T0 + 1)).toBeUndefined()
        }, 30_000)
      })
  })
}
