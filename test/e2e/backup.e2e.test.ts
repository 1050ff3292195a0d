import { afterAll, beforeAll, expect, test } from "bun:test"
import { chmodSync, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { BIN } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"
import { Proc } from "../helpers/proc.ts"

/**
 * The SQLite backup docs/upgrading.md documents, done as written: `sqlite3 dffmpeg.db ".backup …"` and a
 * copy of the secret file while the coordinator runs (and a job writes heartbeats and output), then a
 * restore into a fresh coordinator that must list the users and jobs of the moment of the backup, nothing
 * added after it, and accept the restored identities' keys (the secret belongs to the database).
 */
let c: Cluster
let restored: Proc | undefined

beforeAll(async () => {
  c = await Cluster.start({ workers: 1 })
  copyFileSync(await sample("av10s.mkv"), join(c.storage, "av.mkv"))
})
afterAll(async () => {
  await restored?.stop()
  await c?.stop()
})

const sh = (script: string, cwd: string) => c.exec(["sh", "-ec", script], { cwd })

test("a backup taken while the coordinator runs restores into a fresh coordinator with its users and jobs", async () => {
  const media = join(c.clientMedia, "av.mkv")
  const probe = await c.run("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", media])
  expect(probe.code).toBe(0)
  await c.addUser("ops", "admin")
  // A transcode running during the backup: the coordinator writes its heartbeats and output meanwhile.
  const running = c.spawnProxy("ffmpeg", ["-hide_banner", "-re", "-i", media, "-t", "6", "-f", "null", "-"], {
    stdin: "ignore",
  })
  const live = await c.waitFor(async () => (await c.jobs()).find((j) => j.status === "running"), {
    timeoutMs: 20_000,
    what: "the transcode to run",
  })

  // The documented commands (docs/upgrading.md, "Backup and restore", SQLite).
  const backup = join(c.dir, "backup")
  mkdirSync(backup)
  const taken = await sh(
    `umask 077
     sqlite3 coordinator.db ".backup ${backup}/dffmpeg.db"
     cp coordinator.db.secret ${backup}/dffmpeg.db.secret`,
    c.dir,
  )
  expect(taken.err).toBe("")
  expect(taken.code).toBe(0)
  for (const f of ["dffmpeg.db", "dffmpeg.db.secret"]) expect(statSync(join(backup, f)).mode & 0o077).toBe(0)
  expect((await c.jobs()).find((j) => j.id === live.id)?.status).toBe("running") // the backup did not disturb it

  // After the backup: a user and a job the restore must not have.
  await c.addUser("late", "client")
  expect(await running.exited).toBe(0)
  const after = await c.run("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", media])
  expect(after.code).toBe(0)
  const before = (await c.jobs()).filter((j) => j.status === "completed")
  expect(before).toHaveLength(3)

  // Restore into a fresh folder (no -wal or -shm there) and start a new coordinator on it.
  const dir = join(c.dir, "restored")
  mkdirSync(dir)
  const put = await sh(
    `umask 077
     cp ${backup}/dffmpeg.db dffmpeg.db
     cp ${backup}/dffmpeg.db.secret dffmpeg.db.secret`,
    dir,
  )
  expect(put.code).toBe(0)
  chmodSync(join(dir, "dffmpeg.db"), 0o600)
  expect(existsSync(join(dir, "dffmpeg.db-wal"))).toBe(false)
  const config = join(dir, "coordinator.yaml")
  writeFileSync(config, JSON.stringify({ host: "127.0.0.1", port: 0, database: { path: "./dffmpeg.db" } }))
  restored = new Proc(
    "restored",
    Bun.spawn([BIN, "coordinator", "--config", config], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    }),
  )
  const port = Number((await restored.waitForLine(/listening on https?:\/\/127\.0\.0\.1:(\d+)/))[1])
  expect(restored.stderrText.join("\n")).not.toContain("every identity will be refused")

  // Its users: those of the backup, not the one added after it.
  const users = await c.exec([BIN, "admin", "--config", config, "users", "ls", "--json"], {})
  expect(users.code).toBe(0)
  const names = (JSON.parse(users.out) as { name: string }[]).map((u) => u.name).sort()
  expect(names).toEqual(["client1", "ops", "worker1"])

  // Its jobs: the probe completed, the transcode as it was (running), not the probe that came later.
  const jobsLs = await c.exec([BIN, "admin", "--config", config, "jobs", "ls", "--json"], {})
  expect(jobsLs.code).toBe(0)
  const jobs = JSON.parse(jobsLs.out) as { id: string; status: string; args: string[] }[]
  expect(jobs).toHaveLength(2)
  expect(jobs.find((j) => j.id === live.id)?.status).toBe("running")
  const probed = jobs.find((j) => j.id !== live.id)!
  expect(probed.status).toBe("completed")
  expect(before.map((j) => j.id)).toContain(probed.id)

  // The restored keys work: client1 signs in to the restored coordinator with its own key file and sees
  // its jobs there (a database restored with another secret would refuse it, exit 5).
  const clientConfig = join(dir, "client.yaml")
  writeFileSync(
    clientConfig,
    JSON.stringify({ client_id: "client1", hmac_key_file: join(c.dir, "client1.key"), coordinator: { port } }),
  )
  const mine = await c.exec([BIN, "client", "jobs", "--config", clientConfig], {})
  expect(mine.err).toBe("")
  expect(mine.code).toBe(0)
  expect(mine.out).toContain(probed.id)
  expect(mine.out).toContain(live.id)
}, 90_000)
