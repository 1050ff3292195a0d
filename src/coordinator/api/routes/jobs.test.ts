import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { admin, alice, bob, RouteHarness, T0 } from "../../../../test/helpers/routes.ts"
import { newId } from "../../../shared/ids.ts"
import { WITHDRAWN_FOR_FALLBACK } from "../../../shared/protocol/fallback.ts"
import { concatFrames, decodeFrames, encodeFrame, Kind } from "../../../shared/protocol/frames.ts"
import { createHeldOutput } from "../../../store/held.ts"

let h: RouteHarness
beforeEach(async () => {
  h = await RouteHarness.open()
})
afterEach(async () => {
  await h.close()
})

const J = "/api/v1/jobs"
// Three ids in creation order (ULIDs sort by time).
const OLD = "01M8DFWEZE8JWRGH9VMVBQN62M"
const MID = "01M8DFWF4PCGSZBYEVT8TNJN46"
const NEW = "01M8DFWFMJ6MS7ZZYSM5GE9EPT"
const ids = async (res: Response) => ((await res.json()) as { id: string }[]).map((j) => j.id)

describe("GET /jobs since and before", () => {
  beforeEach(async () => {
    await h.job(OLD, {}, T0)
    await h.job(MID, { requester: "bob" }, T0 + 60_000)
    await h.job(NEW, {}, T0 + 120_000)
  })

  test("since keeps jobs created at or after it, in ms or as an ISO date", async () => {
    expect(await ids(await h.request(admin, "GET", `${J}?since=${T0 + 60_000}`))).toEqual([NEW, MID])
    expect(await ids(await h.request(admin, "GET", `${J}?since=${new Date(T0 + 60_001).toISOString()}`))).toEqual([NEW])
    expect(await ids(await h.request(admin, "GET", `${J}?since=2100-01-01`))).toEqual([])
  })

  test("before pages newest first; clients still only see their own jobs", async () => {
    expect(await ids(await h.request(admin, "GET", `${J}?before=${NEW}&limit=1`))).toEqual([MID])
    expect(await ids(await h.request(admin, "GET", `${J}?before=${MID}`))).toEqual([OLD])
    expect(await ids(await h.request(alice, "GET", `${J}?before=${NEW}`))).toEqual([OLD])
    expect(await ids(await h.request(bob, "GET", `${J}?since=${T0}`))).toEqual([MID])
  })

  test.each([
    ["since=yesterday", /since must be milliseconds since the epoch or an ISO 8601 date/],
    ["since=2026-02-30", /since must be/],
    ["since=-1", /since must be/],
    ["before=NOTAULID", /before must be a job id/],
    ["limit=-1", /limit must be a non-negative integer/],
  ])("?%s is 400 with a clear message", async (query, message) => {
    const res = await h.request(admin, "GET", `${J}?${query}`)
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message)
  })
})

describe("GET /jobs/:id/output", () => {
  beforeEach(async () => {
    await h.worker("w1")
    await h.job(MID)
    await h.run(MID, "w1", [
      { stream: "stderr", data: "a\r" },
      { stream: "stdout", data: new Uint8Array([0, 255, 10]) },
      { stream: "stderr", data: "b\n" },
    ])
  })

  test("returns stored frames after a position, in order, byte for byte, without waiting", async () => {
    const res = await h.request(alice, "GET", `${J}/${MID}/output`)
    expect(res.headers.get("content-type")).toBe("application/vnd.dffmpeg.frames")
    const frames = decodeFrames(new Uint8Array(await res.arrayBuffer()))
    expect(frames.map((f) => [f.kind, [...f.data]])).toEqual([
      [Kind.stderr, [97, 13]],
      [Kind.stdout, [0, 255, 10]],
      [Kind.stderr, [98, 10]],
    ])
    const rest = decodeFrames(
      new Uint8Array(
        await (await h.request(alice, "GET", `${J}/${MID}/output?after=${frames[0].seq}&limit=1`)).arrayBuffer(),
      ),
    )
    expect(rest.map((f) => f.seq)).toEqual([frames[1].seq])
    const end = await h.request(alice, "GET", `${J}/${MID}/output?after=${frames[2].seq}`)
    expect((await end.arrayBuffer()).byteLength).toBe(0)
  })

  test("is hidden from other clients (404) and validates its parameters (400)", async () => {
    expect((await h.request(bob, "GET", `${J}/${MID}/output`)).status).toBe(404)
    expect((await h.request(admin, "GET", `${J}/${MID}/output?limit=0`)).status).toBe(400)
    expect((await h.request(admin, "GET", `${J}/${MID}/output?limit=1001`)).status).toBe(400)
    expect((await h.request(admin, "GET", `${J}/${MID}/output?after=x`)).status).toBe(400)
    expect((await h.request(admin, "GET", `${J}/NOTAULID/output`)).status).toBe(404)
  })
})

describe("POST /jobs/:id/stdin with a signal before the job started", () => {
  let s: RouteHarness
  beforeEach(async () => {
    s = await RouteHarness.open()
    await s.worker("w1")
  })
  afterEach(async () => {
    await s.close()
  })
  const signal = (id: string, sig: string) =>
    s.request(alice, "POST", `${J}/${id}/stdin`, encodeFrame(Kind.signal, 1, new TextEncoder().encode(sig)))

  test("ends a queued or assigned job at once with local ffmpeg's exit code; a running one gets the signal", async () => {
    await s.job(MID)
    expect((await signal(MID, "SIGTERM")).status).toBe(200)
    expect(await s.store.getJob(MID)).toMatchObject({ status: "canceled", exitCode: 255 })
    const hup = "01M8DFWF4PCGSZBYEVT8TNJN47"
    await s.job(hup)
    await s.store.assign(hup, "w1", s.clock)
    expect((await signal(hup, "SIGHUP")).status).toBe(200)
    expect(await s.store.getJob(hup)).toMatchObject({ status: "canceled", exitCode: 129 })
    const probe = "01M8DFWF4PCGSZBYEVT8TNJN48"
    await s.job(probe, { binary: "ffprobe" })
    await signal(probe, "SIGINT")
    expect(await s.store.getJob(probe)).toMatchObject({ status: "canceled", exitCode: 130 })
    const running = "01M8DFWF4PCGSZBYEVT8TNJN49"
    await s.job(running)
    await s.run(running, "w1", [])
    await signal(running, "SIGINT")
    expect(await s.store.getJob(running)).toMatchObject({ status: "running", exitCode: null, cancelRequestedAt: null })
    expect(await s.store.readInput(running, 0, 10)).toMatchObject([{ kind: Kind.signal, seq: 1 }])
  })
})

describe("POST /jobs/:id/withdraw (a caller's local fallback)", () => {
  beforeEach(async () => {
    await h.worker("w1")
  })
  const withdraw = (id: string, who = alice) => h.request(who, "POST", `${J}/${id}/withdraw`)

  test("a queued or an assigned job is canceled at once, without an exit code, and can no longer start", async () => {
    await h.job(MID)
    const res = await withdraw(MID)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({
      id: MID,
      status: "canceled",
      exitCode: null,
      error: WITHDRAWN_FOR_FALLBACK,
    })
    await h.job(NEW)
    const assigned = await h.store.assign(NEW, "w1", h.clock)
    expect((await withdraw(NEW)).status).toBe(200)
    expect(await h.store.start(NEW, "w1", assigned!.epoch, h.clock)).toBeUndefined()
    expect((await h.store.getJob(NEW))!.status).toBe("canceled")
  })

  test("a running or ended job is 409 and left as it is: a job never runs in two places", async () => {
    await h.job(MID)
    await h.run(MID, "w1", [])
    const res = await withdraw(MID)
    expect(res.status).toBe(409)
    expect(await res.json()).toMatchObject({ error: { code: "E_CONFLICT", details: { status: "running" } } })
    expect((await h.store.getJob(MID))!.status).toBe("running")
    await h.job(NEW)
    await withdraw(NEW)
    expect((await withdraw(NEW)).status).toBe(409)
  })

  test("only its requester may withdraw it (an admin cancels instead); others do not see it", async () => {
    await h.job(MID)
    expect((await withdraw(MID, admin)).status).toBe(403)
    expect((await withdraw(MID, bob)).status).toBe(404)
    expect((await h.store.getJob(MID))!.status).toBe("queued")
  })
})

describe("POST /jobs/:id/stdin over limits.max_stdin_bytes", () => {
  let s: RouteHarness
  beforeEach(async () => {
    s = await RouteHarness.open({ limits: { max_stdin_bytes: 10 } })
    await s.job(MID, { stdin: true })
  })
  afterEach(async () => {
    await s.close()
  })
  const upload = (...frames: Uint8Array[]) => s.request(alice, "POST", `${J}/${MID}/stdin`, concatFrames(frames))
  const stdin = (seq: number, n: number) => encodeFrame(Kind.stdin, seq, new Uint8Array(n).fill(0x41))

  test("up to the limit is stored (a resent chunk is not counted twice); one byte more is 413 and cancels the job", async () => {
    expect((await upload(stdin(1, 6))).status).toBe(200)
    expect((await upload(stdin(1, 6), stdin(2, 4), encodeFrame(Kind.stdinEnd, 3))).status).toBe(200)
    expect(await s.store.inputBytes(MID)).toEqual({ bytes: 10, lastSeq: 3 })
    const res = await upload(stdin(4, 1))
    expect(res.status).toBe(413)
    expect(await res.json()).toEqual({
      error: {
        code: "E_TOO_LARGE",
        message: `the standard input of job ${MID} is over 10 bytes (limits.max_stdin_bytes); the job is canceled`,
      },
    })
    const job = (await s.store.getJob(MID))!
    expect({ status: job.status, error: job.error }).toEqual({
      status: "canceled",
      error: "its standard input passed 10 bytes (limits.max_stdin_bytes)",
    })
    // Nothing of the refused batch was stored; later uploads are ignored like for any ended job.
    expect(await s.store.inputBytes(MID)).toEqual({ bytes: 10, lastSeq: 3 })
    expect(await (await upload(stdin(4, 1))).json()).toEqual({ ok: true, ignored: true })
  })

  test("an out-of-order sequence cannot slip stdin past the limit: a gap is 409 with the expected sequence", async () => {
    // The red team's run: seq 1000000 first, then seq 5 with more than the limit.
    const far = await upload(stdin(1_000_000, 1))
    expect(far.status).toBe(409)
    expect(await far.json()).toEqual({
      error: { code: "E_CONFLICT", message: "stdin gap: expected sequence 1, got 1000000", details: { expected: 1 } },
    })
    expect((await upload(stdin(1, 1))).status).toBe(200)
    expect((await upload(stdin(5, 7))).status).toBe(409)
    // A batch whose own order is shuffled is put in order; a resent prefix is dropped, not counted.
    expect((await upload(stdin(3, 3), stdin(1, 1), stdin(2, 3))).status).toBe(200)
    expect(await s.store.inputBytes(MID)).toEqual({ bytes: 7, lastSeq: 3 })
    // What is not stored counts, whatever its sequence: 7 + 4 is over 10.
    expect((await upload(stdin(4, 1), stdin(5, 3))).status).toBe(413)
    expect(await s.store.inputBytes(MID)).toEqual({ bytes: 7, lastSeq: 3 })
    expect((await s.store.getJob(MID))!.status).toBe("canceled")
  })

  test("a running job is asked to stop: its worker sees the cancel request", async () => {
    await s.worker("w1")
    const assigned = await s.store.assign(MID, "w1", s.clock)
    await s.store.start(MID, "w1", assigned!.epoch, s.clock)
    expect((await upload(stdin(1, 11))).status).toBe(413)
    const job = (await s.store.getJob(MID))!
    expect({ status: job.status, canceling: job.cancelRequestedAt !== null }).toEqual({
      status: "running",
      canceling: true,
    })
  })
})

describe("POST /jobs: protocols no worker accepts", () => {
  const submit = (args: string[]) =>
    h.request(alice, "POST", J, { binary: "ffmpeg", args, paths: [], cwd: null, stdin: false })

  test.each([
    [
      ["-i", "concatf:list.txt", "-f", "null", "-"],
      /^argument 2 "concatf:list\.txt": protocol concatf is not allowed on any worker/,
    ],
    [["-i", "in.mkv", "-f", "mpegts", "tee:a.ts|b.ts"], /^argument 5 "tee:a\.ts\|b\.ts": protocol tee/],
    [["-i", "fd:3", "-f", "null", "-"], /protocol fd/],
  ])("%j is 400 naming the argument", async (args, message) => {
    const res = await submit(args)
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message)
  })

  test("an argument or environment value holding a NUL byte is 400 (the worker could not start it)", async () => {
    const res = await submit(["-i", "in.mkv\0/../x", "-f", "null", "-"])
    expect(res.status).toBe(400)
    const { error } = (await res.json()) as { error: { message: string; details?: string[] } }
    expect([error.message, ...(error.details ?? [])].join("; ")).toMatch(/an argument holds a NUL byte/)
    const withEnv = await h.request(alice, "POST", J, {
      binary: "ffmpeg",
      args: ["-i", "in.mkv", "-f", "null", "-"],
      paths: [],
      cwd: null,
      stdin: false,
      env: { FFREPORT: "file=r.log\0x" },
    })
    expect(withEnv.status).toBe(400)
    const e2 = ((await withEnv.json()) as { error: { message: string; details?: string[] } }).error
    expect([e2.message, ...(e2.details ?? [])].join("; ")).toMatch(/an environment value holds a NUL byte/)
  })

  test("protocols a worker may allow (or refuse by its own policy) are left to the worker", async () => {
    for (const args of [
      ["-i", "http://h/x", "-f", "null", "-"],
      ["-i", "concat:a|b", "-f", "null", "-"],
      ["-f", "lavfi", "-i", "tee:x", "-f", "null", "-"],
    ]) {
      expect((await submit(args)).status).toBe(201)
    }
  })
})

describe("POST /jobs: the job's files (concat lists, filter scripts)", () => {
  const args = ["-f", "concat", "-safe", "0", "-i", "$Media/l.txt", "-c", "copy", "$Media/o.ts"]
  const submit = (files: unknown, over: Record<string, unknown> = {}) =>
    h.request(alice, "POST", J, { binary: "ffmpeg", args, paths: ["Media"], cwd: null, stdin: false, files, ...over })
  const errorOf = async (res: Response) => {
    const { error } = (await res.json()) as { error: { code: string; message: string; details?: unknown } }
    return { code: error.code, message: [error.message, ...((error.details as string[] | undefined) ?? [])].join("; ") }
  }

  test("accepted at a list's position with declared variables, kept whole for the job and its worker", async () => {
    const files = [{ arg: 5, content: "file '$Media/a.ts'\nduration 1\n" }]
    const res = await submit(files)
    expect(res.status).toBe(201)
    const answer = (await res.json()) as { id: string; files: unknown[] }
    expect((await h.store.getJob(answer.id))?.files).toEqual(files)
    // Not echoed to the caller that just sent them; the job's own view shows them.
    expect(answer.files).toEqual([])
    const shown = (await (await h.request(alice, "GET", `${J}/${answer.id}`)).json()) as { files: unknown[] }
    expect(shown.files).toEqual(files)
  })

  test("a list of 1 MiB is within the submission's body limit", async () => {
    const content = "#".repeat((1 << 20) - 20) + "\nfile '$Media/a.ts'\n"
    expect((await submit([{ arg: 5, content }])).status).toBe(201)
  })

  test.each([
    ["a position naming no list", [{ arg: 8, content: "" }], /^files\[0\]\.arg 8 is not a -f concat input/],
    ["a position past argv", [{ arg: 9, content: "" }], /^files\[0\]\.arg 9 is not an argument's position/],
    ["a fractional position", [{ arg: 5.5, content: "" }], /arg/],
    [
      "an undeclared variable",
      [{ arg: 5, content: "file '$Other/../../etc/passwd'" }],
      /uses \$Other, which is not listed in paths/,
    ],
    ["content over 1 MiB", [{ arg: 5, content: "#".repeat((1 << 20) + 1) }], /longer than 1 MiB|bytes; at most/],
    ["more than 16 files", Array.from({ length: 17 }, () => ({ arg: 5, content: "" })), /more than 16 files/],
    ["a NUL byte", [{ arg: 5, content: "file '$Media/a.ts\0'" }], /files\[0\] holds a NUL byte/],
    ["an unknown field", [{ arg: 5, content: "", path: "/x" }], /./],
    ["not an array", { arg: 5 }, /./],
  ])("%s is 400 with a JSON error", async (_, files, message) => {
    const res = await submit(files)
    expect(res.status).toBe(400)
    const err = await errorOf(res)
    expect(err.code).toBe("E_INVALID")
    expect(err.message).toMatch(message)
  })
})

describe("GET /jobs stays bounded whatever the jobs' sizes", () => {
  // 7.5 MB of arguments, as the abuse run submitted (written straight to the store: quotas refuse it over the API).
  const huge = Array.from({ length: 2500 }, (_, i) => `-metadata:s:${i}=${"x".repeat(3000)}`)

  test("a listing cuts a 7.5 MB job's arguments and flags it; the job's own GET has them whole", async () => {
    await h.job(OLD, { args: huge })
    await h.job(MID)
    const res = await h.request(admin, "GET", `${J}?limit=1000`)
    const text = await res.text()
    expect(text.length).toBeLessThan(16 * 1024)
    const [mid, old] = JSON.parse(text) as { id: string; args: string[]; truncated: boolean; argsChars: number }[]
    expect([mid.id, mid.truncated, mid.args]).toEqual([MID, false, ["-version"]])
    expect(old.truncated).toBe(true)
    expect(old.argsChars).toBe(JSON.stringify(huge).length)
    expect(old.args).toEqual(huge.slice(0, old.args.length))
    const whole = (await (await h.request(admin, "GET", `${J}/${OLD}`)).json()) as { args: string[] }
    expect(whole.args).toEqual(huge)
  })

  test("a page is at most limits.max_page_size; the next-page header pages on to the end", async () => {
    const made: string[] = []
    for (let i = 0; i < 205; i++) made.push((await h.job(newId(), {}, T0 + i)).id)
    const seen: string[] = []
    let before = ""
    for (let pages = 1; ; pages++) {
      const res = await h.request(admin, "GET", `${J}?limit=1000${before && `&before=${before}`}`)
      const page = await ids(res)
      expect(page.length).toBeLessThanOrEqual(200)
      seen.push(...page)
      const next = res.headers.get("x-next-before")
      if (!next) {
        expect(pages).toBe(2)
        break
      }
      expect(next).toBe(page.at(-1)!)
      before = next
    }
    expect(seen).toEqual([...made].reverse())
    // A page that holds everything has no header.
    expect((await h.request(admin, "GET", `${J}?limit=5&before=${made[5]}`)).headers.get("x-next-before")).toBeNull()
  })
})

describe("POST /jobs/:id/ack and the output window", () => {
  const w1 = { name: "w1", role: "worker" as const }
  const upload = (seq: number, bytes: number) => encodeFrame(Kind.stdout, seq, new Uint8Array(bytes))
  beforeEach(async () => {
    await h.close()
    // A 1 MiB window, and a short wait for room before "retry".
    h = await RouteHarness.open({ relay: { window_mb: 1, window_wait_seconds: 0.05 } })
    await h.worker("w1")
    await h.job(MID, { attached: true })
    await h.run(MID, "w1", [{ stream: "stdout", data: new Uint8Array(900 * 1024) }])
  })

  test('an upload into a full window is 503 "retry" and stores nothing; the caller\'s ack makes room', async () => {
    const full = await h.request(w1, "POST", `${J}/${MID}/output?epoch=1`, upload(2, 200 * 1024))
    expect(full.status).toBe(503)
    expect(((await full.json()) as { error: { message: string } }).error.message).toContain(
      "output window of job " + MID + " is full (relay.window_mb = 1)",
    )
    const [row] = await h.store.readOutput(MID, 0, 10)
    const ack = await h.request(alice, "POST", `${J}/${MID}/ack?pos=${row.pos}`)
    expect(await ack.json()).toEqual({ ok: true, acked: row.pos })
    expect(await h.store.readOutput(MID, 0, 10)).toEqual([])
    const again = await h.request(w1, "POST", `${J}/${MID}/output?epoch=1`, upload(2, 200 * 1024))
    expect(again.status).toBe(200)
  })

  test("an upload waiting for room goes on when the ack commits, without a retry", async () => {
    h.config.relay.window_wait_seconds = 5
    const [row] = await h.store.readOutput(MID, 0, 10)
    const waiting = h.request(w1, "POST", `${J}/${MID}/output?epoch=1`, upload(2, 200 * 1024))
    await h.request(alice, "POST", `${J}/${MID}/ack?pos=${row.pos}`)
    expect((await waiting).status).toBe(200)
  })

  test("a worker that keeps what it sends (retain=1) is told what is durable and that frame digests are taken", async () => {
    const kept = await h.request(w1, "POST", `${J}/${MID}/output?epoch=1&retain=1`, upload(1, 10))
    expect(await kept.json()).toEqual({ ok: true, finished: false, durable: 1, digests: true })
    const plain = await h.request(w1, "POST", `${J}/${MID}/output?epoch=1`, upload(1, 10))
    expect(await plain.json()).toEqual({ ok: true, finished: false })
  })

  test("only the requester acknowledges; a bad position is 400", async () => {
    expect((await h.request(bob, "POST", `${J}/${MID}/ack?pos=1`)).status).toBe(404)
    expect((await h.request(admin, "POST", `${J}/${MID}/ack?pos=1`)).status).toBe(403)
    expect((await h.request(alice, "POST", `${J}/${MID}/ack?pos=-1`)).status).toBe(400)
    expect((await h.request(alice, "POST", `${J}/${MID}/ack`)).status).toBe(400)
    expect((await h.store.readOutput(MID, 0, 10)).length).toBe(1)
  })
})

describe("worker start claims with a note", () => {
  const w1 = { name: "w1", role: "worker" as const }
  beforeEach(async () => {
    await h.worker("w1")
    await h.job(MID)
    await h.store.assign(MID, "w1", h.clock)
  })
  test("the note (the profile's rewrites) is the reason of the running event", async () => {
    const res = await h.request(w1, "POST", `${J}/${MID}/start?epoch=1`, { note: "profile: h264_nvenc -> h264_qsv" })
    expect(res.status).toBe(200)
    expect((await h.store.events(MID)).at(-1)).toMatchObject({
      status: "running",
      reason: "profile: h264_nvenc -> h264_qsv",
    })
  })
  test.each([
    ["a control character", { note: "profile: a -> b\u001b[2J" }],
    ["an unknown field", { note: "x", extra: 1 }],
    ["a note too long", { note: "x".repeat(1025) }],
    ["not JSON", "{"],
  ])("%s is 400 and the job does not start", async (_name, body) => {
    const res = await h.request(w1, "POST", `${J}/${MID}/start?epoch=1`, body)
    expect(res.status).toBe(400)
    expect((await h.store.getJob(MID))!.status).toBe("assigned")
  })
})

describe("POST /jobs: info commands", () => {
  const w1 = { name: "w1", role: "worker" as const }
  const tools = {
    ffmpeg: {
      version: "5.1.9",
      encoders: ["libx264"],
      decoders: ["h264"],
      hwaccels: [],
      hwDevices: [],
      filters: ["scale"],
      muxers: ["mp4"],
      demuxers: ["mov"],
    },
  }
  const submit = () =>
    h.request(alice, "POST", J, { binary: "ffmpeg", args: ["-version"], paths: [], cwd: null, stdin: false })
  test("the first is pinned to the reference worker in the probe lane; a repeat is created ended with its bytes", async () => {
    await h.worker("w1", { tools })
    await h.worker("w0") // registered no tools: never the reference worker
    const first = (await (await submit()).json()) as { id: string; pin: string; lane: string; status: string }
    expect(first).toMatchObject({ pin: "w1", lane: "probe", status: "queued" })
    const assigned = await h.store.assign(first.id, "w1", h.clock)
    expect((await h.request(w1, "POST", `${J}/${first.id}/start?epoch=${assigned!.epoch}`)).status).toBe(200)
    const out = concatFrames([
      encodeFrame(Kind.stdout, 1, new TextEncoder().encode("ffmpeg version 5.1.9\n")),
      encodeFrame(Kind.exit, 0, new TextEncoder().encode(JSON.stringify({ code: 0, signal: null }))),
    ])
    expect((await h.request(w1, "POST", `${J}/${first.id}/output?epoch=${assigned!.epoch}`, out)).status).toBe(200)
    const res = await submit()
    expect(res.status).toBe(201)
    const again = (await res.json()) as { id: string; status: string; exitCode: number; workerId: string | null }
    expect(again).toMatchObject({ status: "completed", exitCode: 0, workerId: null })
    const rows = decodeFrames(
      new Uint8Array(await (await h.request(alice, "GET", `${J}/${again.id}/output`)).arrayBuffer()),
    )
    const stdout = rows.filter((f) => f.kind === Kind.stdout).map((f) => new TextDecoder().decode(f.data))
    expect(stdout).toEqual(["ffmpeg version 5.1.9\n"])
    const counted = h.metrics.render({
      stats: await h.store.stats(),
      workers: [],
      loads: new Map(),
      running: [],
      now: h.clock,
      version: "t",
      startedAt: T0,
    })
    expect(counted).toContain('dffmpeg_info_commands_total{binary="ffmpeg",answer="reference"} 1\n')
    expect(counted).toContain('dffmpeg_info_commands_total{binary="ffmpeg",answer="cache"} 1\n')
  })
  test("the reference worker is one that can run it: a command from a mapped directory is not pinned to a worker without that path", async () => {
    // w1 has the widest tools but not $Media; w2 has $Media. Pinned to w1, the command could run nowhere.
    const wide = { ffmpeg: { ...tools.ffmpeg, encoders: ["libx264", "libx265", "aac"] } }
    await h.worker("w1", { tools: wide })
    await h.worker("w2", { tools, paths: ["Media"] })
    const res = await h.request(alice, "POST", J, {
      binary: "ffmpeg",
      args: ["-version"],
      paths: ["Media"],
      cwd: "$Media/shows",
      stdin: false,
    })
    expect(res.status).toBe(201)
    expect(await res.json()).toMatchObject({ status: "queued", pin: "w2", lane: "probe" })
    // Without a path it is pinned to the widest, as before.
    expect(await (await submit()).json()).toMatchObject({ status: "queued", pin: "w1" })
  })
  test("an attached one whose stdout the coordinator held in memory is cached with those bytes", async () => {
    await h.close()
    const held = createHeldOutput(1024 * 1024)
    h = await RouteHarness.open({}, held)
    await h.worker("w1", { tools })
    const body = { binary: "ffmpeg", args: ["-version"], paths: [], cwd: null, stdin: false, attached: true }
    const first = (await (await h.request(alice, "POST", J, body)).json()) as { id: string; pin: string }
    expect(first.pin).toBe("w1")
    const { epoch } = (await h.store.assign(first.id, "w1", h.clock))!
    expect((await h.request(w1, "POST", `${J}/${first.id}/start?epoch=${epoch}`)).status).toBe(200)
    const enc = new TextEncoder()
    const out = concatFrames([encodeFrame(Kind.stdout, 1, enc.encode("ffmpeg version 5.1.9\n"))])
    expect((await h.request(w1, "POST", `${J}/${first.id}/output?epoch=${epoch}&retain=1`, out)).status).toBe(200)
    // Held: its row stores no bytes, the coordinator's memory does.
    expect(held.bytes).toBe(21)
    const exit = concatFrames([encodeFrame(Kind.exit, 0, enc.encode(JSON.stringify({ code: 0, signal: null })))])
    expect((await h.request(w1, "POST", `${J}/${first.id}/output?epoch=${epoch}&retain=1`, exit)).status).toBe(200)
    const again = (await (await h.request(alice, "POST", J, body)).json()) as { id: string; status: string }
    expect(again.status).toBe("completed")
    for (const id of [first.id, again.id]) {
      const frames = decodeFrames(
        new Uint8Array(await (await h.request(alice, "GET", `${J}/${id}/output`)).arrayBuffer()),
      )
      expect(frames.filter((f) => f.kind === Kind.stdout).map((f) => new TextDecoder().decode(f.data))).toEqual([
        "ffmpeg version 5.1.9\n",
      ])
    }
  })
  test("with no worker that registered tools it is not pinned: an ordinary probe any worker may answer", async () => {
    await h.worker("w0")
    const job = (await (await submit()).json()) as { pin: string | null; lane: string }
    expect(job).toMatchObject({ pin: null, lane: "probe" })
  })
})

describe("GET /jobs/:id/stream and the hints of its wake-ups", () => {
  /** The stream's reads: pages of output, and the job's summary (the route's load and the stream's state). */
  const reads = { output: 0, state: 0 }
  const count = (sql: string) => {
    if (sql.startsWith('select * from "job_output" where "job_id" = ? and "pos" > ?')) reads.output++
    else if (sql.includes("substr(error") && sql.endsWith('where "id" = ?')) reads.state++
  }
  const until = async (ok: () => boolean) => {
    for (let i = 0; i < 5000 && !ok(); i++) await Bun.sleep(1)
    expect(ok()).toBe(true)
  }
  const enc = new TextEncoder()

  /** A stream of a job that is assigned, starts, then uploads its output and its exit at once. */
  const lifeOfAJob = async (opts: { hintless?: boolean }, exit: { code: number; error?: string }) => {
    reads.output = reads.state = 0
    const s = await RouteHarness.open({}, undefined, { onStatement: count, ...opts })
    try {
      await s.worker("w1")
      await s.job(MID)
      const body = s.request(alice, "GET", `${J}/${MID}/stream`).then((r) => r.arrayBuffer())
      // The route's load and the stream's first state: it waits for the job now.
      await until(() => reads.state === 2)
      const { epoch } = (await s.store.assign(MID, "w1", s.clock))!
      await s.store.start(MID, "w1", epoch, s.clock)
      const chunks = [
        { seq: 1, stream: "stderr" as const, data: enc.encode("frame=1\n") },
        { seq: 2, stream: "stdout" as const, data: new Uint8Array([0, 255, 10]) },
      ]
      const up = await s.store.appendOutput(MID, "w1", epoch, chunks, { signal: null, ...exit }, s.clock)
      expect(up.ok).toBe(true)
      const frames = decodeFrames(new Uint8Array(await body))
      return { frames, reads: { ...reads }, summary: (await s.store.getJobSummary(MID))! }
    } finally {
      await s.close()
    }
  }
  const shown = (frames: ReturnType<typeof decodeFrames>) =>
    frames.map((f) => [
      f.kind,
      f.seq,
      f.kind === Kind.exit ? JSON.parse(new TextDecoder().decode(f.data)) : [...f.data],
    ])

  test("told each transition with the job, it reads the output once more and the job never again", async () => {
    const { frames, reads, summary } = await lifeOfAJob({}, { code: 0 })
    expect(shown(frames)).toEqual([
      [Kind.ping, 0, []],
      [Kind.stderr, 1, [...enc.encode("frame=1\n")]],
      [Kind.stdout, 2, [0, 255, 10]],
      [Kind.exit, 2, { status: "completed", code: 0, signal: null, error: null }],
    ])
    expect(summary.status).toBe("completed")
    // The first page and state, then one page after the end: the assignment and the start read nothing,
    // the end's page is short (caught up) and its state came before it (no drain).
    expect(reads).toEqual({ output: 2, state: 2 })
  })

  test("a notifier without hints still delivers every byte and the same outcome, reading as before", async () => {
    const told = await lifeOfAJob({}, { code: 0 })
    const blind = await lifeOfAJob({ hintless: true }, { code: 0 })
    expect(shown(blind.frames)).toEqual(shown(told.frames))
    expect(blind.reads.output).toBeGreaterThan(told.reads.output)
    expect(blind.reads.state).toBeGreaterThan(told.reads.state)
  })

  test("the outcome told by a hint is the one its summary reads: a long error cut as the database cuts it", async () => {
    const error = `é${"😀".repeat(3000)}`
    const { frames, summary } = await lifeOfAJob({}, { code: 1, error })
    const outcome = JSON.parse(new TextDecoder().decode(frames.at(-1)!.data))
    expect(summary.error).not.toBe(error)
    expect(outcome).toEqual({ status: summary.status, code: 1, signal: null, error: summary.error })
    const blind = await lifeOfAJob({ hintless: true }, { code: 1, error })
    expect(frames.at(-1)!.data).toEqual(blind.frames.at(-1)!.data)
  })
})

describe("GET /jobs/:id/input (the worker's downlink) and the hints of its wake-ups", () => {
  const reads = { input: 0, state: 0 }
  const count = (sql: string) => {
    if (sql.startsWith('select * from "job_input" where "job_id" = ? and "seq" > ?')) reads.input++
    else if (sql.includes("substr(error") && sql.endsWith('where "id" = ?')) reads.state++
  }
  const until = async (ok: () => boolean | Promise<boolean>) => {
    for (let i = 0; i < 5000 && !(await ok()); i++) await Bun.sleep(1)
    expect(await ok()).toBe(true)
  }
  const w1 = { name: "w1", role: "worker" as const }

  const downlink = async (opts: { hintless?: boolean }) => {
    reads.input = reads.state = 0
    const s = await RouteHarness.open({}, undefined, { onStatement: count, ...opts })
    try {
      await s.worker("w1")
      await s.job(MID, { stdin: true })
      const { epoch } = (await s.store.assign(MID, "w1", s.clock))!
      await s.store.start(MID, "w1", epoch, s.clock)
      reads.input = reads.state = 0
      const res = await s.request(w1, "GET", `${J}/${MID}/input?epoch=${epoch}`)
      const reader = res.body!.getReader()
      let bytes = new Uint8Array()
      const frames = () => {
        try {
          return decodeFrames(bytes)
        } catch {
          return []
        }
      }
      const more = async () => {
        const { value, done } = await reader.read()
        if (value) bytes = new Uint8Array([...bytes, ...value])
        return done
      }
      // The downlink's own check of the job and its first state: it waits for input now.
      await until(() => reads.state === 2)
      await s.store.appendInput(MID, [{ seq: 1, kind: Kind.stdin, data: new TextEncoder().encode("abc") }])
      await until(async () => frames().some((f) => f.kind === Kind.stdin) || (await more()))
      await s.store.requestCancel(MID, "by alice", s.clock)
      await until(async () => frames().some((f) => f.kind === Kind.cancel) || (await more()))
      await s.store.appendOutput(MID, "w1", epoch, [], { code: 255, signal: null }, s.clock)
      while (!(await more()));
      const got = frames().map((f) => [f.kind, f.seq, new TextDecoder().decode(f.data)])
      return { got, reads: { ...reads } }
    } finally {
      await s.close()
    }
  }

  test("told of its job's transitions it reads neither its input nor the job again; without hints it reads as before", async () => {
    const told = await downlink({})
    expect(told.got).toEqual([
      [Kind.stdin, 1, "abc"],
      [Kind.cancel, 1, JSON.stringify({ reason: "by alice", kill: false })],
    ])
    // The first page and state, the stored input's page (short: caught up) and the state after it; the
    // cancel and the end are told with the job.
    expect(told.reads).toEqual({ input: 2, state: 3 })
    const blind = await downlink({ hintless: true })
    expect(blind.got).toEqual(told.got)
    expect(blind.reads.input).toBeGreaterThan(told.reads.input)
    expect(blind.reads.state).toBeGreaterThan(told.reads.state)
  })
})

describe("POST /jobs with a submission key", () => {
  const args = ["-i", "in.mkv", "-f", "null", "-"]
  const submit = (who: typeof alice, submission: string, over: Record<string, unknown> = {}) =>
    h.request(who, "POST", J, { binary: "ffmpeg", args, paths: [], cwd: null, stdin: false, submission, ...over })
  const KEY = "3b241101-e2bb-4255-8caf-4136c566a962"

  test("repeated (an answer lost, sent again through any coordinator): the same job, created once", async () => {
    const first = await submit(alice, KEY)
    expect(first.status).toBe(201)
    const again = await submit(alice, KEY)
    expect(again.status).toBe(200)
    const [a, b] = [(await first.json()) as { id: string }, (await again.json()) as { id: string }]
    expect(b.id).toBe(a.id)
    expect(await ids(await h.request(admin, "GET", J))).toEqual([a.id])
  })

  test("a key is per requester; reused for another command it is 409; a malformed key is 400", async () => {
    const mine = (await (await submit(alice, KEY)).json()) as { id: string }
    const theirs = await submit(bob, KEY)
    expect(theirs.status).toBe(201)
    expect(((await theirs.json()) as { id: string }).id).not.toBe(mine.id)
    const other = await submit(alice, KEY, { args: ["-i", "other.mkv", "-f", "null", "-"] })
    expect(other.status).toBe(409)
    expect(((await other.json()) as { error: { message: string } }).error.message).toContain(mine.id)
    for (const bad of ["short", "x".repeat(65), "has spaces in it here"])
      expect((await submit(alice, bad)).status).toBe(400)
  })
})
