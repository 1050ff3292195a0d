import { test } from "bun:test"
import { twoCoordinatorRun } from "../helpers/two-coordinators.ts"

// Issue 14: two coordinators on one PostgreSQL database, four workers, 500 jobs through the proxy,
// kill -9 of one coordinator mid-run: every job completed exactly once, max_jobs never exceeded.
test("2 coordinators, 4 workers, 500 jobs, kill -9 of one: each completes once with local ffmpeg's bytes", async () => {
  await twoCoordinatorRun("postgres", { jobs: 500, killAfter: 150 })
}, 300_000)
