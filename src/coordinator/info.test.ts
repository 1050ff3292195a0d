import { describe, expect, test } from "bun:test"
import { waitFor } from "../../test/helpers/bin.ts"
import { bytes, memoryStore, newJob, outputChunk, registration, T0, toolCaps } from "../../test/helpers/fixtures.ts"
import { createLogger } from "../shared/log.ts"
import type { ToolCapabilities } from "../shared/protocol/capabilities.ts"
import type { Job, Worker } from "../shared/protocol/schemas.ts"
import type { Store } from "../store/types.ts"
import * as v from "valibot"
import { CoordinatorConfig } from "../shared/config/server-schema.ts"
import { infoOf, type Deps } from "./api/app.ts"
import { createInfoCache, infoKey, referenceWorker, toolsHash, type InfoRequest } from "./info.ts"

const log = createLogger({ level: "error" })
const tool = toolCaps
const worker = (id: string, over: Partial<Worker> = {}): Worker => ({
  id,
  binaries: ["ffmpeg"],
  paths: [],
  maxJobs: 2,
  version: "t",
  capabilities: {},
  tools: { ffmpeg: tool() },
  labels: {},
  weight: 1,
  maxProbeJobs: 4,
  status: "online",
  registeredAt: T0,
  lastSeen: T0,
  drainRequested: false,
  ...over,
})

describe("referenceWorker", () => {
  const wide = tool({ encoders: ["libx264", "aac", "h264_nvenc"] })
  test.each<[string, Worker[], string | undefined, string | undefined]>([
    ["the widest tools", [worker("a"), worker("b", { tools: { ffmpeg: wide } })], undefined, "b"],
    ["ties by id", [worker("b"), worker("a")], undefined, "a"],
    ["reference_worker while online and able", [worker("a"), worker("b", { tools: { ffmpeg: wide } })], "a", "a"],
    ["reference_worker offline: the widest", [worker("a", { status: "offline" }), worker("b")], "a", "b"],
    ["never one without tools for the binary", [worker("a", { tools: {} }), worker("b")], "a", "b"],
    ["never a draining one", [worker("a", { status: "draining" })], undefined, undefined],
    ["never one that stopped polling", [worker("a", { lastSeen: T0 - 60_000 }), worker("b")], "a", "b"],
    ["none at all", [], undefined, undefined],
  ])("%s", (_name, workers, preferred, want) => {
    const job = { binary: "ffmpeg", paths: [] }
    expect(referenceWorker(workers, job, preferred, { now: T0, staleMs: 30_000 })?.id).toBe(want)
  })
  test("only a worker that could run the command: its path variables, path tokens if it asks", () => {
    const workers = [
      worker("a", { tools: { ffmpeg: wide }, capabilities: { pathTokens: true } }),
      worker("b", { paths: ["Media"] }),
      worker("c", { paths: ["Media"], capabilities: { pathTokens: true } }),
    ]
    const pick = (paths: string[], pathTokens: boolean, preferred?: string) =>
      referenceWorker(workers, { binary: "ffmpeg", paths, pathTokens }, preferred)?.id
    expect(pick([], false)).toBe("a")
    expect(pick(["Media"], false)).toBe("b")
    expect(pick(["Media"], true)).toBe("c")
    // reference_worker is passed over for a command it could not run.
    expect(pick(["Media"], false, "a")).toBe("b")
    expect(pick(["Other"], false)).toBeUndefined()
  })
})

describe("infoKey", () => {
  const req: InfoRequest = { binary: "ffmpeg", args: ["-version"], paths: [], env: {}, pathTokens: true }
  const h = toolsHash(tool())
  test("every part of the request, the worker and its tools change the key", () => {
    const base = infoKey("a", h, req)
    expect(infoKey("a", h, { ...req })).toBe(base)
    for (const other of [
      infoKey("b", h, req),
      infoKey("a", toolsHash(tool({ version: "6.0.1-Jellyfin" })), req),
      infoKey("a", h, { ...req, args: ["-hide_banner", "-version"] }),
      infoKey("a", h, { ...req, binary: "ffprobe" }),
      infoKey("a", h, { ...req, pathTokens: false }),
      infoKey("a", h, { ...req, env: { AV_LOG_FORCE_COLOR: "1" } }),
      infoKey("a", h, { ...req, paths: ["Media"] }),
    ])
      expect(other).not.toBe(base)
  })
  test("the order of paths and environment entries does not", () => {
    const a = infoKey("a", h, { ...req, paths: ["A", "B"], env: { X: "1", Y: "2" } })
    expect(infoKey("a", h, { ...req, paths: ["B", "A"], env: { Y: "2", X: "1" } })).toBe(a)
  })
})

/** A store with online workers `ids`, each with `tools` (and path tokens, as every current worker). */
async function cluster(workers: Record<string, ToolCapabilities>): Promise<Store> {
  const store = await memoryStore()
  for (const [id, t] of Object.entries(workers)) {
    const reg = registration({ tools: { ffmpeg: t }, capabilities: { pathTokens: true } })
    await store.upsertWorker(id, reg, `tok-${id}`, T0)
    await store.verifyWorker(id, `tok-${id}`, T0)
  }
  return store
}

describe("the cache", () => {
  const req: InfoRequest = { binary: "ffmpeg", args: ["-version"], paths: [], env: {}, pathTokens: true }
  const ended = (id: string, workerId: string, status: Job["status"] = "completed") => ({ id, workerId, status }) as Job

  /** Asks once: the plan, the job that followed it, and its run's upload as the store took it. */
  async function answerOnce(info: ReturnType<typeof createInfoCache>, id: string, out: string, code = 0) {
    const plan = await info.plan(req)
    expect(plan?.kind).toBe("ask")
    if (plan?.kind !== "ask") throw new Error("no ask")
    info.asking({ id }, plan)
    info.uploaded(
      id,
      1,
      [outputChunk(1, out), outputChunk(2, "err", "stderr")],
      undefined,
      ended(id, plan.pin, "running"),
    )
    // A repeated upload (its answer was lost) is not counted twice.
    info.uploaded(
      id,
      1,
      [outputChunk(2, "err", "stderr")],
      { code, signal: null },
      ended(id, plan.pin, code ? "failed" : "completed"),
    )
    return plan
  }

  test("not an info command, or no worker with tools: no plan", async () => {
    const info = createInfoCache({ store: await cluster({}), log, maxEntries: 8 })
    expect(await info.plan(req)).toBeUndefined()
    const info2 = createInfoCache({ store: await cluster({ a: tool() }), log, maxEntries: 8 })
    expect(await info2.plan({ ...req, args: ["-i", "/m/a.mkv", "-f", "null", "-"] })).toBeUndefined()
  })

  test("asked once, then answered with the same bytes and exit code, pinned to the same worker", async () => {
    const info = createInfoCache({
      store: await cluster({ a: tool(), b: tool({ filters: ["scale", "yadif"] }) }),
      log,
      maxEntries: 8,
    })
    const asked = await answerOnce(info, "01J00000000000000000000001", "ffmpeg version 5.1.9\n")
    expect(asked.pin).toBe("b")
    const hit = await info.plan(req)
    expect(hit).toEqual({
      kind: "answer",
      pin: "b",
      answer: {
        rows: [
          { stream: "stdout", data: bytes("ffmpeg version 5.1.9\n") },
          { stream: "stderr", data: bytes("err") },
        ],
        code: 0,
      },
      reason: "answered from the info cache: ffmpeg 5.1.9-0+deb12u1 of worker b",
    })
    expect(info.size()).toEqual({ entries: 1, bytes: 24, pending: 0, waiting: 0 })
  })

  test("a non-zero exit is an answer too (`-h encoder=nope`); a signal, an error or a lost run is not", async () => {
    const info = createInfoCache({ store: await cluster({ a: tool() }), log, maxEntries: 8 })
    await answerOnce(info, "01J00000000000000000000002", "", 1)
    expect((await info.plan(req))?.kind).toBe("answer")
    const other = { ...req, args: ["-encoders"] }
    for (const exit of [
      { code: null, signal: "SIGKILL" },
      { code: 0, signal: null, error: "worker refused the job" },
      { code: null, signal: null, abandoned: "worker stopped" },
    ]) {
      const plan = await info.plan(other)
      if (plan?.kind !== "ask") throw new Error("expected an ask")
      info.asking({ id: "01J00000000000000000000003" }, plan)
      info.uploaded(
        "01J00000000000000000000003",
        1,
        [outputChunk(1, "x")],
        exit,
        ended("01J00000000000000000000003", "a", "failed"),
      )
      expect((await info.plan(other))?.kind).toBe("ask")
    }
  })

  test("a worker's new tools drop its old answers", async () => {
    const store = await cluster({ a: tool() })
    const info = createInfoCache({ store, log, maxEntries: 8 })
    await answerOnce(info, "01J00000000000000000000004", "old")
    await store.upsertWorker(
      "a",
      registration({ tools: { ffmpeg: tool({ version: "6.0.1-Jellyfin" }) }, capabilities: { pathTokens: true } }),
      "tok-a",
      T0 + 1,
    )
    expect((await info.plan(req))?.kind).toBe("ask")
    expect(info.size().entries).toBe(0)
  })

  test("bounded: the least recently used answer goes first", async () => {
    const info = createInfoCache({ store: await cluster({ a: tool() }), log, maxEntries: 2 })
    const ask = async (args: string[], id: string) => {
      const plan = await info.plan({ ...req, args })
      if (plan?.kind !== "ask") return plan?.kind
      info.asking({ id }, plan)
      info.uploaded(id, 1, [outputChunk(1, args.join(" "))], { code: 0, signal: null }, ended(id, "a"))
      return "ask"
    }
    expect(await ask(["-version"], "01J00000000000000000000005")).toBe("ask")
    expect(await ask(["-encoders"], "01J00000000000000000000006")).toBe("ask")
    expect(await ask(["-version"], "01J00000000000000000000007")).toBe("answer") // -version is now the newest
    expect(await ask(["-filters"], "01J00000000000000000000008")).toBe("ask") // pushes -encoders out
    expect(await ask(["-version"], "01J00000000000000000000009")).toBe("answer")
    expect(await ask(["-encoders"], "01J0000000000000000000000A")).toBe("ask")
  })

  test("info_cache_entries: 0 keeps nothing", async () => {
    const info = createInfoCache({ store: await cluster({ a: tool() }), log, maxEntries: 0 })
    await answerOnce(info, "01J0000000000000000000000B", "v")
    expect((await info.plan(req))?.kind).toBe("ask")
  })

  test("a plan whose job was never created is forgotten: the next identical command asks again", async () => {
    const store = await cluster({ a: tool() })
    const info = createInfoCache({ store, log, maxEntries: 8 })
    const plan = await info.plan(req)
    if (plan?.kind !== "ask") throw new Error("expected an ask")
    info.asking({ id: "01J0000000000000000000000D" }, plan)
    const waits = await info.plan(req)
    if (waits?.kind !== "wait") throw new Error("expected a wait")
    info.waiting({ id: "01J0000000000000000000000E" }, waits)
    info.abandoned("01J0000000000000000000000E")
    info.abandoned("01J0000000000000000000000D")
    expect(info.size()).toEqual({ entries: 0, bytes: 0, pending: 0, waiting: 0 })
    expect((await info.plan(req))?.kind).toBe("ask")
  })

  test("a followed job canceled before it ran is forgotten", async () => {
    const store = await cluster({ a: tool() })
    const info = createInfoCache({ store, log, maxEntries: 8 })
    const plan = await info.plan(req)
    if (plan?.kind !== "ask") throw new Error("expected an ask")
    const job = await store.createJob(newJob("01J0000000000000000000000C", { pin: plan.pin, lane: "probe" }), T0)
    info.asking(job, plan)
    expect(info.size().pending).toBe(1)
    await store.requestCancel(job.id, "canceled by test", T0 + 1)
    expect(info.size().pending).toBe(0)
  })
})

describe("identical commands at once", () => {
  const req: InfoRequest = { binary: "ffmpeg", args: ["-version"], paths: [], env: {}, pathTokens: true }
  const J1 = "01J0000000000000000000001A"
  const J2 = "01J0000000000000000000002A"
  const J3 = "01J0000000000000000000003A"
  /** The first asks; the next two wait (queued, pinned), one of them is assigned to the worker meanwhile. */
  async function setup() {
    const store = await cluster({ a: tool() })
    const info = createInfoCache({ store, log, maxEntries: 8, now: () => T0 + 5 })
    const first = await info.plan(req)
    if (first?.kind !== "ask") throw new Error("expected an ask")
    info.asking({ id: J1 }, first)
    await store.createJob(newJob(J1, { pin: "a", lane: "probe" }), T0)
    for (const id of [J2, J3]) {
      const plan = await info.plan(req)
      expect(plan).toEqual({ kind: "wait", pin: "a", key: first.key })
      if (plan?.kind !== "wait") throw new Error("expected a wait")
      await store.createJob(newJob(id, { pin: "a", lane: "probe" }), T0 + 1)
      info.waiting({ id }, plan)
    }
    await store.assign(J3, "a", T0 + 2)
    return { store, info }
  }

  test("the waiting ones get the asked one's answer, unless a worker took them meanwhile", async () => {
    const { store, info } = await setup()
    expect(info.size().waiting).toBe(2)
    const done = { id: J1, workerId: "a", status: "completed" } as Job
    info.uploaded(J1, 1, [outputChunk(1, "ffmpeg version 5.1.9\n")], { code: 0, signal: null }, done)
    const answered = await waitFor(async () => {
      const j = await store.getJob(J2)
      return j?.status === "completed" ? j : undefined
    })
    expect(answered.exitCode).toBe(0)
    expect((await store.events(J2)).at(-1)?.reason).toBe(
      `answered with the answer of job ${J1}: ffmpeg 5.1.9-0+deb12u1 of worker a`,
    )
    expect(new TextDecoder().decode((await store.readOutput(J2, 0, 10))[0]!.data)).toBe("ffmpeg version 5.1.9\n")
    // Assigned before the answer came: it runs on its worker as any job.
    expect((await store.getJob(J3))!.status).toBe("assigned")
    expect(info.size().waiting).toBe(0)
  })

  test("no clean answer (the asked one was killed): the waiting ones stay queued and run", async () => {
    const { store, info } = await setup()
    const killed = { id: J1, workerId: "a", status: "failed" } as Job
    info.uploaded(J1, 1, [], { code: null, signal: "SIGKILL" }, killed)
    expect(info.size()).toMatchObject({ waiting: 0, entries: 0 })
    expect((await store.getJob(J2))!.status).toBe("queued")
    // The next identical command asks again.
    expect((await info.plan(req))?.kind).toBe("ask")
  })

  test("the asked one canceled before it ran: the waiting ones are let go", async () => {
    const { store, info } = await setup()
    await store.requestCancel(J1, "canceled by test", T0 + 3)
    expect(info.size()).toMatchObject({ waiting: 0, pending: 0 })
    expect((await store.getJob(J2))!.status).toBe("queued")
  })
})

describe("the coordinator's info cache (infoOf)", () => {
  test("judges workers live as the scheduler does: a reference worker whose poll has been gone poll_gone_seconds is passed over", async () => {
    const store = await cluster({ wide: tool({ encoders: ["libx264", "aac", "libx265"] }), narrow: tool() })
    const config = v.parse(CoordinatorConfig, { scheduling: { poll_gone_seconds: 2 } })
    const clock = { at: T0 + 5_000 }
    const deps = { store, log, config, now: () => clock.at, staleMs: 60_000 } as unknown as Deps
    const info = infoOf(deps)
    const req: InfoRequest = { binary: "ffmpeg", args: ["-version"], paths: [], env: {}, pathTokens: true }
    for (const w of ["wide", "narrow"]) await store.touchWorker(w, T0 + 1_000, "open")
    expect(await info.plan(req)).toMatchObject({ kind: "ask", pin: "wide" })
    // Killed: its poll closed 3 s ago and it has not polled since; it is not stale yet (last heard from then).
    await store.touchWorker("wide", T0 + 2_000, "closed")
    expect(await info.plan(req)).toMatchObject({ kind: "ask", pin: "narrow" })
    await store.close()
  })
})
