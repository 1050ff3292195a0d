import { afterEach, describe, expect, test } from "bun:test"
import { waitFor } from "../helpers/bin.ts"
import { brokerTransports } from "../helpers/brokers.ts"
import { Cluster } from "../helpers/cluster.ts"
import { freshDatabase } from "../helpers/databases.ts"
import type { Worker } from "../../src/shared/protocol/schemas.ts"

/**
 * Issue 16 item 5, with the compiled binary, over every transport and on every store: a second live worker process with an identity already
 * online is refused (one `dffmpeg:` line naming where the other runs, exit 3) and the first keeps
 * serving; the first killed with SIGKILL, a restart with the identity takes over and runs jobs.
 */
let c: Cluster | undefined
afterEach(async () => {
  await c?.stop()
  c = undefined
})

const row = async (cl: Cluster, id: string): Promise<Worker | undefined> => {
  const r = await cl.admin(["workers", "ls", "--json"])
  if (r.code !== 0) throw new Error(r.err)
  return (JSON.parse(r.out) as Worker[]).find((w) => w.id === id)
}

/** A short transcode of a generated source through the proxy: exit 0 and the worker that ran it. */
async function runsJob(cl: Cluster): Promise<string | null> {
  const r = await cl.run("ffmpeg", ["-hide_banner", "-f", "lavfi", "-i", "sine=d=0.2", "-f", "null", "-"])
  expect(r.code, r.err).toBe(0)
  const jobs = await cl.jobs()
  return jobs[0]?.workerId ?? null
}

// Every transport on SQLite, and HTTP on each server database (the check is one guarded store step).
// With the default 5 s heartbeat, the restart starts well within two heartbeats of the kill: it waits.
const CASES = [
  { transport: "http", engine: "sqlite", heartbeat: 5 },
  { transport: "http", engine: "sqlite" },
  { transport: "mqtt", engine: "sqlite" },
  { transport: "rabbitmq", engine: "sqlite" },
  { transport: "http", engine: "postgres" },
  { transport: "http", engine: "mysql" },
] as const

for (const { transport, engine, heartbeat = 0.5 } of CASES as readonly {
  transport: (typeof CASES)[number]["transport"]
  engine: (typeof CASES)[number]["engine"]
  heartbeat?: number
}[]) {
  describe(`one identity, one worker over ${transport} on ${engine}, heartbeat ${heartbeat} s (compiled binary)`, () => {
    test("a second live process is refused and the first keeps serving; after kill -9 a restart takes over", async () => {
      const transports = transport === "http" ? undefined : brokerTransports(transport)
      const extra = transports ? { transports } : {}
      const database = engine === "sqlite" ? {} : { database: (await freshDatabase(engine)).config }
      c = await Cluster.start({
        workers: 1,
        maxJobs: 1,
        startWorkers: false,
        coordinatorConfig: {
          heartbeat_interval: heartbeat,
          registration_interval: Math.max(1, heartbeat),
          ...(transports ? { transports } : {}),
          ...database,
        },
        clientConfig: transports ? { transports } : {},
      })
      const id = c.workerIds[0]
      const first = await c.startWorker(id, extra)
      const online = await waitFor(async () => {
        const w = await row(c!, id)
        return w?.status === "online" && w.instance ? w : undefined
      })
      expect(online.instance!.pid).toBe(first.proc.pid)

      // A second process with the same identity: refused with one line, exit 3 (config).
      const spawned = performance.now()
      const second = c.spawnWorker(id, extra)
      const code = await second.exited
      const refusedMs = performance.now() - spawned
      const lines = second.log().split("\n")
      const said = lines.filter((l) => l.startsWith("dffmpeg:"))
      expect(code, second.log()).toBe(3)
      expect(said).toHaveLength(1)
      expect(said[0]).toContain(`worker identity ${id}`)
      expect(said[0]).toContain(`pid ${first.proc.pid}`)
      expect(said[0]).toContain(online.instance!.id)
      expect(said[0]).toContain(online.instance!.host)
      expect(second.log()).not.toContain("    at ")
      console.log(`second process (${transport}): ${said[0]}`)

      // The first is undisturbed: same process on the row, online, and it runs a job.
      expect(await row(c, id)).toMatchObject({ status: "online", instance: online.instance })
      expect(await runsJob(c)).toBe(id)
      expect(first.proc.exitCode).toBeNull()

      // Killed: a restart waits until the coordinator counts it gone, then takes the identity over.
      first.proc.kill("SIGKILL")
      await first.exited
      const killed = performance.now()
      const restarted = c.spawnWorker(id, extra)
      c.workers[0] = restarted
      // Up to two heartbeats and a try after the last one the killed process sent.
      await restarted.waitForLine(/worker registered/, 4 * heartbeat * 1000 + 10_000)
      const took = await waitFor(
        async () => {
          const w = await row(c!, id)
          return w?.status === "online" && w.instance?.pid === restarted.proc.pid ? w : undefined
        },
        { timeoutMs: 30_000 },
      )
      expect(took.instance!.id).not.toBe(online.instance!.id)
      // It waited for the killed one to count as gone (two heartbeats without a word, its poll closed).
      if (heartbeat >= 5)
        expect(restarted.log()).toContain("worker identity in use by another process; taking over if it is gone")
      console.log(
        `${transport} on ${engine}, heartbeat ${heartbeat} s: second process refused ${refusedMs.toFixed(0)} ms after its start; restart online ${(performance.now() - killed).toFixed(0)} ms after the kill`,
      )
      expect(await runsJob(c)).toBe(id)
      // Its stop deregisters it (it is the one serving).
      expect(await restarted.stop()).toBe(0)
      expect((await row(c, id))?.status).toBe("offline")
    }, 90_000)
  })
}
