import { describe, expect, test } from "bun:test"
import { AuthError, ConflictError, NotFoundError, TooLargeError, UnavailableError } from "../../shared/errors.ts"
import type { ApiClient } from "../../shared/http/client.ts"
import { JobGoneError, ProtocolError, StaleJobError, TransportUnavailableError, UnknownWorkerError } from "../types.ts"
import { httpWorkerTransport } from "./worker.ts"
import { FRAMES_DIGEST_MAX, framesBodyHash } from "../../shared/auth/hmac.ts"
import { EMPTY, Kind, concatFrames, encodeFrame } from "../../shared/protocol/frames.ts"

const JOB = "01M8DFWF4PCGSZBYEVT8TNJN46"

/** An API client whose every JSON call answers `reply` (or throws it). */
function answering(reply: unknown | Error): ApiClient {
  const answer = async () => {
    if (reply instanceof Error) throw reply
    return reply
  }
  return {
    url: "http://coordinator.test",
    client: "w1",
    json: answer as ApiClient["json"],
    request: async () => {
      if (reply instanceof Error) throw reply
      return new Response(null, { status: 200 })
    },
  }
}

const first = async <T>(it: AsyncIterable<T>): Promise<T | undefined> => {
  for await (const x of it) return x
}

describe("http worker transport: replies are validated", () => {
  test("a register reply without the timing is a ProtocolError naming the field", async () => {
    const t = httpWorkerTransport(answering({ pollWaitSeconds: 1, heartbeatSeconds: "5" }))
    const err = await t.register({} as never).catch((e) => e)
    expect(err).toBeInstanceOf(ProtocolError)
    expect(err.message).toContain("register")
    expect(JSON.stringify(err.details)).toContain("heartbeatSeconds")
  })

  test("a poll reply with a malformed assignment is refused; a good one is returned as parsed", async () => {
    const bad = { jobs: [{ id: JOB, epoch: -1, binary: "ffmpeg", args: [], paths: [], cwd: null, stdin: false }] }
    await expect(
      first(httpWorkerTransport(answering(bad)).assignments(() => 1, new AbortController().signal)),
    ).rejects.toBeInstanceOf(ProtocolError)
    const good = { jobs: [{ ...bad.jobs[0], epoch: 2 }], extra: "ignored" }
    const batch = await first(httpWorkerTransport(answering(good)).assignments(() => 1, new AbortController().signal))
    expect(batch).toEqual({ jobs: [good.jobs[0]] })
  })

  test("heartbeat, start and upload replies are checked", async () => {
    await expect(httpWorkerTransport(answering({ stale: "none" })).heartbeat([])).rejects.toBeInstanceOf(ProtocolError)
    await expect(httpWorkerTransport(answering({})).start(JOB, 1)).rejects.toBeInstanceOf(ProtocolError)
    await expect(httpWorkerTransport(answering({ ok: true })).upload(JOB, 1, new Uint8Array())).rejects.toBeInstanceOf(
      ProtocolError,
    )
    await httpWorkerTransport(answering({ ok: true, finished: false })).upload(JOB, 1, new Uint8Array())
  })
})

describe("http worker transport: status codes become the protocol's errors", () => {
  test("409 on a job call is StaleJobError, on a worker call UnknownWorkerError; 404 on a job is JobGoneError", async () => {
    const conflict = answering(new ConflictError("no longer yours"))
    await expect(httpWorkerTransport(conflict).start(JOB, 1)).rejects.toBeInstanceOf(StaleJobError)
    await expect(httpWorkerTransport(conflict).heartbeat([])).rejects.toBeInstanceOf(UnknownWorkerError)
    await expect(httpWorkerTransport(conflict).verify("t")).rejects.toBeInstanceOf(UnknownWorkerError)
    await expect(httpWorkerTransport(answering(new NotFoundError("gone"))).reject(JOB, 1)).rejects.toBeInstanceOf(
      JobGoneError,
    )
  })

  test("outages are TransportUnavailableError; 401 and 413 only for a job's uploads and downlink", async () => {
    const down = answering(new UnavailableError("cannot reach the coordinator"))
    const err = await httpWorkerTransport(down)
      .register({} as never)
      .catch((e) => e)
    expect(err).toBeInstanceOf(TransportUnavailableError)
    expect(err.message).toBe("cannot reach the coordinator")
    const refused = answering(new AuthError("forged"))
    await expect(httpWorkerTransport(refused).register({} as never)).rejects.toBeInstanceOf(AuthError)
    await expect(httpWorkerTransport(refused).upload(JOB, 1, new Uint8Array())).rejects.toBeInstanceOf(
      TransportUnavailableError,
    )
    await expect(
      first(httpWorkerTransport(refused).input(JOB, 1, 0, new AbortController().signal)),
    ).rejects.toBeInstanceOf(TransportUnavailableError)
    const big = answering(new TooLargeError("too large"))
    await expect(httpWorkerTransport(big).upload(JOB, 1, new Uint8Array())).rejects.toBeInstanceOf(
      TransportUnavailableError,
    )
    await expect(httpWorkerTransport(big).start(JOB, 1)).rejects.toBeInstanceOf(TooLargeError)
  })
})

describe("http worker transport: uploads signed by frame digests", () => {
  /** An API client that records each JSON call's options and answers an upload. */
  function recording() {
    const calls: { framesHash?: string }[] = []
    const api = {
      ...answering({ ok: true, finished: false, digests: true }),
      json: (async (_m: string, _p: string, o: { framesHash?: string }) => {
        calls.push(o)
        return { ok: true, finished: false, digests: true }
      }) as ApiClient["json"],
    }
    return { api, calls }
  }
  const body = (n: number) => concatFrames(Array.from({ length: n }, (_, i) => encodeFrame(Kind.stderr, i + 1, EMPTY)))

  test("a body of up to FRAMES_DIGEST_MAX frames is signed by their digests, a larger one by its SHA-256", async () => {
    const { api, calls } = recording()
    const t = httpWorkerTransport(api)
    await t.upload(JOB, 1, body(FRAMES_DIGEST_MAX), { retain: true, digests: true })
    await t.upload(JOB, 1, body(FRAMES_DIGEST_MAX + 1), { retain: true, digests: true })
    expect(calls[0]!.framesHash).toBe(framesBodyHash(body(FRAMES_DIGEST_MAX))!.hash)
    expect(calls[1]!.framesHash).toBeUndefined()
  })
})

describe("http worker transport: the worker process on its calls", () => {
  /** An API client that records each call and answers what the call needs. */
  function recording() {
    const calls: { path: string; query?: Record<string, unknown>; json?: unknown }[] = []
    const api: ApiClient = {
      url: "http://coordinator.test",
      client: "w1",
      json: (async (_m: string, path: string, o: { query?: Record<string, unknown>; json?: unknown } = {}) => {
        calls.push({ path, query: o.query, json: o.json })
        if (path.endsWith("/register")) return { pollWaitSeconds: 1, heartbeatSeconds: 1, registrationSeconds: 1 }
        if (path.endsWith("/heartbeat")) return { stale: [], reregister: false }
        if (path.endsWith("/poll")) return { jobs: [] }
        return { ok: true }
      }) as ApiClient["json"],
      request: async () => new Response(null, { status: 200 }),
    }
    return { api, calls }
  }
  const I = { id: "01M8DFWF4PCGSZBYEVT8TNJN47", host: "box", pid: 42 }
  const REG = { binaries: [], paths: [], maxJobs: 1, version: "t" }

  test("the instance goes in the query of register, heartbeat, poll and deregister; never in a body an older coordinator refuses", async () => {
    const { api, calls } = recording()
    const t = httpWorkerTransport(api, I.id)
    await t.register({ ...REG, instance: I })
    await t.heartbeat([])
    await first(t.assignments(() => 1, new AbortController().signal))
    await t.deregister()
    expect(calls[0]).toEqual({
      path: "/api/v1/worker/register",
      query: { instance: I.id, host: "box", pid: 42 },
      json: REG,
    })
    expect(calls[1]).toEqual({ path: "/api/v1/worker/heartbeat", query: { instance: I.id }, json: { jobs: [] } })
    expect(calls[2].query).toMatchObject({ instance: I.id })
    expect(calls[3]).toMatchObject({ path: "/api/v1/worker/deregister", query: { instance: I.id } })
  })

  test("a heartbeat carries the host load only when given one", async () => {
    const { api, calls } = recording()
    const t = httpWorkerTransport(api)
    const hostLoad = {
      at: "2026-12-03T10:00:00.000Z",
      cpuPercent: 1,
      load1: 0,
      cpus: 1,
      memUsedBytes: 1,
      memTotalBytes: 2,
      gpus: [],
    }
    await t.heartbeat([], hostLoad)
    expect(calls[0]).toEqual({ path: "/api/v1/worker/heartbeat", query: {}, json: { jobs: [], hostLoad } })
  })
})
