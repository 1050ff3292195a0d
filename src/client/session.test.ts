import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { EventEmitter } from "node:events"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as v from "valibot"
import { waitFor } from "../../test/helpers/bin.ts"
import { FallbackConfig } from "../shared/config/schema.ts"
import { AuthError, JobFailedError, OutputLostError, UnavailableError } from "../shared/errors.ts"
import { NO_CAPABLE_WORKER, WITHDRAWN_FOR_FALLBACK } from "../shared/protocol/fallback.ts"
import { readJson, type ApiClient, type RequestOpts } from "../shared/http/client.ts"
import { Kind, decodeFrames, encodeFrame, encodeJsonFrame, type Frame } from "../shared/protocol/frames.ts"
import type { Outcome } from "../shared/protocol/schemas.ts"
import { attach, runAttached, type Client, type SessionIo } from "./session.ts"

const JOB = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const enc = new TextEncoder()
const text = (chunks: Uint8Array[]) => new TextDecoder().decode(Buffer.concat(chunks))

/** A job stream the test writes frames into, as the coordinator would. */
function channel() {
  let ctrl!: ReadableStreamDefaultController<Uint8Array>
  const stream = new ReadableStream<Uint8Array>({ start: (c) => void (ctrl = c) })
  return {
    stream,
    push: (...frames: Uint8Array[]) => {
      for (const f of frames) ctrl.enqueue(f)
    },
    close: () => ctrl.close(),
  }
}

const jobEvent = () => encodeJsonFrame(Kind.event, 0, { type: "job", job: { id: JOB } })
const out = (seq: number, s: string) => encodeFrame(Kind.stdout, seq, enc.encode(s))
const err = (seq: number, s: string) => encodeFrame(Kind.stderr, seq, enc.encode(s))
const exit = (seq: number, o: Partial<Outcome>) =>
  encodeJsonFrame(Kind.exit, seq, { status: "completed", code: 0, signal: null, error: null, ...o })

interface Call {
  method: string
  path: string
  opts: RequestOpts
}

/**
 * An in-memory coordinator behind the ApiClient interface the session uses: `route` answers each request
 * (a Response, as the signed client returns it after verification); every request is recorded.
 */
function fakeApi(route: (c: Call) => Response | Promise<Response>): ApiClient & { calls: Call[] } {
  const calls: Call[] = []
  const request = async (method: string, path: string, opts: RequestOpts = {}) => {
    const c = { method, path, opts }
    calls.push(c)
    return route(c)
  }
  return {
    url: "http://fake",
    client: "tester",
    calls,
    request,
    json: async <T>(method: string, path: string, opts?: RequestOpts) =>
      (await readJson(await request(method, path, opts))) as T,
  }
}

const stream = (body: ReadableStream<Uint8Array>) => new Response(body)
const ok = (value: unknown) => Response.json(value)
const refusal = (status: number, code: string, message: string) =>
  Response.json({ error: { code, message } }, { status })

/** Stand-ins for this process's stdout, stderr, stdin and signals. */
function fakeIo(o: { stdin?: string[]; brokenStdout?: boolean } = {}) {
  const written = { stdout: [] as Uint8Array[], stderr: [] as Uint8Array[] }
  const sink = (name: "stdout" | "stderr") => ({
    write(b: Uint8Array | string, cb?: (err?: Error | null) => void) {
      if (name === "stdout" && o.brokenStdout) return void cb?.(Object.assign(new Error("EPIPE"), { code: "EPIPE" }))
      written[name].push(typeof b === "string" ? enc.encode(b) : b)
      cb?.()
    },
    on: () => {},
  })
  const signals = new EventEmitter()
  const io: SessionIo = {
    stdout: sink("stdout"),
    stderr: sink("stderr"),
    signals,
    stdin: o.stdin
      ? async function* () {
          for (const s of o.stdin!) yield enc.encode(s)
        }
      : undefined,
  }
  return { io, written, signals }
}

const client = (api: ApiClient, signalTimeoutSeconds = 10): Client => ({
  api,
  config: { paths: {}, passthrough_paths: ["/dev/null"], signal_timeout_seconds: signalTimeoutSeconds },
})

/** The frames of every stdin upload, in the order they were sent. */
const uploaded = (calls: Call[]): Frame[] =>
  calls.filter((c) => c.path === `/api/v1/jobs/${JOB}/stdin`).flatMap((c) => decodeFrames(c.opts.body as Uint8Array))

describe("runAttached against a fake coordinator", () => {
  test("the coordinator's wait notice goes to `notice` (a terminal) only; stderr keeps ffmpeg's bytes alone", async () => {
    const api = fakeApi((c) => {
      if (c.method === "POST" && c.path === "/api/v1/jobs") {
        const ch = channel()
        const first = encodeJsonFrame(Kind.event, 0, {
          type: "job",
          job: { id: JOB },
          wait: "waiting for a free slot\x1b[2J",
        })
        ch.push(first, err(1, "ffmpeg says\n"), exit(1, { code: 0 }))
        ch.close()
        return stream(ch.stream)
      }
      return ok({ ok: true, acked: 1 })
    })
    const shown: string[] = []
    const tty = fakeIo()
    expect(
      await runAttached({
        binary: "ffmpeg",
        args: [],
        client: client(api),
        io: tty.io,
        notice: (l) => void shown.push(l),
      }),
    ).toBe(0)
    // Control characters from the coordinator never reach the terminal.
    expect(shown).toEqual(["dffmpeg: waiting for a free slot?[2J\n"])
    expect(text(tty.written.stderr)).toBe("ffmpeg says\n")
    const pipe = fakeIo()
    expect(await runAttached({ binary: "ffmpeg", args: [], client: client(api), io: pipe.io })).toBe(0)
    expect(text(pipe.written.stderr)).toBe("ffmpeg says\n")
  })

  test("submits the job, relays stdout and stderr in order, and returns the remote exit code", async () => {
    const api = fakeApi((c) => {
      if (c.method === "POST" && c.path === "/api/v1/jobs") {
        const ch = channel()
        ch.push(jobEvent(), out(1, "one "), err(2, "progress\r"), out(3, "two"), exit(3, { code: 3 }))
        ch.close()
        return stream(ch.stream)
      }
      return refusal(404, "E_NOT_FOUND", "no route")
    })
    const { io, written } = fakeIo()
    const code = await runAttached({ binary: "ffprobe", args: ["-version"], client: client(api), io })
    expect(code).toBe(3)
    expect(text(written.stdout)).toBe("one two")
    expect(text(written.stderr)).toBe("progress\r")
    const submit = api.calls[0]!
    expect(submit.opts.query).toMatchObject({ attach: 1 })
    expect(submit.opts.json).toMatchObject({ binary: "ffprobe", args: ["-version"], stdin: false, attached: true })
    // After the outcome, one acknowledgement of everything taken (the coordinator may delete it).
    expect(api.calls.slice(1).map((c) => `${c.method} ${c.path} ${c.opts.query?.pos}`)).toEqual([
      `POST /api/v1/jobs/${JOB}/ack 3`,
    ])
  })

  test("a dropped stream is resumed after the last byte written: nothing lost, nothing repeated", async () => {
    const api = fakeApi((c) => {
      const ch = channel()
      if (c.method === "POST") ch.push(jobEvent(), out(1, "a"), out(2, "b"))
      else if (c.path === `/api/v1/jobs/${JOB}/stream` && c.opts.query?.after === 2)
        ch.push(out(3, "c"), exit(3, { code: 0 }))
      else return refusal(404, "E_NOT_FOUND", "no such stream")
      // The connection drops without the outcome: the session must come back for the rest.
      ch.close()
      return stream(ch.stream)
    })
    const { io, written } = fakeIo()
    expect(await runAttached({ binary: "ffmpeg", args: [], client: client(api), io })).toBe(0)
    expect(api.calls.map((c) => `${c.method} ${c.path} ${c.opts.query?.after ?? c.opts.query?.pos ?? ""}`)).toEqual([
      "POST /api/v1/jobs ",
      `GET /api/v1/jobs/${JOB}/stream 2`,
      `POST /api/v1/jobs/${JOB}/ack 3`,
    ])
    expect(text(written.stdout)).toBe("abc")
  })

  test("stdin is forwarded in order and ends with an end-of-input frame", async () => {
    let ch!: ReturnType<typeof channel>
    const api = fakeApi((c) => {
      if (c.method === "POST" && c.path === "/api/v1/jobs") {
        ch = channel()
        ch.push(jobEvent())
        return stream(ch.stream)
      }
      if (c.path === `/api/v1/jobs/${JOB}/stdin`) {
        // The remote process exits once it has read all of its input.
        if (decodeFrames(c.opts.body as Uint8Array).some((f) => f.kind === Kind.stdinEnd)) {
          ch.push(exit(1, { code: 0 }))
          ch.close()
        }
        return ok({ ok: true })
      }
      return refusal(404, "E_NOT_FOUND", "no route")
    })
    const { io } = fakeIo({ stdin: ["q", "uit\n", "more"] })
    expect(await runAttached({ binary: "ffmpeg", args: ["-i", "pipe:0"], client: client(api), io })).toBe(0)
    expect(api.calls[0]!.opts.json).toMatchObject({ stdin: true })
    const frames = uploaded(api.calls)
    expect(frames.map((f) => f.kind)).toEqual([Kind.stdin, Kind.stdin, Kind.stdin, Kind.stdinEnd])
    expect(frames.map((f) => f.seq)).toEqual([1, 2, 3, 4])
    expect(text(frames.map((f) => f.data))).toBe("quit\nmore")
  })

  test("a signal is forwarded to the remote process, which ends with its own code", async () => {
    let ch!: ReturnType<typeof channel>
    const api = fakeApi((c) => {
      if (c.method === "POST" && c.path === "/api/v1/jobs") {
        ch = channel()
        ch.push(jobEvent(), err(1, "encoding\n"))
        return stream(ch.stream)
      }
      if (c.path === `/api/v1/jobs/${JOB}/stdin`) {
        const sig = decodeFrames(c.opts.body as Uint8Array).find((f) => f.kind === Kind.signal)
        if (sig && new TextDecoder().decode(sig.data) === "SIGINT") {
          ch.push(err(2, "Exiting normally, received signal 2.\n"), exit(2, { code: 255 }))
          ch.close()
        }
        return ok({ ok: true })
      }
      return refusal(404, "E_NOT_FOUND", "no route")
    })
    const { io, written, signals } = fakeIo()
    const run = runAttached({ binary: "ffmpeg", args: [], client: client(api), io })
    // Once the job is known (its downlink open), the person at the terminal presses Ctrl-C.
    while (!text(written.stderr).includes("encoding")) await Bun.sleep(1)
    signals.emit("SIGINT", "SIGINT")
    expect(await run).toBe(255)
    expect(uploaded(api.calls).map((f) => f.kind)).toEqual([Kind.signal])
    expect(signals.listenerCount("SIGINT")).toBe(0)
    expect(api.calls.some((c) => c.path.endsWith("/cancel"))).toBe(false)
  })

  test("a remote process that ignores the signal is canceled after signal_timeout_seconds: exit 128+N", async () => {
    const api = fakeApi((c) => {
      if (c.method === "POST" && c.path === "/api/v1/jobs") {
        const ch = channel()
        ch.push(jobEvent())
        return stream(ch.stream)
      }
      return ok({ id: JOB, status: "canceled" })
    })
    const { io, written, signals } = fakeIo()
    const run = runAttached({ binary: "ffmpeg", args: [], client: client(api, 0.05), io })
    await Bun.sleep(10)
    signals.emit("SIGTERM", "SIGTERM")
    expect(await run).toBe(128 + 15)
    expect(api.calls.some((c) => c.method === "POST" && c.path === `/api/v1/jobs/${JOB}/cancel`)).toBe(true)
    expect(text(written.stderr)).toContain("did not stop within 0.05 s of SIGTERM; canceled job " + JOB)
  })
})

describe("errors reach the caller typed, and the proxy edge maps them", () => {
  test("a job that died by a signal exits 128+N; one that failed without a code throws JobFailedError", async () => {
    const ended = (o: Partial<Outcome>) =>
      fakeApi(() => {
        const ch = channel()
        ch.push(jobEvent(), exit(0, o))
        ch.close()
        return stream(ch.stream)
      })
    const run = (o: Partial<Outcome>) =>
      runAttached({ binary: "ffmpeg", args: [], client: client(ended(o)), io: fakeIo().io })
    expect(await run({ status: "failed", code: null, signal: "SIGSEGV" })).toBe(139)
    const failed = await run({ status: "failed", code: null, error: "its worker was lost" }).catch((e) => e)
    expect(failed).toBeInstanceOf(JobFailedError)
    expect(failed.message).toBe(`job ${JOB} failed: its worker was lost`)
    // It ran but its worker failed it (files lost): the reason, with ffmpeg's own code when it failed too.
    const lost = await run({ status: "failed", code: 1, error: 'ffmpeg wrote "out.mkv"' }).catch((e) => e)
    expect(lost).toBeInstanceOf(JobFailedError)
    expect(lost.message).toBe(`job ${JOB} failed: ffmpeg wrote "out.mkv"`)
    expect(lost.remoteCode).toBe(1)
    expect((await run({ status: "failed", code: 8, error: "lost" }).catch((e) => e)).remoteCode).toBe(8)
  })

  test("a refused submit throws the coordinator's typed error with its code", async () => {
    const api = fakeApi(() => refusal(401, "E_AUTH", "unknown client tester"))
    const e = await runAttached({ binary: "ffmpeg", args: [], client: client(api), io: fakeIo().io }).catch((x) => x)
    expect(e).toBeInstanceOf(AuthError)
    expect(e.code).toBe("E_AUTH")
  })

  test("a reader that closed our stdout cancels the job and ends with OutputLostError", async () => {
    const api = fakeApi((c) => {
      if (c.method === "POST" && c.path === "/api/v1/jobs") {
        const ch = channel()
        ch.push(jobEvent(), out(1, "bytes"))
        return stream(ch.stream)
      }
      return ok({ id: JOB, status: "canceled" })
    })
    const e = await runAttached({
      binary: "ffmpeg",
      args: [],
      client: client(api),
      io: fakeIo({ brokenStdout: true }).io,
    }).catch((x) => x)
    expect(e).toBeInstanceOf(OutputLostError)
    expect(api.calls.map((c) => `${c.method} ${c.path}`)).toContain(`POST /api/v1/jobs/${JOB}/cancel`)
  })

  test("attach follows a job from position 0 and forwards neither stdin nor signals", async () => {
    const api = fakeApi((c) => {
      // The job first: its binary and arguments say how its output carries paths.
      if (c.path === `/api/v1/jobs/${JOB}`) return ok({ id: JOB, binary: "ffprobe", args: ["-of", "json"] })
      const ch = channel()
      if (c.path === `/api/v1/jobs/${JOB}/stream`) ch.push(out(1, "replayed"), exit(1, { code: 7 }))
      ch.close()
      return stream(ch.stream)
    })
    const { io, written, signals } = fakeIo({ stdin: ["never read"] })
    expect(await attach({ id: JOB, client: client(api), io })).toBe(7)
    expect(api.calls.map((c) => c.opts.query?.after)).toEqual([undefined, 0])
    expect(text(written.stdout)).toBe("replayed")
    expect(signals.eventNames()).toEqual([])
  })
})

describe("the caller's paths in the output", () => {
  const withPaths = (api: ApiClient): Client => ({
    ...client(api),
    config: { ...client(api).config, paths: { Media: "/home/me/media" } },
  })
  const job = (...frames: Uint8Array[]) => jobOf(true, ...frames)
  const jobOf = (pathTokens: boolean, ...frames: Uint8Array[]) =>
    fakeApi((c) => {
      if (c.path === `/api/v1/jobs/${JOB}`) return ok({ id: JOB, binary: "ffprobe", args: ["-of", "json"], pathTokens })
      const ch = channel()
      ch.push(jobEvent(), ...frames)
      ch.close()
      return stream(ch.stream)
    })

  test("ffprobe: the worker's $Var tokens become this caller's roots, split across frames or not", async () => {
    const api = job(
      out(1, '"file:$Me'),
      out(2, 'dia/a \\"b.mkv" $$5 $'),
      err(3, "'$Media/x': No such file"),
      exit(3, {}),
    )
    const { io, written } = fakeIo()
    expect(
      await runAttached({ binary: "ffprobe", args: ["-of", "json", "$Media/a"], client: withPaths(api), io }),
    ).toBe(0)
    expect(text(written.stdout)).toBe('"file:/home/me/media/a \\"b.mkv" $5 $')
    expect(text(written.stderr)).toBe("'/home/me/media/x': No such file")
  })

  test("ffmpeg: stdout is media and passes as sent; stderr is mapped", async () => {
    const api = job(out(1, "$Media/a $$"), err(2, "from '$Media/a'"), exit(2, {}))
    const { io, written } = fakeIo()
    await runAttached({ binary: "ffmpeg", args: ["-i", "$Media/a"], client: withPaths(api), io })
    expect(text(written.stdout)).toBe("$Media/a $$")
    expect(text(written.stderr)).toBe("from '/home/me/media/a'")
  })

  test("attach maps the stored output with this caller's roots", async () => {
    const api = job(out(1, '{"filename": "$Media/a.mkv"}'), exit(1, {}))
    const { io, written } = fakeIo()
    expect(await attach({ id: JOB, client: withPaths(api), io })).toBe(0)
    expect(text(written.stdout)).toBe('{"filename": "/home/me/media/a.mkv"}')
  })

  test("a submitted job asks for path tokens; attach to an older client's job passes its bytes as stored", async () => {
    const api = job(exit(0, {}))
    await runAttached({ binary: "ffprobe", args: ["-version"], client: withPaths(api), io: fakeIo().io })
    expect(api.calls.find((c) => c.method === "POST")?.opts.json).toMatchObject({ pathTokens: true })
    const old = jobOf(false, out(1, '{"filename": "$Media/a.mkv $$"}'), exit(1, {}))
    const { io, written } = fakeIo()
    expect(await attach({ id: JOB, client: withPaths(old), io })).toBe(0)
    expect(text(written.stdout)).toBe('{"filename": "$Media/a.mkv $$"}')
  })
})

describe("local fallback", () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "dffmpeg-session-fallback-"))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  // `sh -c "exit 7"` stands in for the local ffmpeg: `-c` takes a value in ffmpeg's model, so the caller's
  // arguments pass mapping and rewrites as they are, and the local exit code is one no other path gives.
  const ARGS = ["-c", "exit 7"]
  const withFallback = (api: ApiClient, fallback: Record<string, unknown>): Client => ({
    ...client(api),
    base: dir,
    config: {
      ...client(api).config,
      fallback: v.parse(FallbackConfig, { ffmpeg: "/bin/sh", log_file: "fb.jsonl", ...fallback }),
    },
  })
  const runWith = (api: ApiClient, fallback: Record<string, unknown>, io = fakeIo().io) =>
    runAttached({ binary: "ffmpeg", args: ARGS, client: withFallback(api, fallback), io })
  const QUEUE = { when: ["queue_timeout"], queue_timeout_seconds: 0.1 }
  const logged = () =>
    existsSync(join(dir, "fb.jsonl"))
      ? readFileSync(join(dir, "fb.jsonl"), "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { reason: string; exit_code: number; argv: string[] })
      : []
  const reported = (api: { calls: Call[] }) =>
    api.calls
      .filter((c) => c.path === "/api/v1/clients/fallbacks")
      .flatMap((c) => (c.opts.json as { records: { reason: string }[] }).records.map((r) => r.reason))
  const NOCAP = `${NO_CAPABLE_WORKER} can run it (needs ffmpeg); waited 30 s`
  /** A coordinator whose job waits until withdrawn; `answer` is its answer to the withdrawal. */
  const onWithdraw = (answer: (ch: ReturnType<typeof channel>) => Response) =>
    answering([jobEvent()], (c, ch) => (c.path === `/api/v1/jobs/${JOB}/withdraw` ? answer(ch) : ok({})))
  /** A coordinator whose submit stream carries `frames` (kept open unless it ends with an exit). */
  const answering = (
    frames: Uint8Array[],
    other: (c: Call, ch: ReturnType<typeof channel>) => Response = () => ok({}),
  ) => {
    let ch!: ReturnType<typeof channel>
    const api = fakeApi((c) => {
      if (c.method === "POST" && c.path === "/api/v1/jobs") {
        ch = channel()
        ch.push(...frames)
        return stream(ch.stream)
      }
      if (c.path === "/api/v1/clients/fallbacks") {
        const n = (c.opts.json as { records: unknown[] }).records.length
        return ok({ accepted: n, duplicates: 0 })
      }
      return other(c, ch)
    })
    return api
  }

  test("coordinator unreachable: runs here, exits with the local code, logs it; reported only later", async () => {
    const api = fakeApi(() => {
      throw new UnavailableError("cannot reach the coordinator at http://fake: ConnectionRefused")
    })
    const run = (fallback: Record<string, unknown>) => runWith(api, fallback)
    expect(await run({ when: ["coordinator_unreachable"] })).toBe(7)
    expect(logged().map((e) => [e.reason, e.exit_code, e.argv])).toEqual([["coordinator_unreachable", 7, ARGS]])
    expect(api.calls.map((c) => c.path)).toEqual(["/api/v1/jobs"])
    // Not for this situation, or no fallback at all: the failure as it always was.
    expect(await run({ when: ["queue_timeout"] }).catch((e) => e)).toBeInstanceOf(UnavailableError)
    const off = await runAttached({ binary: "ffmpeg", args: ARGS, client: client(api), io: fakeIo().io }).catch(
      (e) => e,
    )
    expect(off).toBeInstanceOf(UnavailableError)
    expect(logged().length).toBe(1)
  })

  test("no capable worker: the failed job runs here and is reported at once, pending records first", async () => {
    writeFileSync(
      join(dir, "fb.jsonl"),
      JSON.stringify({
        id: crypto.randomUUID(),
        at: 1,
        reason: "coordinator_unreachable",
        tool: "ffmpeg",
        exit_code: 0,
      }) + "\n",
    )
    const api = answering([jobEvent(), exit(0, { status: "failed", code: null, error: NOCAP })])
    const code = await runWith(api, { when: ["no_capable_worker"] })
    expect(code).toBe(7)
    expect(logged().map((e) => e.reason)).toEqual(["coordinator_unreachable", "no_capable_worker"])
    expect(reported(api)).toEqual(["coordinator_unreachable", "no_capable_worker"])
  })

  test("a caller that was signaled is never started here: the job's own outcome stands", async () => {
    const { io, signals } = fakeIo()
    const api = answering([jobEvent()], (_c, ch) => {
      // The signal is forwarded: the coordinator ends the job (here: as no worker could run it).
      ch.push(exit(0, { status: "failed", code: null, error: NOCAP }))
      return ok({ ok: true })
    })
    const run = runWith(api, { when: ["no_capable_worker"] }, io).catch((e) => e)
    await waitFor(() => api.calls.length >= 1)
    signals.emit("SIGTERM", "SIGTERM")
    expect(await run).toBeInstanceOf(JobFailedError)
    expect(logged()).toEqual([])
  })

  test("queue timeout: the job is withdrawn, and runs here once the coordinator says it was", async () => {
    const api = onWithdraw((ch) => {
      ch.push(exit(0, { status: "canceled", code: null, error: WITHDRAWN_FOR_FALLBACK }))
      return ok({ id: JOB, status: "canceled" })
    })
    const code = await runWith(api, QUEUE)
    expect(code).toBe(7)
    expect(logged().map((e) => e.reason)).toEqual(["queue_timeout"])
    expect(reported(api)).toEqual(["queue_timeout"])
  })

  test("queue timeout whose answer was lost: the job's state says it was withdrawn, so it runs here", async () => {
    const withdrawn = { status: "canceled", code: null, error: WITHDRAWN_FOR_FALLBACK } as const
    const api = answering([jobEvent()], (c, ch) => {
      if (c.path === `/api/v1/jobs/${JOB}/withdraw`) {
        ch.push(exit(0, withdrawn))
        return refusal(503, "E_UNAVAILABLE", "the answer was lost")
      }
      return c.method === "GET" && c.path === `/api/v1/jobs/${JOB}` ? ok({ id: JOB, ...withdrawn }) : ok({})
    })
    expect(await runWith(api, QUEUE)).toBe(7)
    expect(logged().map((e) => e.reason)).toEqual(["queue_timeout"])
  })

  test("queue timeout refused (the job started meanwhile): the remote run is followed to its end", async () => {
    const api = onWithdraw((ch) => {
      ch.push(out(1, "remote"), exit(1, { code: 0 }))
      return refusal(409, "E_CONFLICT", `job ${JOB} is running: only a job that has not started can be withdrawn`)
    })
    const { io, written } = fakeIo()
    const code = await runWith(api, QUEUE, io)
    expect(code).toBe(0)
    expect(text(written.stdout)).toBe("remote")
    expect(logged()).toEqual([])
  })

  test("a job with output is running: no withdrawal, whatever the wait", async () => {
    const api = answering([jobEvent(), out(1, "x"), exit(1, { code: 3 })])
    const code = await runWith(api, QUEUE)
    expect(code).toBe(3)
    expect(api.calls.map((c) => c.path)).not.toContain(`/api/v1/jobs/${JOB}/withdraw`)
  })
})
