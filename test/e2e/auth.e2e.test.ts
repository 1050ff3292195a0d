import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { generateKey } from "../../src/shared/auth/hmac.ts"
import { Kind, encodeFrame, encodeJsonFrame, readFrames } from "../../src/shared/protocol/frames.ts"
import { readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { BIN, waitFor } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import type { Proc } from "../helpers/proc.ts"
import { HEADER, rawFetch, signedFetch, signedHeaders, type SignedOptions } from "../helpers/signed.ts"

/**
 * Authentication, authorization and input hardening of the coordinator API, against the compiled
 * binary. One cluster for the whole file: the last describe checks that nothing this file did leaked a
 * key or a signature into any log.
 */

let c: Cluster
/** Every signature this file sent, to look for in the logs at the end. */
const sentSignatures = new Set<string>()
/** Every status the coordinator answered with (no request in this file may get a 5xx). */
const statuses: { what: string; status: number }[] = []
/** Keys of identities created by tests (besides client1, client2 and worker1). */
const extraKeys: string[] = []

const JSON_TYPE = { "content-type": "application/json" }
const API = "/api/v1"
const VALID_ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

type ErrorBody = { error: { code: string; message: string; details?: unknown } }
type JobView = {
  id: string
  requester: string
  status: string
  epoch: number
  workerId: string | null
  exitCode: number | null
}

const who = (name: string) => ({ client: name, key: c.key(name) })

function record(what: string, res: Response): Response {
  statuses.push({ what, status: res.status })
  return res
}

/** A signed request (as the real clients make them) whose signature and status are recorded. */
async function sf(o: Omit<SignedOptions, "onHeaders">): Promise<Response> {
  const res = await signedFetch(c.url, {
    ...o,
    onHeaders: (h) => h[HEADER.signature] && sentSignatures.add(h[HEADER.signature]),
  })
  return record(`${o.method} ${o.tamper?.path ?? o.path}`, res)
}

const submitBody = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ binary: "ffprobe", args: ["-version"], paths: [], cwd: null, stdin: false, ...over })

/** POST /api/v1/jobs as client1 with a valid body unless overridden. */
const submit = (o: Partial<Omit<SignedOptions, "onHeaders">> = {}) =>
  sf({ ...who("client1"), method: "POST", path: `${API}/jobs`, body: submitBody(), headers: JSON_TYPE, ...o })

/** Asserts an error response: status, JSON content type, `{error:{code,message}}`; returns the error. */
async function expectError(res: Response, status: number, code: string, message?: RegExp): Promise<ErrorBody["error"]> {
  const text = await res.text()
  let body: ErrorBody
  try {
    body = JSON.parse(text)
  } catch {
    throw new Error(`HTTP ${res.status} with a non-JSON body: ${text.slice(0, 200)}`)
  }
  expect({ status: res.status, code: body.error?.code }).toEqual({ status, code })
  expect(res.headers.get("content-type") ?? "").toContain("application/json")
  expect(typeof body.error.message).toBe("string")
  expect(body.error.message.length).toBeGreaterThan(0)
  if (message) expect(body.error.message).toMatch(message)
  return body.error
}

/**
 * Waits until none of client1's jobs (the only ones this file creates) is still in flight.
 * KNOWN BUG: an admin CLI process (behind `c.jobs()`) touching the database while the coordinator
 * commits a worker's output upload can make that upload fail with 500 "database is locked": the
 * upload's transaction (store.appendOutput) is a deferred BEGIN that reads before it writes, and SQLite
 * does not apply busy_timeout to that read-to-write upgrade. Counting only when nothing runs keeps this
 * file deterministic; the "no internal error" check below would otherwise catch it about 1 run in 4.
 */
async function settle() {
  await waitFor(
    async () => {
      const res = await sf({ ...who("client1"), method: "GET", path: `${API}/jobs`, query: "limit=1000" })
      expect(res.status).toBe(200)
      return ((await res.json()) as JobView[]).every((j) => ["completed", "failed", "canceled"].includes(j.status))
    },
    { what: "client1's jobs to finish", timeoutMs: 15_000 },
  )
}

const jobCount = async () => {
  await settle()
  return (await c.jobs()).length
}

/** Runs `fn` and asserts that the store holds exactly `created` more jobs afterwards. */
async function expectJobsCreated<T>(created: number, fn: () => Promise<T>): Promise<T> {
  const before = await jobCount()
  const out = await fn()
  expect(await jobCount()).toBe(before + created)
  return out
}

async function getJob(id: string, as = "client1"): Promise<JobView> {
  const res = await sf({ ...who(as), method: "GET", path: `${API}/jobs/${id}` })
  expect(res.status).toBe(200)
  return (await res.json()) as JobView
}

/** Submits `ffprobe -version` as client1 and waits until it completed. */
async function completedJob(): Promise<JobView> {
  // Not an info command: those are answered from the coordinator's cache after the first, by no worker.
  const args = ["-v", "error", "-f", "lavfi", "-i", "nullsrc=d=0.04", "-show_entries", "format=format_name"]
  const res = await submit({ body: submitBody({ args }) })
  expect(res.status).toBe(201)
  const { id } = (await res.json()) as JobView
  return waitFor(
    async () => {
      const j = await getJob(id)
      return j.status === "completed" ? j : undefined
    },
    { what: `job ${id} to complete`, timeoutMs: 15_000 },
  )
}

/** The stdout bytes of a finished job's stream, as client1 sees them. */
async function streamedStdout(id: string): Promise<string> {
  const res = await sf({ ...who("client1"), method: "GET", path: `${API}/jobs/${id}/stream` })
  expect(res.status).toBe(200)
  const dec = new TextDecoder()
  let out = ""
  let sawExit = false
  for await (const f of readFrames(res.body!)) {
    if (f.kind === Kind.stdout) out += dec.decode(f.data, { stream: true })
    if (f.kind === Kind.exit) sawExit = true
  }
  expect(sawExit).toBe(true)
  return out
}

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, coordinatorConfig: { log_level: "debug" } })
  await c.addUser("client2", "client")
})

afterAll(async () => {
  await c?.stop()
})

describe("health endpoint", () => {
  test("GET /health answers 200 with a JSON status without any authentication", async () => {
    const res = record("GET /health", await rawFetch(c.url, { method: "GET", path: "/health" }))
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type") ?? "").toContain("application/json")
    expect(await res.json()).toMatchObject({
      status: "ok",
      components: { database: { engine: "sqlite", status: "ok" }, transport: { kind: "http", status: "ok" } },
    })
  })
})

describe("request authentication", () => {
  const past = () => (Math.floor(Date.now() / 1000) - 31) * 1000
  // Rounded up so that the timestamp is still over 30 s ahead however late the coordinator reads it.
  const future = () => (Math.ceil(Date.now() / 1000) + 31) * 1000

  const cases: [string, () => Promise<Response>, RegExp][] = [
    [
      "a submission without any signature headers",
      () =>
        rawFetch(c.url, { method: "POST", path: `${API}/jobs`, body: submitBody(), headers: JSON_TYPE }).then((r) =>
          record("unsigned", r),
        ),
      /not signed/,
    ],
    [
      "a submission without the nonce header",
      () => submit({ tamper: { headers: { [HEADER.nonce]: null } } }),
      /not signed/,
    ],
    [
      "a submission without the signature header",
      () => submit({ tamper: { headers: { [HEADER.signature]: null } } }),
      /not signed/,
    ],
    [
      "a submission without the client id header",
      () => submit({ tamper: { headers: { [HEADER.client]: null } } }),
      /not signed/,
    ],
    [
      "a submission without the timestamp header",
      () => submit({ tamper: { headers: { [HEADER.timestamp]: null } } }),
      /not signed/,
    ],
    [
      "a submission whose body was changed after signing",
      () => submit({ tamper: { body: submitBody({ args: ["-hide_banner", "-version"] }) } }),
      /invalid signature/,
    ],
    [
      "a submission whose query string was changed after signing",
      () => submit({ query: "attach=0", tamper: { query: "attach=1" } }),
      /invalid signature/,
    ],
    [
      "a submission signed for another route path",
      () => submit({ path: `${API}/worker/register`, tamper: { path: `${API}/jobs` } }),
      /invalid signature/,
    ],
    ["a submission signed with the wrong key", () => submit({ key: generateKey() }), /invalid signature/],
    [
      "a submission from an unknown client id",
      () => submit({ client: "nobody", key: generateKey() }),
      /unknown identity/,
    ],
    ["a submission timestamped 31 s in the past", () => submit({ now: past() }), /timestamp/],
    ["a submission timestamped 31 s in the future", () => submit({ now: future() }), /timestamp/],
    [
      "a submission with a non-numeric timestamp",
      () => submit({ tamper: { headers: { [HEADER.timestamp]: "yesterday" } } }),
      /unix seconds/,
    ],
    [
      "a submission whose signature has the wrong length",
      async () => {
        const headers: Record<string, string> = {
          ...JSON_TYPE,
          ...signedHeaders({ ...who("client1"), method: "POST", path: `${API}/jobs`, body: submitBody() }),
        }
        sentSignatures.add(headers[HEADER.signature])
        headers[HEADER.signature] = headers[HEADER.signature].slice(0, -2)
        return record(
          "short signature",
          await rawFetch(c.url, { method: "POST", path: `${API}/jobs`, body: submitBody(), headers }),
        )
      },
      /invalid signature/,
    ],
  ]

  for (const [what, send, reason] of cases) {
    test(`${what} is refused with 401 E_AUTH and creates no job`, async () => {
      const res = await expectJobsCreated(0, send)
      await expectError(res, 401, "E_AUTH", reason)
    })
  }

  test("a correctly signed submission is accepted (control for the refusals above)", async () => {
    const res = await expectJobsCreated(1, () => submit())
    expect(res.status).toBe(201)
    expect(((await res.json()) as JobView).requester).toBe("client1")
  })

  test("a job listing whose limit was changed from 1 to 2 after signing is refused with 401", async () => {
    const res = await sf({
      ...who("client1"),
      method: "GET",
      path: `${API}/jobs`,
      query: "limit=1",
      tamper: { query: "limit=2" },
    })
    await expectError(res, 401, "E_AUTH", /invalid signature/)
    // Control: the same request untampered is fine.
    const ok = await sf({ ...who("client1"), method: "GET", path: `${API}/jobs`, query: "limit=1" })
    expect(ok.status).toBe(200)
    expect(((await ok.json()) as unknown[]).length).toBe(1)
  })

  test("replaying a captured submission byte for byte is refused with 401 and creates no second job", async () => {
    let captured: Record<string, string> = {}
    const body = submitBody()
    const before = await jobCount()
    const first = await signedFetch(c.url, {
      ...who("client1"),
      method: "POST",
      path: `${API}/jobs`,
      body,
      headers: JSON_TYPE,
      onHeaders: (h) => (captured = h),
    })
    sentSignatures.add(captured[HEADER.signature])
    expect(first.status).toBe(201)
    const replay = record(
      "replay",
      await rawFetch(c.url, { method: "POST", path: `${API}/jobs`, body, headers: captured }),
    )
    await expectError(replay, 401, "E_AUTH", /replayed/)
    expect(await jobCount()).toBe(before + 1)
  })
})

describe("roles", () => {
  test("a worker identity cannot submit a job (403 E_FORBIDDEN, no job created)", async () => {
    const res = await expectJobsCreated(0, () => submit(who("worker1")))
    await expectError(res, 403, "E_FORBIDDEN")
  })

  test("a client identity cannot long-poll for work as a worker (403)", async () => {
    const res = await sf({ ...who("client1"), method: "GET", path: `${API}/worker/poll`, query: "wait=0" })
    await expectError(res, 403, "E_FORBIDDEN")
  })

  test("a client identity cannot register itself as a worker (403, not listed among workers)", async () => {
    const reg = JSON.stringify({ binaries: ["ffmpeg", "ffprobe"], paths: ["Media"], maxJobs: 4, version: "0.1.0" })
    const res = await sf({
      ...who("client1"),
      method: "POST",
      path: `${API}/worker/register`,
      body: reg,
      headers: JSON_TYPE,
    })
    await expectError(res, 403, "E_FORBIDDEN")
    const list = await sf({ ...who("client1"), method: "GET", path: `${API}/workers` })
    expect(list.status).toBe(200)
    const ids = ((await list.json()) as { id: string }[]).map((w) => w.id)
    expect(ids).toContain("worker1")
    expect(ids).not.toContain("client1")
  })

  test("a client cannot see, stream or feed another client's job (404), while its owner can", async () => {
    const res = await submit()
    expect(res.status).toBe(201)
    const { id } = (await res.json()) as JobView
    expect((await getJob(id, "client1")).requester).toBe("client1")

    await expectError(await sf({ ...who("client2"), method: "GET", path: `${API}/jobs/${id}` }), 404, "E_NOT_FOUND")
    await expectError(
      await sf({ ...who("client2"), method: "GET", path: `${API}/jobs/${id}/stream` }),
      404,
      "E_NOT_FOUND",
    )
    const stdin = encodeFrame(Kind.stdin, 1, new TextEncoder().encode("injected"))
    await expectError(
      await sf({ ...who("client2"), method: "POST", path: `${API}/jobs/${id}/stdin`, body: stdin }),
      404,
      "E_NOT_FOUND",
    )
    const list = await sf({ ...who("client2"), method: "GET", path: `${API}/jobs` })
    expect(list.status).toBe(200)
    expect(((await list.json()) as JobView[]).map((j) => j.id)).not.toContain(id)
  })
})

describe("bad input", () => {
  test("a malformed JSON body is refused with 400 E_INVALID and creates no job", async () => {
    const res = await expectJobsCreated(0, () => submit({ body: '{"binary": "ffprobe", "args": [' }))
    await expectError(res, 400, "E_INVALID", /not valid JSON/)
  })

  const wrongTypes: [string, Record<string, unknown>, RegExp][] = [
    ["args that is not an array", { args: "-version" }, /^args/],
    ["a missing binary", { binary: undefined }, /^binary/],
    ["an unknown extra key", { evil: true }, /evil/],
  ]
  for (const [what, over, detail] of wrongTypes) {
    test(`a submission with ${what} is refused with 400 and details naming the field`, async () => {
      const res = await expectJobsCreated(0, () => submit({ body: submitBody(over) }))
      const err = await expectError(res, 400, "E_INVALID", /invalid request body/)
      expect(Array.isArray(err.details)).toBe(true)
      expect((err.details as string[]).some((d) => detail.test(d))).toBe(true)
    })
  }

  test("a binary outside allowed_binaries is refused with 400 and creates no job", async () => {
    const res = await expectJobsCreated(0, () => submit({ body: submitBody({ binary: "bash", args: ["-c", "id"] }) }))
    await expectError(res, 400, "E_INVALID", /bash is not allowed/)
  })

  test("a $Var argument whose variable is not listed in paths is refused with 400 and creates no job", async () => {
    const res = await expectJobsCreated(0, () =>
      submit({ body: submitBody({ args: ["-i", "$Media/in.mkv"], paths: [] }) }),
    )
    await expectError(res, 400, "E_INVALID", /\$Media/)
  })

  test("an unknown but well-formed job id is 404", async () => {
    await expectError(
      await sf({ ...who("client1"), method: "GET", path: `${API}/jobs/${VALID_ULID}` }),
      404,
      "E_NOT_FOUND",
    )
  })

  test("a job id that is not a ULID is 404", async () => {
    await expectError(await sf({ ...who("client1"), method: "GET", path: `${API}/jobs/abc` }), 404, "E_NOT_FOUND")
  })

  // Both are over the submit route's cap (6 MiB by default: 1 MiB of arguments and 5 MiB of concat lists and filter scripts) and are answered 413 JSON from the declared
  // length, before the body is read: Bun's own limit is far above every route's cap.
  for (const mib of [9, 16]) {
    test(`a ${mib} MiB body is refused with 413 JSON, creates no job and leaves the coordinator healthy`, async () => {
      const big = new Uint8Array(mib * 1024 * 1024).fill(0x20)
      const before = await jobCount()
      await expectError(
        await submit({ body: big }),
        413,
        "E_TOO_LARGE",
        /over this route's limit of \d+ bytes \(set by limits\.max_args_bytes\)/,
      )
      expect(await jobCount()).toBe(before)
      const health = record("GET /health", await rawFetch(c.url, { method: "GET", path: "/health" }))
      expect(health.status).toBe(200)
    })
  }

  test("a non-numeric limit on the job listing is 400", async () => {
    const res = await sf({ ...who("client1"), method: "GET", path: `${API}/jobs`, query: "limit=abc" })
    await expectError(res, 400, "E_INVALID", /limit/)
  })

  describe("worker uploads", () => {
    let job: JobView

    beforeAll(async () => {
      job = await completedJob()
    })

    test("output posted with a stale epoch is 409 and does not reach the job's output", async () => {
      expect(job.workerId).toBe("worker1")
      const marker = "INJECTED-BY-STALE-EPOCH"
      const frames = new Uint8Array([
        ...encodeFrame(Kind.stdout, 1, new TextEncoder().encode(marker)),
        ...encodeJsonFrame(Kind.exit, 2, { code: 7, signal: null }),
      ])
      const res = await sf({
        ...who("worker1"),
        method: "POST",
        path: `${API}/jobs/${job.id}/output`,
        query: `epoch=${job.epoch + 1}`,
        body: frames,
      })
      await expectError(res, 409, "E_CONFLICT")
      const after = await getJob(job.id)
      expect({ status: after.status, exitCode: after.exitCode, epoch: after.epoch }).toEqual({
        status: "completed",
        exitCode: 0,
        epoch: job.epoch,
      })
      const out = await streamedStdout(job.id)
      expect(out).toContain("format_name=lavfi")
      expect(out).not.toContain(marker)
    })

    test("a garbage frames body is 400 E_INVALID", async () => {
      const garbage = new Uint8Array([0x01, 0xff, 0x00, 0x42, 0x13, 0x37, 0x99])
      const res = await sf({
        ...who("worker1"),
        method: "POST",
        path: `${API}/jobs/${job.id}/output`,
        query: `epoch=${job.epoch}`,
        body: garbage,
      })
      await expectError(res, 400, "E_INVALID", /malformed frames/)
      expect((await getJob(job.id)).status).toBe("completed")
    })
  })

  test("after all of the above the coordinator is healthy, never answered 5xx and logged no internal error", async () => {
    const res = record("GET /health", await rawFetch(c.url, { method: "GET", path: "/health" }))
    expect(res.status).toBe(200)
    expect(statuses.filter((s) => s.status >= 500)).toEqual([])
    const log = c.coordinator.log()
    expect(log).toContain("request refused")
    expect(log).not.toContain("E_INTERNAL")
    expect(log).not.toContain("request failed")
  })

  // A chunked body (no Content-Length) is counted while it streams and refused as soon as it passes the
  // route's cap: a 413 JSON, and nothing in the log but the refusal.
  test("a chunked upload over the body limit is refused with 413 JSON, without an internal error in the log", async () => {
    const from = c.coordinator.stderrText.length
    const body = new Uint8Array(10 * 1024 * 1024).fill(0x20)
    const headers: Record<string, string> = {
      ...JSON_TYPE,
      ...signedHeaders({ ...who("client1"), method: "POST", path: `${API}/jobs`, body }),
    }
    sentSignatures.add(headers[HEADER.signature])
    const stream = new ReadableStream<Uint8Array>({
      start(ctl) {
        for (let i = 0; i < body.length; i += 1024 * 1024) ctl.enqueue(body.subarray(i, i + 1024 * 1024))
        ctl.close()
      },
    })
    const res = record("chunked upload", await fetch(`${c.url}${API}/jobs`, { method: "POST", headers, body: stream }))
    await expectError(res, 413, "E_TOO_LARGE", /request body is over this route's limit/)
    // A marker request logged after the upload was handled, so the log below is complete.
    const marker = `/api/v1/marker-${Date.now()}`
    record("marker", await rawFetch(c.url, { method: "GET", path: marker }))
    await waitFor(() => c.coordinator.stderrText.slice(from).some((l) => l.includes(marker)), {
      what: "the marker log line",
    })
    expect(c.coordinator.stderrText.slice(from).join("\n")).not.toContain("request failed")
  })
})

describe("admin CLI", () => {
  test("users add prints exactly one line: the new 44-character base64 key, which works at once", async () => {
    const r = await c.admin(["users", "add", "newbie", "--role", "client"])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^[A-Za-z0-9+/]{43}=\n$/)
    const key = r.out.trim()
    expect(Buffer.from(key, "base64").length).toBe(32)
    extraKeys.push(key)
    const res = await sf({ client: "newbie", key, method: "GET", path: `${API}/jobs` })
    expect(res.status).toBe(200)
  })

  test("users add --key-file writes the key 0600 whatever the umask, prints no key, and rotate-key replaces it", async () => {
    const file = join(c.dir, "keyfile-user.key")
    const r = await c.exec(
      [
        "sh",
        "-c",
        `umask 000; exec "$0" "$@"`,
        BIN,
        "admin",
        "--config",
        c.coordinatorConfig,
        "users",
        "add",
        "keyfile-user",
        "--role",
        "client",
        "--key-file",
        file,
      ],
      {},
    )
    expect(r.code).toBe(0)
    expect(r.out).toBe(`wrote the key of keyfile-user to ${file} (mode 0600)\n`)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const key = readFileSync(file, "utf8").trim()
    expect(key).toMatch(/^[A-Za-z0-9+/]{43}=$/)
    extraKeys.push(key)
    expect((await sf({ client: "keyfile-user", key, method: "GET", path: `${API}/jobs` })).status).toBe(200)
    const rot = await c.exec(
      [
        "sh",
        "-c",
        `umask 000; exec "$0" "$@"`,
        BIN,
        "admin",
        "--config",
        c.coordinatorConfig,
        "users",
        "rotate-key",
        "keyfile-user",
        "--key-file",
        file,
        "--json",
      ],
      {},
    )
    expect(rot.code).toBe(0)
    expect(JSON.parse(rot.out)).toEqual({ name: "keyfile-user", keyFile: file })
    const next = readFileSync(file, "utf8").trim()
    extraKeys.push(next)
    expect(next).not.toBe(key)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect((await sf({ client: "keyfile-user", key: next, method: "GET", path: `${API}/jobs` })).status).toBe(200)
    expect((await sf({ client: "keyfile-user", key, method: "GET", path: `${API}/jobs` })).status).toBe(401)
  })

  test("users add of an existing name fails with a dffmpeg: line and leaves the old key working", async () => {
    const r = await c.admin(["users", "add", "client1", "--role", "client"])
    expect(r.code).not.toBe(0)
    expect(r.out).toBe("")
    expect(r.err).toMatch(/^dffmpeg: .*already exists/m)
    expect((await sf({ ...who("client1"), method: "GET", path: `${API}/jobs`, query: "limit=1" })).status).toBe(200)
  })

  test("users add with an invalid name exits 2 and creates nobody", async () => {
    const r = await c.admin(["users", "add", "bad/name", "--role", "client"])
    expect(r.code).toBe(2)
    expect(r.out).toBe("")
    expect(r.err).toMatch(/^dffmpeg: /m)
    const ls = await c.admin(["users", "ls", "--json"])
    expect((JSON.parse(ls.out) as { name: string }[]).map((u) => u.name)).not.toContain("bad/name")
  })

  test("users ls --json is a JSON array of users without any key", async () => {
    const r = await c.admin(["users", "ls", "--json"])
    expect(r.code).toBe(0)
    const users = JSON.parse(r.out) as Record<string, unknown>[]
    expect(Array.isArray(users)).toBe(true)
    expect(users.find((u) => u.name === "client1")).toMatchObject({ name: "client1", role: "client" })
    expect(users.find((u) => u.name === "worker1")).toMatchObject({ name: "worker1", role: "worker" })
    for (const u of users) expect(Object.keys(u).filter((k) => /key|secret|hmac/i.test(k))).toEqual([])
    for (const k of [c.key("client1"), c.key("worker1"), c.key("client2"), ...extraKeys]) expect(r.out).not.toContain(k)
  })

  test("users rm makes the removed identity's next request 401", async () => {
    const key = await c.addUser("doomed", "client")
    extraKeys.push(key)
    expect((await sf({ client: "doomed", key, method: "GET", path: `${API}/jobs` })).status).toBe(200)
    const r = await c.admin(["users", "rm", "doomed"])
    expect(r.code).toBe(0)
    await expectError(
      await sf({ client: "doomed", key, method: "GET", path: `${API}/jobs` }),
      401,
      "E_AUTH",
      /unknown identity/,
    )
  })

  test("jobs show with an id that is not a ULID exits 2", async () => {
    const r = await c.admin(["jobs", "show", "NOTAULID"])
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^dffmpeg: /m)
  })

  test("jobs ls --status with an unknown status exits 2", async () => {
    const r = await c.admin(["jobs", "ls", "--status", "bogus"])
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^dffmpeg: /m)
  })
})

describe("secrets in logs", () => {
  let proxyErr = ""
  let dbg: Proc

  beforeAll(async () => {
    const key = await c.addUser("dbg-worker", "worker")
    extraKeys.push(key)
    dbg = await c.startWorker("dbg-worker", { log_level: "debug" })
    const r = await c.run("ffprobe", ["-version"], { env: { DFFMPEG_LOG_LEVEL: "debug" } })
    expect(r.code).toBe(0)
    expect(r.out).toStartWith("ffprobe version")
    proxyErr = r.err
  })

  const secrets = () => {
    const keys = [c.key("client1"), c.key("client2"), c.key("worker1"), ...extraKeys]
    // The raw key bytes in hex too, in case something logs a decoded key.
    return [...keys, ...keys.map((k) => Buffer.from(k, "base64").toString("hex")), ...sentSignatures]
  }

  test("no key and no signature sent by this file appears in any process's log", () => {
    const logs = c.logs()
    // The logs are not empty: refusals and jobs were logged, with identities but without secrets.
    expect(logs).toContain("request refused")
    expect(logs).toContain("client=client1")
    expect(logs).toContain("job submitted")
    expect(sentSignatures.size).toBeGreaterThan(20)
    const leaked = secrets().filter((s) => logs.includes(s))
    expect(leaked).toEqual([])
  })

  test("a worker at debug log level and a debug proxy log no keys either", () => {
    expect(dbg.name).toBe("dbg-worker")
    const log = dbg.log()
    expect(log).toContain("worker registered")
    const leaked = secrets().filter((s) => log.includes(s) || proxyErr.includes(s))
    expect(leaked).toEqual([])
  })
})
