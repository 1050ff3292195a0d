import { CALLER_GONE } from "../../src/coordinator/jobs.ts"
import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { IdentityInUseError, InvalidError } from "../../src/shared/errors.ts"
import { newId } from "../../src/shared/ids.ts"
import { Kind, concatFrames, encodeFrame, encodeJsonFrame, type Frame } from "../../src/shared/protocol/frames.ts"
import type { WorkerRegistration } from "../../src/shared/protocol/schemas.ts"
import type { Assignment } from "../../src/shared/protocol/worker.ts"
import type { Store } from "../../src/store/types.ts"
import {
  JobGoneError,
  StaleJobError,
  UnknownWorkerError,
  type WorkBatch,
  type WorkerTransport,
} from "../../src/transports/types.ts"

/** What the suite needs the coordinator to run with: short waits, so that waiting is cheap to test. */
export interface PairTiming {
  /** The coordinator's poll_wait_seconds. */
  pollWaitSeconds: number
  /** The coordinator's heartbeat_interval (also how often a quiet downlink says it is alive). */
  heartbeatSeconds: number
}

/** A real coordinator and a worker talking to it over one transport. */
export interface TransportPair {
  /** The worker half, authenticated as `workerName` (an identity with the worker role). */
  worker: WorkerTransport
  workerName: string
  /** Another worker process of the same identity: a transport naming `instance` on its calls. */
  process(instance: string): WorkerTransport
  /** The coordinator's store: the suite stands in for callers (jobs, stdin, cancel) through it. */
  store: Store
  close(): Promise<void>
}

const REG: WorkerRegistration = {
  draining: false,
  binaries: ["ffmpeg"],
  paths: [],
  maxJobs: 4,
  version: "conformance",
  capabilities: { pathTokens: true },
}
const TIMING: PairTiming = { pollWaitSeconds: 0.4, heartbeatSeconds: 0.1 }
const enc = new TextEncoder()
const dec = new TextDecoder()

/** The next batch of the worker's assignment stream (one long poll), saying it follows `following`. */
async function nextBatch(
  t: WorkerTransport,
  signal = new AbortController().signal,
  following: string[] = [],
  holding: string[] = [],
): Promise<WorkBatch> {
  for await (const batch of t.assignments(
    () => TIMING.pollWaitSeconds,
    signal,
    () => following,
    () => holding,
  ))
    return batch
  throw new Error("the assignment stream ended without a batch")
}

/** Batches until one holds job `id` (the scheduler assigns it after a poll told it the worker is there). */
async function assignmentOf(t: WorkerTransport, id: string): Promise<Assignment> {
  const until = Date.now() + 10_000
  while (Date.now() < until) {
    const a = (await nextBatch(t)).jobs.find((j) => j.id === id)
    if (a) return a
  }
  throw new Error(`job ${id} was never assigned`)
}

/** Frames of a downlink until `stop` says enough (pings skipped), with a deadline. */
async function downlink(
  t: WorkerTransport,
  a: Assignment,
  stop: (seen: Frame[]) => boolean,
  after = 0,
): Promise<Frame[]> {
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), 10_000)
  const seen: Frame[] = []
  try {
    for await (const f of t.input(a.id, a.epoch, after, ac.signal)) {
      if (f.kind === Kind.ping) continue
      seen.push(f)
      if (stop(seen)) break
    }
  } finally {
    clearTimeout(timer)
    ac.abort()
  }
  return seen
}

const out = (kind: number, seq: number, text: string) => encodeFrame(kind, seq, enc.encode(text))

/**
 * The contract every worker transport keeps (src/transports/types.ts), checked against a real coordinator:
 * `makePair(timing)` starts one (with `timing`, an in-memory store and the worker identity) and the
 * worker half that reaches it. HTTP passes it (test/transports/http.test.ts); a broker transport must too.
 */
export function testTransport(name: string, makePair: (timing: PairTiming) => Promise<TransportPair>): void {
  describe(`transport conformance: ${name}`, () => {
    let pair: TransportPair
    let w: WorkerTransport
    beforeEach(async () => {
      pair = await makePair(TIMING)
      w = pair.worker
    })
    afterEach(async () => {
      await pair.close()
    })

    /** Registers and verifies the worker, as its start-up does. */
    const join = async () => {
      const timing = await w.register(REG)
      const first = await nextBatch(w)
      expect(first.jobs).toEqual([])
      await w.verify(first.verify!)
      return timing
    }
    const submit = async (
      over: {
        stdin?: boolean
        env?: Record<string, string>
        pathTokens?: boolean
        files?: { arg: number; content: string }[]
      } = {},
    ) => {
      const job = await pair.store.createJob(
        {
          id: newId(),
          requester: "alice",
          binary: "ffmpeg",
          args: ["-i", "in.mkv", "out.mkv"],
          paths: [],
          cwd: null,
          env: over.env,
          pathTokens: over.pathTokens,
          files: over.files,
          stdin: over.stdin ?? false,
          attached: false,
          retries: 0,
        },
        Date.now(),
      )
      return job.id
    }
    const running = async () => {
      await join()
      const id = await submit({ stdin: true })
      const a = await assignmentOf(w, id)
      await w.start(a.id, a.epoch)
      return a
    }

    test("register answers the coordinator's timing; the first poll asks to verify, then the worker is online", async () => {
      const timing = await w.register(REG)
      expect(timing).toMatchObject({
        pollWaitSeconds: TIMING.pollWaitSeconds,
        heartbeatSeconds: TIMING.heartbeatSeconds,
      })
      expect(timing.registrationSeconds).toBeGreaterThan(0)
      const first = await nextBatch(w)
      expect(first.verify).toBeString()
      expect((await pair.store.getWorker(pair.workerName))?.status).toBe("registering")
      await w.verify(first.verify!)
      expect((await pair.store.getWorker(pair.workerName))?.status).toBe("online")
    })

    test("one identity, one worker: a second process is refused, its calls too, its stop changes nothing", async () => {
      const ids = { a: newId(), b: newId() }
      const a = pair.process(ids.a)
      const b = pair.process(ids.b)
      await a.register({ ...REG, instance: { id: ids.a, host: "host-a", pid: 101 } })
      await a.verify((await nextBatch(a)).verify!)
      const refused = await b.register({ ...REG, instance: { id: ids.b, host: "host-b", pid: 202 } }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(refused).toBeInstanceOf(IdentityInUseError)
      expect((refused as IdentityInUseError).message).toContain("host host-a (pid 101")
      expect((refused as IdentityInUseError).details).toMatchObject({ instance: ids.a, host: "host-a", pid: 101 })
      await expect(b.heartbeat([])).rejects.toBeInstanceOf(IdentityInUseError)
      await expect(nextBatch(b)).rejects.toBeInstanceOf(IdentityInUseError)
      await b.deregister()
      expect(await pair.store.getWorker(pair.workerName)).toMatchObject({
        status: "online",
        instance: { id: ids.a, host: "host-a", pid: 101 },
      })
      // The first goes on: its heartbeats and polls are answered; its own stop does deregister it.
      expect(await a.heartbeat([])).toEqual({ stale: [], reregister: false })
      expect((await nextBatch(a)).jobs).toEqual([])
      await a.deregister()
      expect((await pair.store.getWorker(pair.workerName))?.status).toBe("offline")
    })

    test("a wrong verify token is refused with UnknownWorkerError", async () => {
      await w.register(REG)
      await nextBatch(w)
      await expect(w.verify("not-the-token")).rejects.toBeInstanceOf(UnknownWorkerError)
    })

    test("a poll of an unregistered worker is refused with UnknownWorkerError", async () => {
      await expect(nextBatch(w)).rejects.toBeInstanceOf(UnknownWorkerError)
    })

    test("a poll with no work returns an empty batch after its wait", async () => {
      await join()
      const t0 = performance.now()
      const batch = await nextBatch(w)
      const waited = performance.now() - t0
      expect(batch).toEqual({ jobs: [], downlink: [] })
      expect(waited).toBeGreaterThanOrEqual(TIMING.pollWaitSeconds * 1000 - 50)
      expect(waited).toBeLessThan(TIMING.pollWaitSeconds * 1000 + 3000)
    })

    test("a submitted job reaches the worker as an assignment with everything needed to run it", async () => {
      await join()
      const files = [{ arg: 1, content: "file '$Media/a.ts'\n" }]
      const id = await submit({ env: { TZ: "UTC", FFREPORT: "level=32" }, pathTokens: true, files })
      const a = await assignmentOf(w, id)
      expect(a).toEqual({
        id,
        epoch: a.epoch,
        binary: "ffmpeg",
        args: ["-i", "in.mkv", "out.mkv"],
        paths: [],
        cwd: null,
        env: { TZ: "UTC", FFREPORT: "level=32" },
        files,
        stdin: false,
        lane: "transcode",
        pathTokens: true,
      })
      expect(a.epoch).toBeGreaterThan(0)
      // Offered again until started: an answer lost on the way is not a lost job.
      expect((await nextBatch(w)).jobs.map((j) => j.id)).toEqual([id])
    })

    test("an assignment the worker says it holds (its start claim on the way) is not offered again", async () => {
      await join()
      const id = await submit()
      const a = await assignmentOf(w, id)
      // Held: the poll answers nothing (after its wait), though the job is still assigned.
      expect((await nextBatch(w, undefined, [], [id])).jobs).toEqual([])
      expect((await pair.store.getJob(id))?.status).toBe("assigned")
      // Not held any more (the worker lost it): offered again.
      expect((await nextBatch(w)).jobs.map((j) => j.id)).toEqual([a.id])
      const ids = Array.from({ length: REG.maxJobs + 4 + 1 }, () => newId())
      const err = await nextBatch(w, undefined, [], ids).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidError)
    })

    test("start claims the assignment once; after that it is no longer offered; a repeat of the claim stands", async () => {
      const a = await running()
      expect((await pair.store.getJob(a.id))?.status).toBe("running")
      expect((await nextBatch(w)).jobs).toEqual([])
      // Its answer lost on the way, the worker claims again: the same claim, nothing changes.
      await w.start(a.id, a.epoch)
      expect((await pair.store.events(a.id)).filter((e) => e.status === "running").length).toBe(1)
      await expect(w.start(a.id, a.epoch + 1)).rejects.toBeInstanceOf(StaleJobError)
      // Ended, it cannot be claimed again.
      await w.upload(a.id, a.epoch, encodeJsonFrame(Kind.exit, 0, { code: 0, signal: null }))
      await expect(w.start(a.id, a.epoch)).rejects.toBeInstanceOf(StaleJobError)
    })

    test("a stale epoch is refused with StaleJobError on start, upload and downlink; an unknown job with JobGoneError", async () => {
      await join()
      const id = await submit()
      const a = await assignmentOf(w, id)
      await expect(w.start(a.id, a.epoch + 1)).rejects.toBeInstanceOf(StaleJobError)
      await w.start(a.id, a.epoch)
      await expect(w.upload(a.id, a.epoch + 1, out(Kind.stdout, 1, "x"))).rejects.toBeInstanceOf(StaleJobError)
      await expect(downlink(w, { ...a, epoch: a.epoch + 1 }, () => true)).rejects.toBeInstanceOf(StaleJobError)
      const gone = newId()
      await expect(w.start(gone, 1)).rejects.toBeInstanceOf(JobGoneError)
      await expect(w.upload(gone, 1, out(Kind.stdout, 1, "x"))).rejects.toBeInstanceOf(JobGoneError)
    })

    test("uploads store output in order; repeats are ignored, a gap is refused, the exit frame ends the job", async () => {
      const a = await running()
      await w.upload(a.id, a.epoch, concatFrames([out(Kind.stderr, 1, "one "), out(Kind.stdout, 2, "two ")]))
      // A retry after an unknown outcome: same sequence numbers, stored once.
      await w.upload(a.id, a.epoch, concatFrames([out(Kind.stdout, 2, "two "), out(Kind.stderr, 3, "three")]))
      await expect(w.upload(a.id, a.epoch, out(Kind.stdout, 9, "gap"))).rejects.toBeInstanceOf(StaleJobError)
      const rows = await pair.store.readOutput(a.id, 0, 100)
      expect(rows.map((r) => [r.stream, dec.decode(r.data)])).toEqual([
        ["stderr", "one "],
        ["stdout", "two "],
        ["stderr", "three"],
      ])
      await w.upload(a.id, a.epoch, encodeJsonFrame(Kind.exit, 0, { code: 0, signal: null }))
      const job = await pair.store.getJob(a.id)
      expect(job).toMatchObject({ status: "completed", exitCode: 0 })
    })

    test("heartbeat: held jobs that are ours are not stale, others are", async () => {
      const a = await running()
      const reply = await w.heartbeat([
        { id: a.id, epoch: a.epoch },
        { id: a.id, epoch: a.epoch + 1 },
      ])
      expect(reply).toEqual({ stale: [{ id: a.id, epoch: a.epoch + 1 }], reregister: false })
    })

    test("reject gives an assignment back: re-queued, offered again at a new epoch", async () => {
      await join()
      const id = await submit()
      const a = await assignmentOf(w, id)
      await w.reject(a.id, a.epoch)
      const again = await assignmentOf(w, id)
      expect(again.epoch).toBeGreaterThan(a.epoch)
      await expect(w.start(a.id, a.epoch)).rejects.toBeInstanceOf(StaleJobError)
      await expect(w.reject(a.id, a.epoch)).rejects.toBeInstanceOf(StaleJobError)
      const events = await pair.store.events(id)
      expect(events.map((e) => e.status)).toContain("queued")
    })

    test("the downlink delivers stdin, stdin-end and signals in order, resumes after a cursor, and ends with the job", async () => {
      const a = await running()
      await pair.store.appendInput(a.id, [
        { seq: 1, kind: Kind.stdin, data: enc.encode("abc") },
        { seq: 2, kind: Kind.signal, data: enc.encode("SIGINT") },
      ])
      const first = await downlink(w, a, (s) => s.length === 2)
      expect(first.map((f) => [f.kind, f.seq, dec.decode(f.data)])).toEqual([
        [Kind.stdin, 1, "abc"],
        [Kind.signal, 2, "SIGINT"],
      ])
      // Written while the downlink waits: delivered without a new request.
      const later = downlink(w, a, (s) => s.some((f) => f.kind === Kind.stdinEnd), 2)
      await Bun.sleep(50)
      await pair.store.appendInput(a.id, [
        { seq: 3, kind: Kind.stdin, data: enc.encode("def") },
        { seq: 4, kind: Kind.stdinEnd, data: new Uint8Array() },
      ])
      expect((await later).map((f) => [f.kind, f.seq, dec.decode(f.data)])).toEqual([
        [Kind.stdin, 3, "def"],
        [Kind.stdinEnd, 4, ""],
      ])
      await w.upload(a.id, a.epoch, encodeJsonFrame(Kind.exit, 0, { code: 0, signal: null }))
      const ac = new AbortController()
      const kinds: number[] = []
      for await (const f of w.input(a.id, a.epoch, 4, ac.signal)) kinds.push(f.kind)
      expect(kinds.filter((k) => k !== Kind.ping)).toEqual([])
    })

    test("the downlink carries a cancel frame with the reason when the job is canceled", async () => {
      const a = await running()
      const frames = downlink(w, a, (s) => s.some((f) => f.kind === Kind.cancel))
      await Bun.sleep(50)
      await pair.store.requestCancel(a.id, "canceled by alice", Date.now())
      const cancel = (await frames).find((f) => f.kind === Kind.cancel)!
      expect(JSON.parse(dec.decode(cancel.data))).toEqual({ reason: "canceled by alice", kill: false })
    })

    test("the cancel frame of a job whose caller went away asks for a kill", async () => {
      const a = await running()
      const frames = downlink(w, a, (s) => s.some((f) => f.kind === Kind.cancel))
      await Bun.sleep(50)
      await pair.store.requestCancel(a.id, `${CALLER_GONE} (its connection closed)`, Date.now())
      const cancel = (await frames).find((f) => f.kind === Kind.cancel)!
      expect(JSON.parse(dec.decode(cancel.data))).toEqual({
        reason: `${CALLER_GONE} (its connection closed)`,
        kill: true,
      })
    })

    test("a running job without stdin is named in a poll's downlink once a signal or a cancel is stored, until the worker follows it", async () => {
      await join()
      const start = async () => {
        const a = await assignmentOf(w, await submit())
        await w.start(a.id, a.epoch)
        return a
      }
      const signaled = await start()
      const canceled = await start()
      const none = new AbortController().signal
      // Nothing on either downlink yet: the poll names neither.
      expect(await nextBatch(w)).toEqual({ jobs: [], downlink: [] })
      // A signal stored while the poll waits is its answer.
      const told = nextBatch(w)
      await Bun.sleep(50)
      await pair.store.appendInput(signaled.id, [{ seq: 1, kind: Kind.signal, data: enc.encode("SIGINT") }])
      expect(await told).toEqual({ jobs: [], downlink: [{ id: signaled.id, epoch: signaled.epoch }] })
      // Followed: not named again, while a cancel names the other job.
      await pair.store.requestCancel(canceled.id, "canceled by alice", Date.now())
      expect(await nextBatch(w, none, [signaled.id])).toEqual({
        jobs: [],
        downlink: [{ id: canceled.id, epoch: canceled.epoch }],
      })
      expect(await nextBatch(w, none, [signaled.id, canceled.id])).toEqual({ jobs: [], downlink: [] })
      // Its downlink then carries what was stored before it was opened.
      const frames = await downlink(w, signaled, (f) => f.length === 1)
      expect(frames.map((f) => [f.kind, dec.decode(f.data)])).toEqual([[Kind.signal, "SIGINT"]])
    })

    test("a poll that names no followed downlinks (a worker that follows them all) is never answered with one", async () => {
      await join()
      const a = await assignmentOf(w, await submit())
      await w.start(a.id, a.epoch)
      await pair.store.appendInput(a.id, [{ seq: 1, kind: Kind.signal, data: enc.encode("SIGINT") }])
      for await (const batch of w.assignments(() => TIMING.pollWaitSeconds, new AbortController().signal)) {
        expect(batch).toEqual({ jobs: [], downlink: [] })
        break
      }
    })

    test("a poll naming more followed downlinks than the worker has job slots is refused", async () => {
      await join()
      const ids = Array.from({ length: REG.maxJobs + 4 + 1 }, () => newId())
      const err = await nextBatch(w, new AbortController().signal, ids).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(InvalidError)
      expect((err as Error).message).toContain("at most 8")
    })

    test("the assignment stream stops when its signal aborts", async () => {
      await join()
      const ac = new AbortController()
      const batches: WorkBatch[] = []
      const done = (async () => {
        for await (const b of w.assignments(() => TIMING.pollWaitSeconds, ac.signal)) batches.push(b)
      })()
      await Bun.sleep(50)
      ac.abort()
      await done
      expect(batches.length).toBeLessThanOrEqual(1)
    })

    test("deregister: the worker is offline, its heartbeat asks it to register again, its poll is refused", async () => {
      await join()
      await w.deregister()
      expect((await pair.store.getWorker(pair.workerName))?.status).toBe("offline")
      expect(await w.heartbeat([])).toEqual({ stale: [], reregister: true })
      await expect(nextBatch(w)).rejects.toBeInstanceOf(UnknownWorkerError)
      // Registering again brings it back through verification.
      await join()
      expect((await pair.store.getWorker(pair.workerName))?.status).toBe("online")
    })
  })
}
