import { expect, test } from "bun:test"
import { Cluster } from "../helpers/cluster.ts"

// `dffmpeg admin` opens the coordinator's SQLite file from a second process. Its reads and writes must
// never make the coordinator's own writes fail with "database is locked".
test("the admin CLI reading the database while jobs run causes no coordinator error", async () => {
  await using c = await Cluster.start({ workers: 1, maxJobs: 4 })
  let stop = false
  const admin = (async () => {
    let n = 0
    while (!stop) {
      await c.jobs()
      n++
    }
    return n
  })()
  const runs = await Promise.all(Array.from({ length: 24 }, () => c.run("ffprobe", ["-version"])))
  stop = true
  expect(await admin).toBeGreaterThan(0)
  expect(runs.map((r) => r.code)).toEqual(runs.map(() => 0))
  const jobs = await c.jobs()
  expect(jobs.filter((j) => j.status === "completed").length).toBe(24)
  expect(c.logs()).not.toMatch(/ERROR|locked/)
}, 60_000)
