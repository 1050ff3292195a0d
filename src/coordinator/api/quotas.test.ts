import { afterEach, describe, expect, test } from "bun:test"
import { admin, alice, bob, RouteHarness } from "../../../test/helpers/routes.ts"
import { argumentBytes } from "./quotas.ts"

let h: RouteHarness
afterEach(async () => {
  await h?.close()
})

const J = "/api/v1/jobs"
const submit = (who = alice, over: Record<string, unknown> = {}) =>
  h.request(who, "POST", J, { binary: "ffmpeg", args: ["-version"], paths: [], cwd: null, stdin: false, ...over })
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error

test("argument bytes are the UTF-8 bytes of args, path names and cwd", () => {
  expect(argumentBytes({ args: ["-i", "é.mkv"], paths: ["Movies"], cwd: "$Movies/x" })).toBe(2 + 6 + 6 + 9)
  expect(argumentBytes({ args: [], paths: [], cwd: null })).toBe(0)
})

describe("argument limits", () => {
  test("arguments over limits.max_args_bytes are 413, at the limit they are accepted", async () => {
    h = await RouteHarness.open({ limits: { max_args_bytes: 1024 } })
    const at = await submit(alice, { args: ["-i", "x".repeat(1022)] })
    expect(at.status).toBe(201)
    const res = await submit(alice, { args: ["-i", "x".repeat(1023)] })
    expect(res.status).toBe(413)
    expect(await errorOf(res)).toEqual({
      code: "E_TOO_LARGE",
      message:
        "the job's arguments, cwd and path names take 1025 bytes; at most 1024 are accepted (limits.max_args_bytes)",
    })
  })

  test("multi-byte characters count as their UTF-8 bytes, and cwd and path names count too", async () => {
    h = await RouteHarness.open({ limits: { max_args_bytes: 1024 } })
    expect((await submit(alice, { args: ["é".repeat(512)] })).status).toBe(201)
    expect((await submit(alice, { args: ["é".repeat(513)] })).status).toBe(413)
    expect(
      (await submit(alice, { args: ["x".repeat(1000)], paths: ["Movies"], cwd: "$Movies/" + "d".repeat(20) })).status,
    ).toBe(413)
  })

  test("more arguments than limits.max_args_count are 413 naming the key", async () => {
    h = await RouteHarness.open({ limits: { max_args_count: 3 } })
    expect((await submit(alice, { args: ["-i", "a", "-y"] })).status).toBe(201)
    const res = await submit(alice, { args: ["-i", "a", "-y", "b"] })
    expect(res.status).toBe(413)
    expect((await errorOf(res)).message).toBe("the job has 4 arguments; at most 3 are accepted (limits.max_args_count)")
  })

  test("the default accepts 256 KiB of arguments and refuses more", async () => {
    h = await RouteHarness.open()
    expect((await submit(alice, { args: ["x".repeat(256 * 1024)] })).status).toBe(400) // one argument over Linux's 128 KiB
    expect((await submit(alice, { args: ["x".repeat(128 * 1024), "y".repeat(128 * 1024)] })).status).toBe(201)
    expect((await submit(alice, { args: ["x".repeat(128 * 1024), "y".repeat(128 * 1024), "z"] })).status).toBe(413)
  })
})

describe("the caller's environment", () => {
  test("its variables count as arguments, NAME=value as their bytes, against the same limits", async () => {
    h = await RouteHarness.open({ limits: { max_args_bytes: 1024, max_args_count: 3 } })
    expect(argumentBytes({ args: ["-i"], paths: [], cwd: null, env: { TZ: "UTC" } })).toBe(2 + 6)
    expect((await submit(alice, { args: ["-version"], env: { TZ: "UTC", LANG: "C" } })).status).toBe(201)
    const many = await submit(alice, { args: ["-version"], env: { TZ: "UTC", LANG: "C", LC_ALL: "C" } })
    expect(many.status).toBe(413)
    expect((await errorOf(many)).message).toBe(
      "the job has 4 arguments and environment variables; at most 3 are accepted (limits.max_args_count)",
    )
    const big = await submit(alice, { args: ["-version"], env: { FFREPORT: "x".repeat(1010) } })
    expect(big.status).toBe(413)
    expect((await errorOf(big)).message).toBe(
      "the job's arguments, environment, cwd and path names take 1027 bytes; at most 1024 are accepted (limits.max_args_bytes)",
    )
  })

  test("names outside the strict pattern, too many variables and an undeclared FFREPORT path variable are 400", async () => {
    h = await RouteHarness.open()
    for (const env of [{ "A-B": "1" }, { "": "1" }, { "1A": "1" }, { "A=B": "1" }])
      expect((await submit(alice, { env })).status).toBe(400)
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, "1"]))
    expect((await submit(alice, { env: many })).status).toBe(400)
    expect((await submit(alice, { env: { TZ: "x".repeat(8193) } })).status).toBe(400)
    const undeclared = await submit(alice, { env: { FFREPORT: "file=$Logs/r.log:level=32" } })
    expect(undeclared.status).toBe(400)
    expect((await errorOf(undeclared)).message).toContain("uses $Logs, which is not listed in paths")
    const declared = await submit(alice, { paths: ["Logs"], env: { FFREPORT: "file=$Logs/r.log:level=32" } })
    expect(declared.status).toBe(201)
    expect(((await declared.json()) as { env: unknown }).env).toEqual({ FFREPORT: "file=$Logs/r.log:level=32" })
  })
})

describe("per-identity job quotas", () => {
  test("limits.max_queued_per_client: the next submission is 429 until one of the waiting jobs started", async () => {
    h = await RouteHarness.open({ limits: { max_queued_per_client: 2 } })
    await h.worker("w1")
    const first = (await (await submit()).json()) as { id: string }
    expect((await submit()).status).toBe(201)
    const res = await submit()
    expect(res.status).toBe(429)
    expect(await errorOf(res)).toEqual({
      code: "E_QUOTA",
      message:
        "alice already has 2 jobs waiting for a worker, the most one identity may queue (limits.max_queued_per_client = 2); submit again once some have started",
    })
    // Another identity has its own quota; no job was created by the refusal.
    expect((await submit(bob)).status).toBe(201)
    expect((await h.store.activeJobCounts("alice")).queued).toBe(2)
    // An assigned job still waits; a running one no longer does.
    const assigned = await h.store.assign(first.id, "w1", h.clock)
    expect((await submit()).status).toBe(429)
    await h.store.start(first.id, "w1", assigned!.epoch, h.clock)
    expect((await submit()).status).toBe(201)
  })

  test("limits.max_active_per_client counts running jobs too; a finished job frees its place", async () => {
    h = await RouteHarness.open({ limits: { max_active_per_client: 2 } })
    await h.worker("w1")
    const a = (await (await submit()).json()) as { id: string }
    const assigned = await h.store.assign(a.id, "w1", h.clock)
    await h.store.start(a.id, "w1", assigned!.epoch, h.clock)
    expect((await submit()).status).toBe(201)
    const res = await submit()
    expect(res.status).toBe(429)
    expect((await errorOf(res)).message).toBe(
      "alice already has 2 unfinished jobs, the most one identity may have (limits.max_active_per_client = 2); submit again once some have ended",
    )
    await h.store.appendOutput(a.id, "w1", assigned!.epoch, [], { code: 0, signal: null }, h.clock)
    expect((await submit()).status).toBe(201)
  })

  test("admins submitting jobs have the same quota", async () => {
    h = await RouteHarness.open({ limits: { max_queued_per_client: 1 } })
    expect((await submit(admin)).status).toBe(201)
    expect((await submit(admin)).status).toBe(429)
  })
})
