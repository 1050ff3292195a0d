import { afterAll, expect, test } from "bun:test"
import { CALLER_GONE } from "../../src/coordinator/jobs.ts"
import { createApiClient, type ApiClient } from "../../src/shared/http/client.ts"
import { Kind, frameJson, readFrames } from "../../src/shared/protocol/frames.ts"
import type { Job, Outcome } from "../../src/shared/protocol/schemas.ts"
import { apiFor } from "../helpers/api.ts"
import { waitFor } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { freshDatabase, type TestDatabase } from "../helpers/databases.ts"
import { pacedFfmpeg } from "../helpers/fake-transport.ts"

/**
 * Two coordinator processes on one PostgreSQL database: whether an attached job's caller went away is
 * judged from the database (`client_seen_at`), not from the streams open on one coordinator.
 */
let db: TestDatabase
afterAll(async () => {
  await db?.drop()
})

async function twoCoordinators() {
  db = await freshDatabase("postgres")
  // A keep-alive of 2 s: the janitor's own CALLER_GONE (by client_seen_at age) stays far off the move.
  const c = await Cluster.start({ workers: 1, coordinatorConfig: { database: db.config, heartbeat_interval: 2 } })
  const b = await c.startSecondCoordinator()
  const apiB = createApiClient({ url: b.url, client: "client1", key: c.key("client1") })
  return { c, apiA: apiFor(c, "client1"), apiB }
}

/** Submits an attached ffmpeg of `seconds` to `api`; resolves once it runs, with its stream's reader. */
async function attachedRunning(api: ApiClient, check: ApiClient, seconds: number) {
  const caller = new AbortController()
  const res = await api.request("POST", "/api/v1/jobs", {
    query: { attach: 1 },
    json: { binary: "ffmpeg", args: pacedFfmpeg(seconds), paths: [], cwd: null, stdin: false },
    signal: caller.signal,
  })
  expect(res.status).toBe(200)
  const frames = readFrames(res.body!)[Symbol.asyncIterator]()
  const first = await frames.next()
  const id = (frameJson(first.value!) as { job: Job }).job.id
  await waitFor(async () => (await jobOf(check, id)).status === "running", { what: `job ${id} running` })
  return { id, caller }
}

const jobOf = async (api: ApiClient, id: string): Promise<Job> =>
  (await (await api.request("GET", `/api/v1/jobs/${id}`)).json()) as Job

test("an attached job whose caller's stream moves from coordinator A to B keeps running and completes", async () => {
  const { c, apiA, apiB } = await twoCoordinators()
  await using _ = c
  const { id, caller } = await attachedRunning(apiA, apiB, 3)
  // Close on A, open on B at once: A's grace (caller_grace_seconds, 0.3 s) runs out while B streams.
  caller.abort()
  const res = await apiB.request("GET", `/api/v1/jobs/${id}/stream`, { query: { after: 0 } })
  expect(res.status).toBe(200)
  let outcome: Outcome | undefined
  for await (const f of readFrames(res.body!)) if (f.kind === Kind.exit) outcome = frameJson(f) as Outcome
  expect(outcome, c.logs()).toMatchObject({ status: "completed", code: 0 })
  const job = await jobOf(apiA, id)
  expect(job).toMatchObject({ status: "completed", exitCode: 0, error: null })
  expect(c.logs()).not.toContain("its caller went away")
}, 60_000)

test("a caller that really goes away: CALLER_GONE within the grace, whichever coordinator it used", async () => {
  const { c, apiA, apiB } = await twoCoordinators()
  await using _ = c
  const { id, caller } = await attachedRunning(apiA, apiB, 30)
  const gone = performance.now()
  caller.abort()
  // The cancel is requested once the grace (0.3 s) is over; the job ends once its worker stopped ffmpeg.
  const asked = await waitFor(
    async () => {
      const j = await jobOf(apiB, id)
      return j.cancelRequestedAt !== null || j.status === "canceled" ? j : undefined
    },
    { timeoutMs: 5_000, intervalMs: 20, what: "the cancel" },
  )
  const ms = performance.now() - gone
  expect(asked.error).toContain(CALLER_GONE)
  // The grace and a poll's time; the janitor's own verdict (by client_seen_at age) would take seconds.
  expect(ms).toBeLessThan(1_500)
  const ended = await waitFor(async () => ((await jobOf(apiB, id)).status === "canceled" ? true : undefined), {
    timeoutMs: 15_000,
    what: "canceled",
  })
  expect(ended).toBe(true)
}, 60_000)
