import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { createSqliteStore } from "../sqlite/index.ts"
import { mappedJob, memoryStore, T0, tempDir } from "../../../test/helpers/fixtures.ts"
import type { NewJob, Store } from "../types.ts"
import { stringsPrefix } from "./store.ts"

// Bounded summaries (listJobSummaries, getJobSummary): what listings and live views read.

const BIG = "01M8DFWEZE8JWRGH9VMVBQN62M"
const SMALL = "01M8DFWF4PCGSZBYEVT8TNJN46"

const newJob = (id: string, over: Partial<NewJob> = {}): NewJob =>
  mappedJob(id, { args: ["-i", '$Movies/a "b".mkv', "-f", "null", "-"], stdin: false, ...over })

let store: Store
beforeEach(async () => {
  store = await memoryStore()
})
afterEach(() => store.close())

describe("stringsPrefix", () => {
  test.each([
    ['["a","b"]', ["a", "b"]],
    ['["a","b', ["a"]],
    ['["a\\"","b\\', ['a"']],
    ['["\\u0000x\\\\",', ["\u0000x\\"]],
    ["[", []],
    ["", []],
    ["[]", []],
  ])("%p → %p", (text, want) => {
    expect(stringsPrefix(text)).toEqual(want)
  })

  test("takes every whole element of any cut of a real array, and nothing else", () => {
    const args = ["-i", 'x "y" \\ z', "ü€😀", "\n\t", "", "last"]
    const json = JSON.stringify(args)
    // Element k is whole once the cut reaches its closing quote: `[e0,…,ek` plus that quote.
    const ends = args.map((_, k) => JSON.stringify(args.slice(0, k + 1)).length - 1)
    for (let n = 0; n <= json.length; n++) {
      expect(stringsPrefix(json.slice(0, n))).toEqual(args.slice(0, ends.filter((e) => e <= n).length))
    }
  })
})

describe("job summaries", () => {
  const big = Array.from({ length: 20_000 }, (_, i) => `-metadata:${i}=${"x".repeat(300)}`)

  beforeEach(async () => {
    await store.createJob(newJob(BIG, { args: big, cwd: "$Movies/" + "d".repeat(4000) }), T0)
    await store.createJob(newJob(SMALL), T0 + 1)
  })

  test("a small job's summary equals the job, not truncated", async () => {
    const { truncated, argsChars, ...job } = (await store.getJobSummary(SMALL))!
    expect(truncated).toBe(false)
    expect(argsChars).toBe(JSON.stringify(newJob(SMALL).args).length)
    expect(job).toEqual((await store.getJob(SMALL))!)
  })

  test("a job with megabytes of arguments is cut to the leading arguments that fit, and says so", async () => {
    const list = await store.listJobSummaries({ limit: 10 })
    expect(list.map((j) => j.id)).toEqual([SMALL, BIG])
    const s = list[1]
    expect(s.truncated).toBe(true)
    expect(s.argsChars).toBe(JSON.stringify(big).length)
    expect(s.args.length).toBeGreaterThan(0)
    expect(s.args).toEqual(big.slice(0, s.args.length))
    expect(JSON.stringify(s).length).toBeLessThan(8 * 1024)
    expect(s.cwd).toBe("$Movies/" + "d".repeat(4000))
    // The job itself still has everything.
    expect((await store.getJob(BIG))!.args).toEqual(big)
  })

  test("argsChars sets how much is read; filters and paging work as in listJobs", async () => {
    const s = (await store.getJobSummary(BIG, { argsChars: 100 }))!
    expect(JSON.stringify(s.args).length).toBeLessThanOrEqual(100)
    expect((await store.listJobSummaries({ before: SMALL })).map((j) => j.id)).toEqual([BIG])
    expect((await store.listJobSummaries({ requester: "bob" })).length).toBe(0)
    expect((await store.listJobSummaries({ statuses: [] })).length).toBe(0)
    expect((await store.listJobSummaries({ status: "queued", limit: 1 })).map((j) => j.id)).toEqual([SMALL])
    expect(await store.getJobSummary("01M8DFWFMJ6MS7ZZYSM5GE9EPT")).toBeUndefined()
  })
})

describe("long arguments live outside the job's row", () => {
  const emoji = Array.from({ length: 1000 }, (_, i) => `😀${i}`)

  test("the row keeps a head; the job reads whole; a cut never splits a character", async () => {
    await store.createJob(newJob(BIG, { args: emoji }), T0)
    expect((await store.getJob(BIG))!.args).toEqual(emoji)
    const s = (await store.getJobSummary(BIG))!
    expect(s.truncated).toBe(true)
    expect(s.args).toEqual(emoji.slice(0, s.args.length))
    expect((await store.listJobs({})).map((j) => j.args)).toEqual([emoji])
    expect((await store.assignedTo("nobody")).length).toBe(0)
  })

  test("an older database moves its long arguments out when it is upgraded", async () => {
    const { Database } = await import("bun:sqlite")
    const dir = tempDir("args")
    try {
      const path = dir.fresh("db.sqlite")
      const first = createSqliteStore({ path })
      await first.migrate()
      await first.createJob(newJob(SMALL), T0)
      await first.close()
      // Back to schema version 3, with the whole arguments in the row as version 3 wrote them.
      const big = Array.from({ length: 500 }, (_, i) => `-x${i}=${"y".repeat(100)}`)
      const raw = new Database(path)
      raw.exec(
        "DROP INDEX jobs_queue; DROP TABLE job_args; ALTER TABLE jobs DROP COLUMN args_chars; ALTER TABLE jobs DROP COLUMN env; ALTER TABLE jobs DROP COLUMN path_tokens; ALTER TABLE jobs DROP COLUMN files; DROP TABLE job_files; ALTER TABLE jobs DROP COLUMN acked_pos; ALTER TABLE jobs DROP COLUMN out_dropped; ALTER TABLE jobs DROP COLUMN trunc_pos; ALTER TABLE workers DROP COLUMN tools; ALTER TABLE workers DROP COLUMN labels; ALTER TABLE workers DROP COLUMN weight; ALTER TABLE workers DROP COLUMN max_probe_jobs; ALTER TABLE jobs DROP COLUMN lane; ALTER TABLE jobs DROP COLUMN priority; ALTER TABLE jobs DROP COLUMN needs; ALTER TABLE jobs DROP COLUMN pin; ALTER TABLE jobs DROP COLUMN queue_key; ALTER TABLE jobs DROP COLUMN barred; ALTER TABLE workers DROP COLUMN poll_closed_at; ALTER TABLE job_output DROP COLUMN held; ALTER TABLE workers DROP COLUMN tools_rev; ALTER TABLE workers DROP COLUMN transport; ALTER TABLE workers DROP COLUMN instance; ALTER TABLE workers DROP COLUMN host_load; DROP INDEX jobs_submission; ALTER TABLE jobs DROP COLUMN submission; DROP TABLE nonces; DROP TABLE coordinators; DROP TABLE changes; DROP TABLE sign_in_links; UPDATE meta SET value = '3' WHERE key = 'schema_version'",
      )
      raw
        .query(
          "INSERT INTO jobs (id, requester, binary, args, paths, cwd, stdin, status, epoch, out_seq, created_at, updated_at) SELECT ?, requester, binary, ?, paths, cwd, stdin, status, epoch, out_seq, created_at, updated_at FROM jobs WHERE id = ?",
        )
        .run(BIG, JSON.stringify(big), SMALL)
      raw.close()
      const again = createSqliteStore({ path })
      await again.migrate()
      expect((await again.getJob(BIG))!.args).toEqual(big)
      expect((await again.getJob(SMALL))!.args).toEqual(newJob(SMALL).args)
      const [small, cut] = await again.listJobSummaries({})
      expect([small.truncated, cut.truncated, cut.argsChars]).toEqual([false, true, JSON.stringify(big).length])
      await again.close()
      const check = new Database(path)
      expect(check.query("SELECT max(length(args)) AS n FROM jobs").get()).toEqual({ n: 2048 })
      expect(check.query("SELECT count(*) AS n FROM job_args").get()).toEqual({ n: 1 })
      check.close()
    } finally {
      dir.remove()
    }
  })
})
