import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import type { Worker, WorkerRegistration } from "../shared/protocol/schemas.ts"
import { createLogger } from "../shared/log.ts"
import type { Store } from "../store/index.ts"
import { memoryStore, newJob, registration, T0, toolCaps } from "../../test/helpers/fixtures.ts"
import { waitFor } from "../../test/helpers/bin.ts"
import { Hub, topic } from "./hub.ts"
import { NO_NEEDS, type ToolCapabilities } from "../shared/protocol/capabilities.ts"
import {
  createScheduler,
  eligible,
  missing,
  pick,
  type Candidate,
  type Scheduler,
  knownNeeds,
  pinNow,
  unrunnable,
  WAIT,
  waitReasons,
  type Waiting,
} from "./scheduler.ts"
import { queueKey } from "./priorities.ts"
import type { Priority } from "../shared/protocol/capabilities.ts"
import type { NewJob } from "../store/types.ts"
import { wireWakeups } from "./wakeups.ts"
import { noCapableWorker } from "../shared/protocol/fallback.ts"

function worker(id: string, over: Partial<Worker> = {}): Worker {
  return {
    id,
    binaries: ["ffmpeg", "ffprobe"],
    paths: [],
    maxJobs: 2,
    version: "test",
    capabilities: {},
    tools: {},
    labels: {},
    weight: 1,
    maxProbeJobs: 4,
    status: "online",
    registeredAt: 0,
    lastSeen: 0,
    drainRequested: false,
    ...over,
  }
}

const cand = (id: string, load: number, over: Partial<Worker> = {}): Candidate => ({ worker: worker(id, over), load })
const ffmpeg = { binary: "ffmpeg", paths: [] as string[] }

describe("eligible", () => {
  const live = { now: 100_000, staleMs: 30_000 }
  const tokens = { ...ffmpeg, pathTokens: true }
  test.each<[string, Partial<Worker>, { binary: string; paths: string[]; pathTokens?: boolean }, boolean]>([
    ["online, heard from just now, with the binary", { lastSeen: 100_000 }, ffmpeg, true],
    ["heard from just under staleMs ago", { lastSeen: 70_001 }, ffmpeg, true],
    ["silent for staleMs", { lastSeen: 70_000 }, ffmpeg, false],
    ["draining", { lastSeen: 100_000, status: "draining" }, ffmpeg, false],
    ["registering", { lastSeen: 100_000, status: "registering" }, ffmpeg, false],
    ["offline", { lastSeen: 100_000, status: "offline" }, ffmpeg, false],
    ["without the binary", { lastSeen: 100_000, binaries: ["ffprobe"] }, ffmpeg, false],
    ["with every path", { lastSeen: 100_000, paths: ["A", "B"] }, { binary: "ffmpeg", paths: ["B", "A"] }, true],
    ["missing a path", { lastSeen: 100_000, paths: ["A"] }, { binary: "ffmpeg", paths: ["A", "B"] }, false],
    [
      "writing path tokens, for a caller that decodes them",
      { lastSeen: 100_000, capabilities: { pathTokens: true } },
      tokens,
      true,
    ],
    ["not writing path tokens (older), for a caller that decodes them", { lastSeen: 100_000 }, tokens, false],
    ["not writing path tokens, for an older caller", { lastSeen: 100_000 }, { ...ffmpeg, pathTokens: false }, true],
    [
      "writing path tokens, for an older caller (it then writes none)",
      { lastSeen: 100_000, capabilities: { pathTokens: true } },
      ffmpeg,
      true,
    ],
  ])("%s", (_, over, job, want) => {
    expect(eligible(job, worker("w", over), live)).toBe(want)
  })

  test("without a liveness, a worker is taken as live whenever it was last heard from", () => {
    expect(eligible(ffmpeg, worker("w", { lastSeen: 0 }))).toBe(true)
    expect(eligible(ffmpeg, worker("w", { lastSeen: 0 }), live)).toBe(false)
  })
})

describe("eligible over needs, labels and pins", () => {
  const tool = (over: Partial<ToolCapabilities> = {}): ToolCapabilities => ({
    version: "5.1.9",
    encoders: ["libx264", "aac"],
    decoders: ["h264", "aac"],
    hwaccels: [],
    hwDevices: [],
    filters: ["scale", "subtitles"],
    muxers: ["mp4", "hls"],
    demuxers: ["matroska,webm"],
    ...over,
  })
  const cpu = worker("cpu", { tools: { ffmpeg: tool() } })
  const gpu = worker("gpu", {
    tools: { ffmpeg: tool({ encoders: ["libx264", "aac", "h264_nvenc"], hwaccels: ["cuda"], hwDevices: ["cuda"] }) },
    labels: { gpu: "nvidia" },
  })
  const job = (needs: Partial<typeof NO_NEEDS>, pin: string | null = null) => ({
    ...ffmpeg,
    needs: { ...NO_NEEDS, ...needs },
    pin,
  })
  const cases: [string, ReturnType<typeof job>, string[], string[]][] = [
    ["no needs", job({}), ["cpu", "gpu"], []],
    ["an encoder only one has", job({ encoders: ["h264_nvenc"] }), ["gpu"], ["encoder h264_nvenc"]],
    [
      "a hwaccel and its device",
      job({ hwaccels: ["cuda"], hwDevices: ["cuda"] }),
      ["gpu"],
      ["hwaccel cuda", "hw device cuda"],
    ],
    ["a filter both have", job({ filters: ["subtitles"] }), ["cpu", "gpu"], []],
    ["a label", job({ labels: { gpu: "nvidia" } }), ["gpu"], ["label gpu=nvidia"]],
    ["a pin", job({}, "cpu"), ["cpu"], []],
  ]
  for (const [name, j, able, cpuLacks] of cases)
    test(name, () => {
      expect([cpu, gpu].filter((w) => eligible(j, w)).map((w) => w.id)).toEqual(able)
      expect(missing(j, cpu)).toEqual(cpuLacks)
    })
  test("a worker that registered no tools for the binary (older) is not judged on them; labels still are", () => {
    const old = worker("old")
    expect(eligible(job({ encoders: ["h264_nvenc"] }), old)).toBe(true)
    expect(eligible(job({ labels: { gpu: "nvidia" } }), old)).toBe(false)
  })
})

describe("knownNeeds: a name no worker's ffmpeg knows is left to ffmpeg's own error", () => {
  const tools = (encoders: string[]) => ({
    ffmpeg: {
      version: "5.1",
      encoders,
      decoders: [],
      hwaccels: [],
      hwDevices: [],
      filters: ["scale"],
      muxers: ["mp4"],
      demuxers: ["matroska,webm"],
    },
  })
  const a = worker("a", { tools: tools(["libx264", "aac"]) })
  const b = worker("b", { tools: tools(["aac"]) })
  const needs = (over: Partial<typeof NO_NEEDS>) => ({ ...NO_NEEDS, ...over })
  test("unknown software names go; names some worker knows, hardware names and labels stay", () => {
    expect(
      knownNeeds(
        "ffmpeg",
        needs({
          encoders: ["libx264", "nonexistent_codec", "h264_nvenc"],
          filters: ["scale", "no_such_filter", "scale_cuda"],
          muxers: ["mp4", "nonesuch"],
          demuxers: ["webm"],
          hwaccels: ["cuda"],
          labels: { gpu: "nvidia" },
        }),
        [a, b],
      ),
    ).toEqual(
      needs({
        encoders: ["libx264", "h264_nvenc"],
        filters: ["scale", "scale_cuda"],
        muxers: ["mp4"],
        demuxers: ["webm"],
        hwaccels: ["cuda"],
        labels: { gpu: "nvidia" },
      }),
    )
  })
  test("with no worker that registered tools for the binary, nothing is judged", () => {
    const n = needs({ encoders: ["nonexistent_codec"] })
    expect(knownNeeds("ffmpeg", n, [worker("old")])).toEqual(n)
    expect(knownNeeds("ffprobe", n, [a])).toEqual(n)
  })
})

describe("a pin holds while its worker serves", () => {
  const job = { ...ffmpeg, pin: "ref" }
  test("a pinned worker with its poll open is the pin; with its poll closed the job waits for it", () => {
    expect(pinNow(job, [cand("ref", 0), cand("other", 0)])).toBe("ref")
    expect(pinNow(job, [cand("ref", 0, { pollClosedAt: 5 }), cand("other", 0)])).toBe(WAIT)
  })
  test("a pinned worker that no longer serves (not a candidate) lets the pin lapse: any able worker may run it", () => {
    expect(pinNow(job, [cand("other", 0)])).toBeNull()
    expect(pinNow({ ...ffmpeg, pin: null }, [cand("ref", 0)])).toBeNull()
  })
  test("a lapsed pin never makes a job unrunnable", () => {
    const live = { now: 10_000, staleMs: 5_000 }
    const other = worker("other", { lastSeen: 9_000 })
    const gone = worker("ref", { lastSeen: 0 })
    expect(unrunnable(job, [gone, other], live)).toBeUndefined()
    expect(unrunnable(job, [gone], live)).toBeDefined()
  })
  test("a pinned worker that serves but cannot run the job (barred from it, without its path) lets the pin lapse too", () => {
    const live = { now: 10_000, staleMs: 5_000 }
    const barred = { ...job, barred: ["ref"] }
    const media = { ...job, paths: ["Media"] }
    const ref = worker("ref", { lastSeen: 9_000 })
    const other = worker("other", { lastSeen: 9_000, paths: ["Media"] })
    // Its reference worker did not start it in time: another worker answers rather than the job failing.
    expect(pinNow(barred, [cand("ref", 0), cand("other", 0)])).toBeNull()
    expect(unrunnable(barred, [ref, other], live)).toBeUndefined()
    expect(pick({ ...barred, pin: null }, [cand("ref", 0), cand("other", 0)])?.worker.id).toBe("other")
    // Its reference worker re-registered without the path the command names.
    expect(pinNow(media, [cand("ref", 0), cand("other", 0, { paths: ["Media"] })])).toBeNull()
    expect(unrunnable(media, [ref, other], live)).toBeUndefined()
  })
})

describe("unrunnable's reasons", () => {
  const live = { now: 10_000, staleMs: 5_000 }
  // A client with `fallback.when: [no_capable_worker]` keys on the marker and on nothing else.
  test.each<[string, Parameters<typeof unrunnable>[0], Worker[]]>([
    [
      "no worker has the binary",
      { binary: "ffprobe", paths: [] },
      [worker("w", { lastSeen: 9_000, binaries: ["ffmpeg"] })],
    ],
    [
      "no worker has the encoder",
      { ...ffmpeg, needs: { ...NO_NEEDS, encoders: ["h264_nvenc"] } },
      [worker("w", { lastSeen: 9_000, tools: { ffmpeg: toolCaps() } })],
    ],
    ["every able worker is barred from it", { ...ffmpeg, barred: ["w"] }, [worker("w", { lastSeen: 9_000 })]],
    ["pinned, its worker barred, no other", { ...ffmpeg, pin: "w", barred: ["w"] }, [worker("w", { lastSeen: 9_000 })]],
  ])("%s: the reason starts with the no-capable-worker marker", (_name, job, workers) => {
    const why = unrunnable(job, workers, live)
    expect(noCapableWorker(why)).toBe(true)
  })
})

describe("pick", () => {
  test.each<[string, { binary: string; paths: string[] }, Candidate[], string | undefined]>([
    ["no candidates at all", ffmpeg, [], undefined],
    [
      "only a worker without the binary",
      { binary: "ffprobe", paths: [] },
      [cand("w1", 0, { binaries: ["ffmpeg"] })],
      undefined,
    ],
    [
      "the worker that has the binary",
      { binary: "ffprobe", paths: [] },
      [cand("w1", 0, { binaries: ["ffmpeg"] }), cand("w2", 1, { binaries: ["ffprobe"] })],
      "w2",
    ],
    [
      "only a worker missing one required path",
      { binary: "ffmpeg", paths: ["Movies", "TV"] },
      [cand("w1", 0, { paths: ["Movies"] })],
      undefined,
    ],
    [
      "the worker advertising every required path",
      { binary: "ffmpeg", paths: ["Movies", "TV"] },
      [cand("w1", 0, { paths: ["Movies"] }), cand("w2", 1, { paths: ["TV", "Movies", "Music"] })],
      "w2",
    ],
    ["any worker when the job needs no path", ffmpeg, [cand("w1", 0, { paths: [] })], "w1"],
    ["only full workers", ffmpeg, [cand("w1", 2, { maxJobs: 2 }), cand("w2", 3, { maxJobs: 1 })], undefined],
    ["the worker with a free slot", ffmpeg, [cand("w1", 2, { maxJobs: 2 }), cand("w2", 3, { maxJobs: 4 })], "w2"],
    ["the lowest relative load", ffmpeg, [cand("w1", 1, { maxJobs: 2 }), cand("w2", 3, { maxJobs: 8 })], "w2"],
    [
      "the lowest relative load, listed first",
      ffmpeg,
      [cand("w2", 3, { maxJobs: 8 }), cand("w1", 1, { maxJobs: 2 })],
      "w2",
    ],
    [
      "an idle worker over a busier bigger one",
      ffmpeg,
      [cand("big", 1, { maxJobs: 16 }), cand("small", 0, { maxJobs: 1 })],
      "small",
    ],
    [
      "the lower absolute load when relative loads tie",
      ffmpeg,
      [cand("a", 2, { maxJobs: 4 }), cand("b", 1, { maxJobs: 2 })],
      "b",
    ],
    [
      "the lower absolute load when relative loads tie, listed first",
      ffmpeg,
      [cand("b", 1, { maxJobs: 2 }), cand("a", 2, { maxJobs: 4 })],
      "b",
    ],
    ["the smaller id when loads tie", ffmpeg, [cand("w2", 1, { maxJobs: 3 }), cand("w1", 1, { maxJobs: 3 })], "w1"],
    [
      "the smaller id when loads tie, listed first",
      ffmpeg,
      [cand("w1", 1, { maxJobs: 3 }), cand("w2", 1, { maxJobs: 3 })],
      "w1",
    ],
    [
      "an eligible worker, ignoring a less loaded ineligible one",
      { binary: "ffmpeg", paths: ["Movies"] },
      [cand("w0", 0, { paths: [] }), cand("w1", 1, { paths: ["Movies"] })],
      "w1",
    ],
  ])("with %s, picks the expected worker", (_name, job, candidates, expected) => {
    expect(pick(job, candidates)?.worker.id).toBe(expected)
  })

  test.each(["registering", "draining", "offline"] as const)("never picks a %s worker, even an idle one", (status) => {
    expect(pick(ffmpeg, [cand("w1", 0, { status })])).toBeUndefined()
    expect(pick(ffmpeg, [cand("w1", 0, { status }), cand("w2", 1, { maxJobs: 2 })])?.worker.id).toBe("w2")
  })

  test.each<[string, Candidate[], string[], string | undefined]>([
    ["passes over an excluded worker for another free one", [cand("w1", 0), cand("w2", 1)], ["w1"], "w2"],
    [
      "waits for a busy capable worker rather than taking an excluded one",
      [cand("w1", 0), cand("w2", 2, { maxJobs: 2 })],
      ["w1"],
      undefined,
    ],
    [
      "takes an excluded worker when it is the only capable one",
      [cand("w1", 0), cand("w2", 0, { binaries: ["ffprobe"] })],
      ["w1"],
      "w1",
    ],
    ["takes an excluded worker when every capable one is excluded", [cand("w1", 1), cand("w2", 0)], ["w1", "w2"], "w2"],
    [
      "ignores an excluded worker that is not online when judging alternatives",
      [cand("w1", 0), cand("w2", 0, { status: "draining" })],
      ["w1"],
      "w1",
    ],
  ])("%s", (_name, candidates, excluded, expected) => {
    expect(pick({ ...ffmpeg, excluded }, candidates)?.worker.id).toBe(expected)
  })

  test("gives the same answer for every order of the candidates", () => {
    const all = [
      cand("w3", 1, { maxJobs: 4 }),
      cand("w1", 2, { maxJobs: 8 }),
      cand("w2", 1, { maxJobs: 4 }),
      cand("w4", 0, { maxJobs: 1, binaries: [] }),
    ]
    const orders = [all, [...all].reverse(), [all[2], all[0], all[3], all[1]], [all[1], all[3], all[2], all[0]]]
    // w1 has load 2/8 = 0.25 = w2's and w3's 1/4; w2 and w3 have the lower absolute load; w2 the smaller id.
    for (const order of orders) expect(pick(ffmpeg, order)?.worker.id).toBe("w2")
  })

  test("returns the candidate object itself, so a caller can bump its load", () => {
    const c = cand("w1", 0)
    expect(pick(ffmpeg, [c])).toBe(c)
  })
})

describe("pick over lanes, weights, bars and poll connections", () => {
  test("a probe is judged on the probe slots, a transcode on maxJobs", () => {
    const full = cand("full", 2, { maxJobs: 2 })
    expect(pick({ ...ffmpeg, lane: "probe" }, [full])?.worker.id).toBe("full")
    expect(pick({ ...ffmpeg, lane: "transcode" }, [full])).toBeUndefined()
    const probesFull = { ...cand("p", 0), probes: 4 }
    expect(pick({ ...ffmpeg, lane: "probe" }, [probesFull])).toBeUndefined()
  })

  test.each<[string, Candidate[], string]>([
    ["equal relative load: the higher weight", [cand("a", 1, { weight: 1 }), cand("b", 1, { weight: 3 })], "b"],
    ["a lower relative load beats a higher weight", [cand("a", 0, { weight: 1 }), cand("b", 1, { weight: 5 })], "a"],
    ["equal load and weight: the lower id", [cand("b", 0), cand("a", 0)], "a"],
    [
      "a worker whose poll is open before one whose poll just closed, whatever the load",
      [cand("a", 0, { pollClosedAt: 5 }), cand("b", 1, { pollClosedAt: null })],
      "b",
    ],
  ])("%s", (_, candidates, want) => {
    expect(pick(ffmpeg, candidates)?.worker.id).toBe(want)
  })

  test("a barred worker is never picked; an excluded one only when no other is eligible", () => {
    expect(pick({ ...ffmpeg, barred: ["w1"] }, [cand("w1", 0)])).toBeUndefined()
    expect(pick({ ...ffmpeg, excluded: ["w1"] }, [cand("w1", 0)])?.worker.id).toBe("w1")
  })

  test("poll_gone: a worker whose poll closed that long ago is not serving for new work; the capability check ignores it", () => {
    const w = worker("w", { lastSeen: 100_000, pollClosedAt: 98_000 })
    expect(eligible(ffmpeg, w, { now: 100_000, staleMs: 30_000, pollGoneMs: 2_000 })).toBe(false)
    expect(eligible(ffmpeg, w, { now: 99_999, staleMs: 30_000, pollGoneMs: 2_000 })).toBe(true)
    expect(eligible(ffmpeg, w, { now: 100_000, staleMs: 30_000 })).toBe(true)
    expect(
      eligible(ffmpeg, worker("w", { lastSeen: 100_000, pollClosedAt: null }), {
        now: 100_000,
        staleMs: 30_000,
        pollGoneMs: 1,
      }),
    ).toBe(true)
  })
})

describe("missing: formats by any of their names", () => {
  const w = worker("w", {
    tools: {
      ffmpeg: {
        version: "5.1",
        encoders: [],
        decoders: [],
        hwaccels: [],
        hwDevices: [],
        filters: [],
        muxers: ["matroska", "mp4", "hls"],
        demuxers: ["matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2"],
      },
    },
  })
  test.each<[Partial<typeof NO_NEEDS>, string[]]>([
    [{ demuxers: ["matroska"] }, []],
    [{ demuxers: ["webm"] }, []],
    [{ demuxers: ["m4a"] }, []],
    [{ demuxers: ["mkv"] }, ["demuxer mkv"]],
    [{ muxers: ["hls", "mp4"] }, []],
    [{ muxers: ["webm"] }, ["muxer webm"]],
    [{ muxers: ["HLS"] }, []],
  ])("%j", (needs, lacks) => {
    expect(missing({ binary: "ffmpeg", needs: { ...NO_NEEDS, ...needs } }, w)).toEqual(lacks)
  })
})

describe("missing: a worker's lists are read once per tools object, not once per job", () => {
  /** A list that counts how often it is iterated (new Set(list), for...of). */
  const counted = (names: string[], reads: { n: number }) => {
    const list = [...names]
    const iterate = list[Symbol.iterator].bind(list)
    list[Symbol.iterator] = () => {
      reads.n++
      return iterate()
    }
    return list
  }
  test("a pass's worth of jobs against two workers reads each list at most once per worker", () => {
    const reads = { n: 0 }
    const tool = (): ToolCapabilities => ({
      version: "7",
      encoders: counted(["libx264", "aac"], reads),
      decoders: counted(["h264"], reads),
      hwaccels: counted([], reads),
      hwDevices: counted([], reads),
      filters: counted(["scale"], reads),
      muxers: counted(["mp4"], reads),
      demuxers: counted(["matroska,webm"], reads),
    })
    const cands = [cand("a", 0, { tools: { ffmpeg: tool() } }), cand("b", 0, { tools: { ffmpeg: tool() } })]
    const needs = { ...NO_NEEDS, encoders: ["h264_nvenc"], filters: ["scale"], muxers: ["mp4"], demuxers: ["matroska"] }
    for (let i = 0; i < 100; i++) expect(pick({ ...ffmpeg, needs }, cands)).toBeUndefined()
    expect(missing({ ...ffmpeg, needs }, cands[0]!.worker)).toEqual(["encoder h264_nvenc"])
    expect(reads.n).toBeLessThanOrEqual(2 * 7)
  })
})

describe("createScheduler", () => {
  const STALE_MS = 30_000
  let store: Store
  let hub: Hub
  let clock: number
  let scheduler: Scheduler
  let jobSeq = 0

  const reg = (over: Partial<WorkerRegistration> = {}) => registration({ binaries: ["ffmpeg", "ffprobe"], ...over })

  /** Registers a worker and verifies it with the token it was given, so that it is online. */
  const online = async (id: string, r: WorkerRegistration, at: number) => {
    const token = `token-${id}`
    await store.upsertWorker(id, r, token, at)
    expect(await store.verifyWorker(id, token, at)).toBe(true)
    expect((await store.getWorker(id))?.status).toBe("online")
  }

  /** Job ids sort by creation, like the ULIDs the coordinator uses. */
  const submit = async (over: { binary?: string; paths?: string[]; id?: string } = {}) => {
    const id = over.id ?? `job-${String(++jobSeq).padStart(4, "0")}`
    return store.createJob(newJob(id, { binary: over.binary ?? "ffmpeg", paths: over.paths ?? [] }), clock)
  }

  const makeScheduler = (pollGoneMs?: number) =>
    createScheduler({ store, log: createLogger({ level: "error" }), now: () => clock, staleMs: STALE_MS, pollGoneMs })

  const jobsOf = async (workerId: string) =>
    (await store.listJobs({ worker: workerId, limit: 1000 })).map((j) => j.id).sort()

  beforeEach(async () => {
    store = await memoryStore()
    hub = new Hub()
    clock = T0
    jobSeq = 0
    scheduler = makeScheduler()
    // Assignments wake workers through the store's change hook, as in the coordinator.
    wireWakeups(store, { notifier: hub })
  })

  afterEach(async () => {
    await scheduler.idle()
    await store.close()
  })

  test("assigns queued jobs only to workers that have the binary and the paths", async () => {
    await online("probe-only", reg({ binaries: ["ffprobe"], maxJobs: 8 }), clock)
    await online("no-paths", reg({ paths: [], maxJobs: 8 }), clock)
    await online("movies", reg({ paths: ["Movies"], maxJobs: 8 }), clock)
    const a = await submit({ paths: ["Movies"] })
    const b = await submit({ paths: ["Movies"] })
    const c = await submit({ binary: "ffmpeg", paths: ["TV"] })

    scheduler.kick()
    await scheduler.idle()

    expect(await jobsOf("movies")).toEqual([a.id, b.id])
    expect(await jobsOf("no-paths")).toEqual([])
    expect(await jobsOf("probe-only")).toEqual([])
    const left = await store.getJob(c.id)
    expect(left?.status).toBe("queued")
    expect(left?.workerId).toBeNull()
  })

  test("assigns with status assigned, the worker id, epoch 1 and the clock's time", async () => {
    await online("w1", reg(), clock)
    const job = await submit()
    clock += 5
    scheduler.kick()
    await scheduler.idle()
    const got = await store.getJob(job.id)
    expect(got).toMatchObject({ status: "assigned", workerId: "w1", epoch: 1, assignedAt: T0 + 5 })
  })

  test("never assigns beyond maxJobs, even with 20 jobs and many concurrent kicks", async () => {
    await online("w1", reg({ maxJobs: 3 }), clock)
    await online("w2", reg({ maxJobs: 2 }), clock)
    await online("w3", reg({ maxJobs: 5, binaries: ["ffprobe"] }), clock)
    for (let i = 0; i < 20; i++) await submit()

    await Promise.all(
      Array.from({ length: 25 }, async (_, i) => {
        if (i % 3) await Promise.resolve()
        scheduler.kick()
        await scheduler.idle()
        scheduler.kick()
      }),
    )
    await scheduler.idle()

    const loads = await store.workerLoads()
    expect(loads.get("w1")).toBe(3)
    expect(loads.get("w2")).toBe(2)
    expect(loads.get("w3")).toBeUndefined()
    expect(await store.queuedJobs(100)).toHaveLength(15)
  })

  test("fills a freed slot on the next kick, and only that one", async () => {
    await online("w1", reg({ maxJobs: 2 }), clock)
    const jobs = []
    for (let i = 0; i < 5; i++) jobs.push(await submit())
    scheduler.kick()
    await scheduler.idle()
    expect(await jobsOf("w1")).toEqual([jobs[0].id, jobs[1].id])

    // The first job runs and completes: one slot frees up.
    await store.start(jobs[0].id, "w1", 1, clock)
    await store.appendOutput(jobs[0].id, "w1", 1, [], { code: 0, signal: null }, clock)
    for (let i = 0; i < 5; i++) scheduler.kick()
    await scheduler.idle()

    expect((await store.workerLoads()).get("w1")).toBe(2)
    expect((await store.getJob(jobs[2].id))?.status).toBe("assigned")
    expect((await store.getJob(jobs[3].id))?.status).toBe("queued")
  })

  test("spreads jobs by relative load across workers", async () => {
    await online("big", reg({ maxJobs: 4 }), clock)
    await online("small", reg({ maxJobs: 2 }), clock)
    for (let i = 0; i < 6; i++) await submit()
    scheduler.kick()
    await scheduler.idle()
    const loads = await store.workerLoads()
    expect(loads.get("big")).toBe(4)
    expect(loads.get("small")).toBe(2)
  })

  test("assigns the oldest queued job first", async () => {
    await online("w1", reg({ maxJobs: 1 }), clock)
    // Inserted out of order; ids (ULID-like) order by submission time.
    await submit({ id: "01J0000000000000000000000C" })
    await submit({ id: "01J0000000000000000000000A" })
    await submit({ id: "01J0000000000000000000000B" })
    scheduler.kick()
    await scheduler.idle()
    expect(await jobsOf("w1")).toEqual(["01J0000000000000000000000A"])
  })

  test("notifies the topic of each worker that got a job, and no other", async () => {
    await online("w1", reg({ maxJobs: 1 }), clock)
    await online("w2", reg({ binaries: ["ffprobe"] }), clock)
    const stop = new AbortController()
    let w1Woke = false
    let w2Woke = false
    const w1 = hub.wait(topic.worker("w1"), 60_000).then(() => (w1Woke = true))
    const w2 = hub.wait(topic.worker("w2"), 60_000, stop.signal).then(() => (w2Woke = true))
    await submit()

    scheduler.kick()
    await scheduler.idle()
    await w1
    expect(w1Woke).toBe(true)
    // w2's waiter is still registered: nothing was notified on its topic.
    expect(hub.size).toBe(1)
    expect(w2Woke).toBe(false)
    stop.abort()
    await w2
    expect(hub.size).toBe(0)
  })

  test("gives nothing to a worker whose last poll is older than staleMs", async () => {
    await online("stale", reg({ maxJobs: 8 }), T0)
    await online("fresh", reg({ maxJobs: 1 }), T0 + 1)
    clock = T0 + STALE_MS
    await submit()
    await submit()
    scheduler.kick()
    await scheduler.idle()
    expect(await jobsOf("stale")).toEqual([])
    expect(await jobsOf("fresh")).toEqual(["job-0001"])
    expect(await store.queuedJobs(10)).toHaveLength(1)
  })

  test("assigns again once a stale worker polls (touches) again", async () => {
    await online("w1", reg(), T0)
    clock = T0 + STALE_MS + 1
    const job = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.status).toBe("queued")

    await store.touchWorker("w1", clock)
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.workerId).toBe("w1")
  })

  test("treats a worker seen just under staleMs ago as alive", async () => {
    await online("w1", reg(), T0)
    clock = T0 + STALE_MS - 1
    const job = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.workerId).toBe("w1")
  })

  test("gives nothing to a registering worker until it verifies its token", async () => {
    await store.upsertWorker("w1", reg(), "secret", clock)
    expect((await store.getWorker("w1"))?.status).toBe("registering")
    const job = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.status).toBe("queued")

    expect(await store.verifyWorker("w1", "wrong", clock)).toBe(false)
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.status).toBe("queued")

    expect(await store.verifyWorker("w1", "secret", clock)).toBe(true)
    scheduler.kick()
    await scheduler.idle()
    expect(await store.getJob(job.id)).toMatchObject({ status: "assigned", workerId: "w1" })
  })

  test("gives nothing to a draining or offline worker", async () => {
    await online("drain", reg({ maxJobs: 8 }), clock)
    await online("gone", reg({ maxJobs: 8 }), clock)
    // Re-registering with draining set keeps a verified worker verified but draining.
    expect((await store.upsertWorker("drain", reg({ maxJobs: 8, draining: true }), "t2", clock)).status).toBe(
      "draining",
    )
    await store.setWorkerStatus("gone", "offline", clock)
    const job = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.status).toBe("queued")

    await online("w1", reg(), clock)
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.workerId).toBe("w1")
  })

  test("re-assigns a job given up by a worker to another one", async () => {
    await online("w1", reg(), clock)
    const job = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.workerId).toBe("w1")
    await online("w2", reg({ maxJobs: 1 }), clock)
    // w1 never started it: it goes back to the queue with w1 excluded. Both are idle and w1 would win the tie
    // by id, so w2 getting it shows the exclusion.
    expect(await store.unassign(job.id, 1, "timed out", clock)).toMatchObject({ status: "queued", excluded: ["w1"] })
    scheduler.kick()
    await scheduler.idle()
    expect(await store.getJob(job.id)).toMatchObject({ status: "assigned", workerId: "w2", epoch: 2 })
  })

  test("idle() resolves at once when nothing was kicked", async () => {
    await scheduler.idle()
    expect(await store.queuedJobs(10)).toEqual([])
  })

  test("a kick with no workers leaves jobs queued, and a later kick assigns them", async () => {
    const job = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.status).toBe("queued")
    await online("w1", reg(), clock)
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.status).toBe("assigned")
  })

  // A pass pages through the whole queue: a page of jobs no worker can run does not starve those behind it.
  test("assigns a job queued behind several full pages of jobs that no worker can run", async () => {
    await online("w1", reg({ maxJobs: 1 }), clock)
    for (let i = 0; i < 1000; i++) await submit({ paths: ["Nowhere"] })
    const last = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(last.id))?.workerId).toBe("w1")
  })

  test("a pass over an empty queue reads one job per lane and neither the workers nor their loads", async () => {
    await online("w1", reg(), clock)
    let reads = 0
    const list = store.listWorkers.bind(store)
    const loads = store.laneLoads.bind(store)
    store.listWorkers = () => (reads++, list())
    store.laneLoads = () => (reads++, loads())
    scheduler.kick()
    await scheduler.idle()
    expect(reads).toBe(0)
    const job = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect(reads).toBe(2)
    expect((await store.getJob(job.id))?.workerId).toBe("w1")
  })

  test("a pass reads as many queued jobs as there are free slots, and more only past jobs it skipped", async () => {
    await online("w1", reg({ maxJobs: 2, maxProbeJobs: 0 }), clock)
    for (let i = 0; i < 300; i++) await submit()
    /** The page sizes the pass asks the transcode lane for. */
    const recordPages = () => {
      const asked: number[] = []
      const read = store.queuedJobs.bind(store)
      store.queuedJobs = (limit, after, lane) => {
        if (lane !== "probe") asked.push(limit)
        return read(limit, after, lane)
      }
      return asked
    }
    let asked = recordPages()
    scheduler.kick()
    await scheduler.idle()
    // The lane is known to hold jobs (the scheduler saw them queued): one page of the two free slots and
    // one more, which would tell that the lane is empty had the two been its only jobs.
    expect(asked).toEqual([3])
    expect(await store.workerLoads()).toEqual(new Map([["w1", 2]]))
    // Five jobs no worker can run ahead of the runnable ones: pages of 2, then 4, find the next runnable job.
    await store.close()
    store = await memoryStore()
    scheduler = makeScheduler()
    await online("w1", reg({ maxJobs: 1, maxProbeJobs: 0 }), clock)
    for (let i = 0; i < 5; i++) await submit({ paths: ["Nowhere"] })
    const runnable = await submit()
    for (let i = 0; i < 300; i++) await submit()
    asked = recordPages()
    scheduler.kick()
    await scheduler.idle()
    expect(asked).toEqual([2, 4])
    expect((await store.getJob(runnable.id))?.workerId).toBe("w1")
  })

  /** Counts the store reads a scheduling pass makes (queue pages, workers, loads). */
  const countReads = (s: Store) => {
    const n = { reads: 0 }
    for (const name of ["queuedJobs", "listWorkers", "laneLoads"] as const) {
      const read = (s[name] as (...a: unknown[]) => unknown).bind(s)
      ;(s as unknown as Record<string, unknown>)[name] = (...a: unknown[]) => {
        n.reads++
        return read(...a)
      }
    }
    return n
  }

  test("a kick when every lane was left empty reads nothing; a job queued after it is placed by its kick", async () => {
    await online("w1", reg({ maxJobs: 1, maxProbeJobs: 1 }), clock)
    const a = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(a.id))?.workerId).toBe("w1")
    const n = countReads(store)
    // A slot freed, a poll: nothing is queued in any lane and the scheduler knows it.
    scheduler.kick()
    scheduler.kick()
    await scheduler.idle()
    expect(n.reads).toBe(0)
    // A job queued (its change reaches the scheduler through the store's hook) is read and placed.
    const b = await submit()
    await store.createJob(newJob("probe-1", { binary: "ffprobe", paths: [], lane: "probe" }), clock)
    scheduler.kick()
    await scheduler.idle()
    expect(n.reads).toBeGreaterThan(0)
    expect(await store.getJob(b.id)).toMatchObject({ status: "queued" })
    expect((await store.getJob("probe-1"))?.workerId).toBe("w1")
  })

  test("a job queued where the scheduler does not hear of it (another coordinator) is placed once the lane's emptiness is no longer trusted", async () => {
    await online("w1", reg({ maxJobs: 2, maxProbeJobs: 0 }), clock)
    // A scheduler whose store reports no changes: every job is queued as by another coordinator.
    const deaf = Object.create(store) as Store
    deaf.changes = () => () => {}
    const s = createScheduler({
      store: deaf,
      log: createLogger({ level: "error" }),
      now: () => clock,
      staleMs: STALE_MS,
      emptyTrustMs: 1_000,
    })
    s.kick()
    await s.idle()
    const job = await submit()
    s.kick()
    await s.idle()
    expect(await store.getJob(job.id)).toMatchObject({ status: "queued" })
    clock += 1_000
    await store.touchWorker("w1", clock, "open")
    s.kick()
    await s.idle()
    expect((await store.getJob(job.id))?.workerId).toBe("w1")
  })

  test("assigns a job queued behind fewer than 200 jobs that no worker can run", async () => {
    await online("w1", reg({ maxJobs: 1 }), clock)
    for (let i = 0; i < 199; i++) await submit({ paths: ["Nowhere"] })
    const last = await submit()
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(last.id))?.workerId).toBe("w1")
  })

  const submitAs = (id: string, over: Partial<NewJob>, at = clock) => store.createJob(newJob(id, over), at)

  test("a probe is placed in its own slots while every transcode slot is taken, and before transcodes", async () => {
    await online("w1", reg({ maxJobs: 1, maxProbeJobs: 2 }), clock)
    await submitAs("t1", {})
    await submitAs("t2", {})
    await submitAs("p1", { lane: "probe" }, clock + 1)
    await submitAs("p2", { lane: "probe" }, clock + 2)
    await submitAs("p3", { lane: "probe" }, clock + 3)
    scheduler.kick()
    await scheduler.idle()
    expect(await jobsOf("w1")).toEqual(["p1", "p2", "t1"])
    expect(Object.fromEntries(await store.laneLoads())).toEqual({ w1: { probe: 2, transcode: 1 } })
  })

  test("a worker with no probe slots gets no probes", async () => {
    await online("w1", reg({ maxProbeJobs: 0 }), clock)
    await submitAs("p1", { lane: "probe" })
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob("p1"))?.status).toBe("queued")
  })

  // Queue order with aging (aging = 60 s): key = submission time − level × aging; one slot takes them in turn.
  const AGING = 60_000
  test.each<[string, [string, Priority, number][], string[]]>([
    [
      "a later interactive job goes before earlier batch and normal ones",
      [
        ["b1", "batch", 0],
        ["b2", "batch", 1_000],
        ["n1", "normal", 2_000],
        ["i1", "interactive", 3_000],
      ],
      ["i1", "n1", "b1", "b2"],
    ],
    [
      "a batch job that waited more than 2 × aging goes before a new interactive one",
      [
        ["b1", "batch", 0],
        ["i1", "interactive", 2 * AGING + 1],
      ],
      ["b1", "i1"],
    ],
    [
      "a normal job that waited more than aging goes before a new interactive one",
      [
        ["n1", "normal", 0],
        ["i1", "interactive", AGING + 1],
        ["i2", "interactive", AGING - 1 + AGING],
      ],
      ["n1", "i1", "i2"],
    ],
    [
      "equal priorities are first come, first served",
      [
        ["n2", "normal", 5],
        ["n1", "normal", 1],
      ],
      ["n1", "n2"],
    ],
  ])("%s", async (_, jobs, order) => {
    await online("w1", reg({ maxJobs: 1 }), clock)
    // The worker is busy while everything is queued; then each completion frees the one slot.
    await submitAs("first", {})
    scheduler.kick()
    await scheduler.idle()
    for (const [id, priority, at] of jobs)
      await submitAs(id, { priority, queueKey: queueKey("transcode", priority, T0 + at, AGING) }, T0 + at)
    const ran: string[] = []
    let current = "first"
    for (let i = 0; i < jobs.length; i++) {
      await store.start(current, "w1", 1, clock)
      await store.appendOutput(current, "w1", 1, [], { code: 0, signal: null }, clock)
      scheduler.kick()
      await scheduler.idle()
      const [next] = await store.listJobs({ worker: "w1", status: "assigned" })
      ran.push(next.id)
      current = next.id
    }
    expect(ran).toEqual(order)
  })

  test("a worker barred from a job never gets it, even as the only one; others still do", async () => {
    await online("w1", reg(), clock)
    const job = await submitAs("j1", {})
    scheduler.kick()
    await scheduler.idle()
    expect(await store.unassign(job.id, 1, "timed out", clock, true)).toMatchObject({ barred: ["w1"] })
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.status).toBe("queued")
    await online("w2", reg(), clock)
    scheduler.kick()
    await scheduler.idle()
    expect((await store.getJob(job.id))?.workerId).toBe("w2")
  })

  test("a worker whose poll connection closed gets no new work once poll_gone has passed, until it polls again", async () => {
    const gone = makeScheduler(2_000)
    await online("w1", reg(), clock)
    await store.touchWorker("w1", clock, "closed")
    clock += 2_000
    await submitAs("j1", {})
    gone.kick()
    await gone.idle()
    expect((await store.getJob("j1"))?.status).toBe("queued")
    await store.touchWorker("w1", clock, "open")
    gone.kick()
    await gone.idle()
    expect((await store.getJob("j1"))?.workerId).toBe("w1")
  })

  test("a job pinned to a worker whose poll closed waits for it, then goes elsewhere once the pin lapses, without another kick", async () => {
    const gone = makeScheduler(20)
    await online("ref", reg(), clock)
    await online("other", reg(), clock)
    await store.touchWorker("ref", clock, "closed")
    const job = await store.createJob(newJob("pinned", { pin: "ref", lane: "probe" }), clock)
    gone.kick()
    await gone.idle()
    expect((await store.getJob(job.id))?.status).toBe("queued")
    // Past poll_gone: the pass the scheduler set itself up for finds the pin lapsed.
    clock += 50
    await waitFor(async () => ((await store.getJob(job.id))?.workerId === "other" ? true : undefined), {
      timeoutMs: 5_000,
      what: "the pinned job placed on the other worker",
    })
    await gone.idle()
  })
})

describe("waitReasons: why a queued job waits, by the scheduler's rules", () => {
  const live = { now: 100_000, staleMs: 30_000 }
  const on = (id: string, over: Partial<Worker> = {}) => worker(id, { lastSeen: 100_000, ...over })
  const job = (id: string, over: Partial<Waiting> = {}): Waiting => ({
    id,
    binary: "ffmpeg",
    paths: [],
    lane: "transcode",
    queueKey: 1000,
    needs: NO_NEEDS,
    ...over,
  })
  const loads = (entries: [string, number, number?][]) =>
    new Map(entries.map(([id, transcode, probe]) => [id, { transcode, probe: probe ?? 0 }]))
  const reasons = (jobs: Waiting[], workers: Worker[], l = loads([])) =>
    Object.fromEntries(waitReasons(jobs, workers, l, live))

  test("no worker at all, or only silent and offline ones: no worker online", () => {
    expect(reasons([job("A")], [])).toEqual({ A: "no worker online" })
    expect(reasons([job("A")], [on("w1", { lastSeen: 1 }), on("w2", { status: "offline" })])).toEqual({
      A: "no worker online",
    })
  })

  test("every live worker draining: draining, naming them", () => {
    expect(reasons([job("A")], [on("w1", { status: "draining" })])).toEqual({
      A: "draining: no worker takes new jobs (w1 draining)",
    })
  })

  test("the only worker that could run it drains while another serves: draining, naming it", () => {
    const nv = toolCaps({ encoders: ["libx264", "h264_nvenc"] })
    const workers = [
      on("cpu", { tools: { ffmpeg: toolCaps() } }),
      on("gpu", { status: "draining", tools: { ffmpeg: nv } }),
    ]
    const a = job("A", { needs: { ...NO_NEEDS, encoders: ["h264_nvenc"] } })
    expect(reasons([a], workers)).toEqual({ A: "draining: only gpu can run it" })
  })

  test("what no worker has, and a missing path variable, as the janitor words them", () => {
    const workers = [on("w1", { tools: { ffmpeg: toolCaps() } })]
    const a = job("A", { needs: { ...NO_NEEDS, encoders: ["h264_nvenc"] } })
    const b = job("B", { paths: ["Movies"] })
    expect(reasons([a, b], workers)).toEqual({
      A: "no online worker has encoder h264_nvenc",
      B: "no online worker can run it (needs ffmpeg, $Movies)",
    })
  })

  test("every slot of the workers that can run it busy: all N slots busy, and the jobs ahead", () => {
    const workers = [on("w1", { maxJobs: 2 }), on("w2", { maxJobs: 1 })]
    const busy = loads([
      ["w1", 2],
      ["w2", 1],
    ])
    expect(reasons([job("B", { queueKey: 2000 }), job("A")], workers, busy)).toEqual({
      A: "all 3 slots busy",
      B: "all 3 slots busy, behind 1 higher-priority job",
    })
    // Probes have slots of their own: a probe is not held up by busy transcode slots.
    expect(reasons([job("P", { lane: "probe" })], workers, busy)).toEqual({
      P: "a slot is free: the next scheduling pass assigns it",
    })
    expect(reasons([job("P", { lane: "probe" })], [on("w1", { maxProbeJobs: 1 })], loads([["w1", 0, 1]]))).toEqual({
      P: "all 1 probe slot busy",
    })
  })

  test("jobs ahead count only when a worker able to run this one could run them too", () => {
    const workers = [on("w1", { paths: ["Movies"] })]
    const jobs = [
      job("A", { queueKey: 1 }),
      job("B", { queueKey: 2, paths: ["Music"] }),
      job("C", { queueKey: 3 }),
      job("D", { queueKey: 3, lane: "probe" }),
    ]
    const r = reasons(jobs, workers)
    expect(r.A).toBe("a slot is free: the next scheduling pass assigns it")
    expect(r.C).toBe("behind 1 higher-priority job")
    expect(r.D).toBe("a slot is free: the next scheduling pass assigns it")
  })

  test("a job pinned to a worker whose poll is closed waits for it", () => {
    const workers = [on("ref", { pollClosedAt: 99_000 }), on("w2")]
    expect(reasons([job("A", { pin: "ref", lane: "probe" })], workers)).toEqual({
      A: "waiting for its pinned worker ref to poll again",
    })
  })
})
