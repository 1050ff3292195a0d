import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test"
import { testStore } from "../../../test/conformance/store.ts"
import {
  EXIT_OK as ok0,
  mappedJob as newJob,
  outputChunk as out,
  registration,
  T0,
  TEST_KEY as KEY,
  tempDir,
  bytes as text,
} from "../../../test/helpers/fixtures.ts"
import { openPeer, peerStore, type Call, type Peer, type Settled } from "../../../test/helpers/store-peer.ts"
import { Database } from "bun:sqlite"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { Kind } from "../../shared/protocol/frames.ts"
import { createSqliteStore } from "../sqlite/index.ts"
import type { NewJob, Store } from "../types.ts"

const tmp = tempDir("store")
const tempPath = () => tmp.fresh()
afterAll(tmp.remove)

// The Store contract, on SQLite in memory and in a file; below, what only SQLite files do.
testStore("sqlite :memory:", () => createSqliteStore({ path: ":memory:" }))
let lastPath = ""
testStore(
  "sqlite file",
  () => createSqliteStore({ path: (lastPath = tempPath()) }),
  // In a thread of its own: two instances in one thread cannot race (store-peer.ts).
  () => peerStore(lastPath),
)

/** A database as dffmpeg 0.1 (schema version 1) left it, with one running job whose stdin was fully uploaded. */
function v1Database(path: string): void {
  mkdirSync(dirname(path), { recursive: true })
  const db = new Database(path, { create: true, strict: true })
  db.exec(`
    CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
    INSERT INTO meta VALUES ('schema_version', '1');
    CREATE TABLE users (name text PRIMARY KEY, role text NOT NULL, key text NOT NULL, created_at integer NOT NULL);
    CREATE TABLE workers (id text PRIMARY KEY, binaries text NOT NULL, paths text NOT NULL, max_jobs integer NOT NULL, version text NOT NULL,
      capabilities text NOT NULL, registered_at integer NOT NULL, last_seen integer NOT NULL);
    CREATE TABLE jobs (id text PRIMARY KEY, requester text NOT NULL, binary text NOT NULL, args text NOT NULL, paths text NOT NULL, cwd text,
      stdin integer NOT NULL DEFAULT 1, status text NOT NULL, epoch integer NOT NULL DEFAULT 0, worker_id text, out_seq integer NOT NULL DEFAULT 0,
      exit_code integer, exit_signal text, error text, created_at integer NOT NULL, updated_at integer NOT NULL, assigned_at integer,
      started_at integer, finished_at integer);
    CREATE INDEX jobs_status_id ON jobs (status, id);
    CREATE INDEX jobs_worker_status ON jobs (worker_id, status);
    CREATE INDEX jobs_requester_id ON jobs (requester, id);
    CREATE TABLE job_output (pos integer PRIMARY KEY AUTOINCREMENT, job_id text NOT NULL, epoch integer NOT NULL, seq integer NOT NULL,
      stream integer NOT NULL, data blob NOT NULL, CONSTRAINT job_output_attempt_seq UNIQUE (job_id, epoch, seq));
    CREATE INDEX job_output_job_pos ON job_output (job_id, pos);
    CREATE TABLE job_input (job_id text NOT NULL, seq integer NOT NULL, data blob, CONSTRAINT job_input_pk PRIMARY KEY (job_id, seq));
    INSERT INTO workers VALUES ('w1', '["ffmpeg"]', '["Movies"]', 2, '0.1.0', '{}', ${T0}, ${T0 + 3});
    INSERT INTO jobs VALUES ('old', 'alice', 'ffmpeg', '["-i","-"]', '[]', NULL, 1, 'running', 1, 'w1', 1, NULL, NULL, NULL, ${T0}, ${T0 + 3}, ${T0 + 1}, ${T0 + 2}, NULL);
    INSERT INTO job_output (job_id, epoch, seq, stream, data) VALUES ('old', 1, 1, 1, x'6869');
  `)
  // Version 1 stored stdin bytes, and the end of stdin as a row without data.
  db.query("INSERT INTO job_input VALUES (?, ?, ?)").run("old", 1, new TextEncoder().encode("abc"))
  db.query("INSERT INTO job_input VALUES (?, ?, ?)").run("old", 2, null)
  db.close()
}

describe("upgrading a schema version 1 database", () => {
  let store: Store

  beforeEach(async () => {
    const path = tempPath()
    v1Database(path)
    store = createSqliteStore({ path })
    await store.migrate()
  })
  afterEach(async () => {
    await store.close()
  })

  test("keeps jobs, output and workers, with the new fields at their neutral values", async () => {
    expect(await store.getJob("old")).toMatchObject({
      status: "running",
      epoch: 1,
      workerId: "w1",
      attached: false,
      retries: 0,
      attempts: 0,
      excluded: [],
      clientSeenAt: null,
      cancelRequestedAt: null,
    })
    expect((await store.readOutput("old", 0, 10)).map((r) => new TextDecoder().decode(r.data))).toEqual(["hi"])
    // Known workers stay usable without registering again.
    expect(await store.getWorker("w1")).toMatchObject({ status: "online", lastSeen: T0 + 3 })
    expect(await store.events("old")).toEqual([])
    // And the job carries on: the worker's exit ends it, recorded in the (new) timeline.
    expect(await store.appendOutput("old", "w1", 1, [out(2, "!")], ok0, T0 + 10)).toMatchObject({
      ok: true,
      job: { status: "completed" },
    })
    expect((await store.events("old")).map((e) => e.status)).toEqual(["completed"])
  })

  test("keeps the stdin bytes as stdin entries", async () => {
    const [first] = await store.readInput("old", 0, 10)
    expect(first).toEqual({ seq: 1, kind: Kind.stdin, data: text("abc") })
  })

  test("turns version 1's end-of-stdin row into a stdinEnd entry", async () => {
    const rows = await store.readInput("old", 0, 10)
    expect(rows.map((r) => [r.seq, r.kind])).toEqual([
      [1, Kind.stdin],
      [2, Kind.stdinEnd],
    ])
  })

  test("a job running at the upgrade is reaped like any other once its worker is silent", async () => {
    expect((await store.runningWithoutHeartbeat(T0 + 60_000)).map((j) => j.id)).toEqual(["old"])
  })
})

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
    await coordinator.upsertWorker("w1", registration(), "tok", T0)
    await coordinator.assign("j1", "w1", T0)
    await coordinator.start("j1", "w1", 1, T0)
    await coordinator.appendOutput("j1", "w1", 1, [out(1, "hello")], undefined, T0)

    expect(await coordinator.getCredential("alice")).toMatchObject({ role: "client", key: KEY })
    expect((await admin.getJob("j1"))?.status).toBe("running")
    expect((await admin.readOutput("j1", 0, 10)).map((r) => new TextDecoder().decode(r.data))).toEqual(["hello"])

    // The admin cancels the job; the coordinator's next upload sees it ended.
    expect(await admin.failJob("j1", "canceled by admin", T0 + 1)).toMatchObject({ status: "failed" })
    expect(await coordinator.appendOutput("j1", "w1", 1, [out(2, "more")], undefined, T0 + 2)).toMatchObject({
      ok: false,
      reason: "stale",
    })
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

/**
 * Two instances on one file racing for the same transitions. The second instance lives in its own thread
 * (test/helpers/store-peer.ts), as another coordinator's process would: in one thread, bun:sqlite's
 * synchronous busy wait would block the lock holder too. Each side issues all its calls at once; the two
 * sides walk the jobs in opposite orders so that they meet, and collide, somewhere in the middle.
 */
describe("two sqlite store instances on one file, in two threads, racing", () => {
  const N = 40
  const ids = Array.from({ length: N }, (_, i) => `j${String(i).padStart(3, "0")}`)
  const TERMINAL = ["completed", "failed", "canceled"]
  let path: string
  let store: Store
  let peer: Peer

  beforeEach(async () => {
    path = tempPath()
    store = createSqliteStore({ path })
    await store.migrate()
    peer = await openPeer(path)
  })
  afterEach(async () => {
    await peer.close()
    await store.close()
  })

  const runningJobs = async (over: Partial<NewJob> = {}) => {
    await store.upsertWorker("w1", registration({ maxJobs: N }), "tok", T0)
    for (const id of ids) {
      await store.createJob(newJob(id, over), T0)
      await store.assign(id, "w1", T0 + 1)
      await store.start(id, "w1", 1, T0 + 2)
    }
  }
  const settledOk = (results: Settled[]) => {
    expect(results.filter((r) => !r.ok)).toEqual([])
    return results.map((r) => (r as { value: unknown }).value)
  }
  const events = async (id: string) => store.events(id)

  test("loseJob and failJob on the same running jobs: one terminal event each, one winner each", async () => {
    await runningJobs({ attached: true })
    const calls: Call[] = ids.flatMap((id): Call[] => [
      ["loseJob", [id, 1, "peer: worker lost", T0 + 10]],
      ["failJob", [id, "peer: failed", T0 + 10, 1]],
      ["loseJob", [id, 1, "peer: worker lost again", T0 + 10]],
    ])
    const local = () =>
      Promise.all(
        [...ids]
          .reverse()
          .flatMap((id) => [
            store.failJob(id, "main: failed", T0 + 10),
            store.loseJob(id, 1, "main: worker lost", T0 + 10),
            store.failJob(id, "main: again", T0 + 10, 1),
          ]),
      )
    const res = await peer.race(calls, local)
    const theirs = settledOk(res.peer)
    for (const [i, id] of ids.entries()) {
      const wins = [...theirs.slice(i * 3, i * 3 + 3), ...res.local.slice((N - 1 - i) * 3, (N - i) * 3)].filter(
        (v) => v !== undefined,
      )
      expect({ id, wins: wins.length }).toEqual({ id, wins: 1 })
      const terminal = (await events(id)).filter((e) => TERMINAL.includes(e.status))
      expect({ id, terminal: terminal.length }).toEqual({ id, terminal: 1 })
      const job = (await store.getJob(id))!
      expect(job.status).toBe("failed")
      expect(job.error).toBe(terminal[0].reason)
    }
  })

  test("loseJob of detached jobs with a retry from both sides: re-queued exactly once each", async () => {
    await runningJobs({ retries: 1 })
    for (const id of ids) await store.appendOutput(id, "w1", 1, [out(1, "x")], undefined, T0 + 3)
    const calls: Call[] = ids.flatMap((id): Call[] => [
      ["loseJob", [id, 1, "peer", T0 + 10]],
      ["loseJob", [id, 1, "peer", T0 + 10]],
    ])
    const res = await peer.race(calls, () =>
      Promise.all(
        [...ids]
          .reverse()
          .flatMap((id) => [store.loseJob(id, 1, "main", T0 + 10), store.loseJob(id, 1, "main", T0 + 10)]),
      ),
    )
    const wins = [...settledOk(res.peer), ...res.local].filter((v) => v !== undefined) as { requeued: boolean }[]
    expect(wins).toHaveLength(N)
    expect(wins.every((w) => w.requeued)).toBe(true)
    for (const id of ids) {
      expect((await events(id)).map((e) => e.status)).toEqual(["queued", "assigned", "running", "queued"])
      expect(await store.getJob(id)).toMatchObject({ status: "queued", attempts: 1, excluded: ["w1"] })
      expect(await store.readOutput(id, 0, 10)).toEqual([])
    }
  })

  test("a cancel request racing the worker's exit: exactly one terminal event, consistent with the timeline", async () => {
    await runningJobs({ attached: true })
    const calls: Call[] = ids.map((id): Call => ["requestCancel", [id, "canceled by alice", T0 + 10]])
    const res = await peer.race(calls, () =>
      Promise.all([...ids].reverse().map((id) => store.appendOutput(id, "w1", 1, [out(1, "bye")], ok0, T0 + 10))),
    )
    settledOk(res.peer)
    for (const r of res.local) expect(r).toMatchObject({ ok: true, finished: true })
    for (const id of ids) {
      const statuses = (await events(id)).map((e) => e.status)
      const job = (await store.getJob(id))!
      // Either the exit came first (completed; the request found nothing to cancel), or the request did
      // (canceling, then the exit ends it canceled).
      expect(statuses).toEqual(
        job.status === "completed"
          ? ["queued", "assigned", "running", "completed"]
          : ["queued", "assigned", "running", "canceling", "canceled"],
      )
      expect(await store.readOutput(id, 0, 10)).toHaveLength(1)
    }
  })

  test("assign from both sides: each job goes to exactly one worker at epoch 1", async () => {
    for (const id of ids) await store.createJob(newJob(id), T0)
    for (const w of ["peer-worker", "main-worker"]) await store.upsertWorker(w, registration({ maxJobs: N }), "tok", T0)
    const calls: Call[] = ids.map((id): Call => ["assign", [id, "peer-worker", T0 + 1]])
    const res = await peer.race(calls, () =>
      Promise.all([...ids].reverse().map((id) => store.assign(id, "main-worker", T0 + 1))),
    )
    const wins = [...settledOk(res.peer), ...res.local].filter((v) => v !== undefined)
    expect(wins).toHaveLength(N)
    for (const id of ids) {
      const evs = await events(id)
      expect(evs.map((e) => [e.status, e.epoch])).toEqual([
        ["queued", 0],
        ["assigned", 1],
      ])
      expect((await store.getJob(id))?.workerId).toBe(evs[1].workerId!)
    }
  })
})

describe("workers' tools", () => {
  const tool = (encoders: string[]) => ({
    version: "5.1.9",
    encoders,
    decoders: ["h264"],
    hwaccels: [],
    hwDevices: [],
    filters: ["scale"],
    muxers: ["mp4"],
    demuxers: ["matroska"],
  })
  test("parsed once per registration: the same frozen object while the stored text is unchanged, new ones after", async () => {
    const store = createSqliteStore({ path: ":memory:" })
    await store.migrate()
    try {
      const reg = registration({ paths: ["Movies"], version: "1", tools: { ffmpeg: tool(["libx264"]) } })
      await store.upsertWorker("w1", reg, "tok", 1)
      const a = (await store.listWorkers())[0].tools
      const b = (await store.getWorker("w1"))!.tools
      expect(b).toBe(a)
      expect(Object.isFrozen(a.ffmpeg.encoders)).toBe(true)
      expect(() => (a.ffmpeg.encoders as string[]).push("x")).toThrow(TypeError)
      await store.upsertWorker("w1", { ...reg, tools: { ffmpeg: tool(["libx264", "libx265"]) } }, "tok", 2)
      const c = (await store.listWorkers())[0].tools
      expect(c).not.toBe(a)
      expect(c.ffmpeg.encoders).toEqual(["libx264", "libx265"])
      expect(a.ffmpeg.encoders).toEqual(["libx264"])
      // A re-registration with the same tools keeps them, and a read then does not fetch the tools text.
      await store.upsertWorker("w1", { ...reg, tools: { ffmpeg: tool(["libx264", "libx265"]) } }, "tok", 3)
      expect((await store.listWorkers())[0].tools).toBe(c)
    } finally {
      await store.close()
    }
  })

  test("a worker read fetches its tools only when this store has not seen their revision", async () => {
    const sqls: string[] = []
    const store = createSqliteStore({ path: ":memory:", onStatement: (q) => void sqls.push(q) })
    await store.migrate()
    try {
      const reg = registration({ paths: ["Movies"], version: "1", tools: { ffmpeg: tool(["libx264"]) } })
      await store.upsertWorker("w1", reg, "tok", 1)
      await store.upsertWorker("w2", reg, "tok", 1)
      await store.listWorkers()
      sqls.length = 0
      for (let i = 0; i < 3; i++) await store.listWorkers()
      await store.getWorker("w2")
      expect(sqls.filter((q) => /"tools"/.test(q))).toEqual([])
      // A new tool set on w2: its tools are read once more (by the registration's answer), w1's are not.
      await store.upsertWorker("w2", { ...reg, tools: { ffmpeg: tool(["libx265"]) } }, "tok", 2)
      const ws = await store.listWorkers()
      expect(ws.map((w) => w.tools.ffmpeg.encoders)).toEqual([["libx264"], ["libx265"]])
      const reads = sqls.filter((q) => /^select "id", "tools"/.test(q))
      expect(reads.length).toBe(1)
    } finally {
      await store.close()
    }
  })
})
