import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { BIN } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"
import { freshDatabase, type ServerEngine, type TestDatabase } from "../helpers/databases.ts"
import { sample } from "../helpers/media.ts"
import { Proc } from "../helpers/proc.ts"

/**
 * The backups docs/upgrading.md documents, done as written for each engine (SQLite's `.backup`, `pg_dump`,
 * `mariadb-dump`, each with a copy of the secret file) while the coordinator runs and a job writes
 * heartbeats and output; then the documented restore into a fresh coordinator, which must list the users
 * and jobs of the moment of the backup, nothing added after it, and accept the restored identities' keys
 * (the secret belongs to the database).
 */
type Engine = "sqlite" | ServerEngine

/** The documented commands of one engine: `backup` run in the coordinator's folder, `restore` in a new one. */
interface Recipe {
  backup: (to: string) => string
  restore: (from: string) => Promise<{ script: string; database: Record<string, unknown> }>
  env: Record<string, string>
}

async function recipe(engine: Engine, c: Cluster, db?: TestDatabase): Promise<Recipe> {
  if (engine === "sqlite")
    return {
      env: {},
      backup: (to) =>
        `sqlite3 coordinator.db ".backup ${to}/dffmpeg.db"\ncp coordinator.db.secret ${to}/dffmpeg.db.secret`,
      restore: async (from) => ({
        script: `cp ${from}/dffmpeg.db dffmpeg.db\ncp ${from}/dffmpeg.db.secret dffmpeg.db.secret`,
        database: { path: "./dffmpeg.db" },
      }),
    }
  const u = new URL(db!.url)
  const [host, port, user, password] = [
    u.hostname,
    u.port,
    decodeURIComponent(u.username),
    decodeURIComponent(u.password),
  ]
  // The documented commands, with the password from the environment instead of a prompt.
  const env: Record<string, string> = engine === "postgres" ? { PGPASSWORD: password } : { MYSQL_PWD: password }
  const into = async () => {
    const target = await freshDatabase(engine) // "a new, empty database"
    return { target, database: target.config as unknown as Record<string, unknown> }
  }
  if (engine === "postgres")
    return {
      env,
      backup: (to) =>
        `pg_dump -h ${host} -p ${port} -U ${user} --format=custom --file=${to}/dffmpeg.dump ${db!.name}\ncp ${join(c.dir, "dffmpeg.secret")} ${to}/dffmpeg.secret`,
      restore: async (from) => {
        const { target, database } = await into()
        return {
          script: `pg_restore -h ${host} -p ${port} -U ${user} --no-owner --dbname=${target.name} ${from}/dffmpeg.dump\ncp ${from}/dffmpeg.secret dffmpeg.secret`,
          database,
        }
      },
    }
  return {
    env,
    backup: (to) =>
      `mariadb-dump -h ${host} -P ${port} -u ${user} --single-transaction --hex-blob ${db!.name} > ${to}/dffmpeg.sql\ncp ${join(c.dir, "dffmpeg.secret")} ${to}/dffmpeg.secret`,
    restore: async (from) => {
      const { target, database } = await into()
      return {
        script: `mariadb -h ${host} -P ${port} -u ${user} ${target.name} < ${from}/dffmpeg.sql\ncp ${from}/dffmpeg.secret dffmpeg.secret`,
        database,
      }
    },
  }
}

for (const engine of ["sqlite", "postgres", "mysql"] as const) {
  describe(`${engine}`, () => {
    let c: Cluster
    let db: TestDatabase | undefined
    let restored: Proc | undefined

    beforeAll(async () => {
      db = engine === "sqlite" ? undefined : await freshDatabase(engine)
      c = await Cluster.start({ workers: 1, coordinatorConfig: db ? { database: db.config } : {} })
      copyFileSync(await sample("av10s.mkv"), join(c.storage, "av.mkv"))
    })
    afterAll(async () => {
      await restored?.stop()
      await c?.stop()
    })

    test("a backup taken while the coordinator runs restores into a fresh coordinator with its users and jobs", async () => {
      const how = await recipe(engine, c, db)
      const sh = (script: string, cwd: string) => c.exec(["sh", "-ec", `umask 077\n${script}`], { cwd, env: how.env })
      const media = join(c.clientMedia, "av.mkv")
      const probeArgs = ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", media]
      expect((await c.run("ffprobe", probeArgs)).code).toBe(0)
      await c.addUser("ops", "admin")
      // A transcode running during the backup: the coordinator writes its heartbeats and output meanwhile.
      const running = c.spawnProxy("ffmpeg", ["-hide_banner", "-re", "-i", media, "-t", "6", "-f", "null", "-"], {
        stdin: "ignore",
      })
      const live = await c.waitFor(async () => (await c.jobs()).find((j) => j.status === "running"), {
        timeoutMs: 20_000,
        what: "the transcode to run",
      })

      // The documented commands (docs/upgrading.md, "Backup and restore").
      const backup = join(c.dir, "backup")
      mkdirSync(backup)
      const taken = await sh(how.backup(backup), c.dir)
      expect(taken.err).toBe("")
      expect(taken.code).toBe(0)
      for (const f of readdirSync(backup)) expect(statSync(join(backup, f)).mode & 0o077).toBe(0)
      expect((await c.jobs()).find((j) => j.id === live.id)?.status).toBe("running") // the backup did not disturb it

      // After the backup: a user and a job the restore must not have.
      await c.addUser("late", "client")
      expect(await running.exited).toBe(0)
      expect((await c.run("ffprobe", probeArgs)).code).toBe(0)
      const before = (await c.jobs()).filter((j) => j.status === "completed")
      expect(before).toHaveLength(3)

      // Restore into a fresh folder (no -wal or -shm there) or a new, empty database, and start a new
      // coordinator on it with the secret file of the backup.
      const dir = join(c.dir, "restored")
      mkdirSync(dir)
      const { script, database } = await how.restore(backup)
      const put = await sh(script, dir)
      expect(put.err).toBe("")
      expect(put.code).toBe(0)
      for (const f of readdirSync(dir)) expect(statSync(join(dir, f)).mode & 0o077).toBe(0) // umask 077: 0600
      expect(existsSync(join(dir, "dffmpeg.db-wal"))).toBe(false)
      const config = join(dir, "coordinator.yaml")
      writeFileSync(config, JSON.stringify({ host: "127.0.0.1", port: 0, database }))
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
      const port = Number((await restored.waitForLine(/listening on https?:\/\/127\.0\.0\.1:(\d+)/, 20_000))[1])
      expect(restored.stderrText.join("\n")).not.toContain("every identity will be refused")

      // Its users: those of the backup, not the one added after it.
      const users = await c.exec([BIN, "admin", "--config", config, "users", "ls", "--json"], {})
      expect(users.code).toBe(0)
      const names = (JSON.parse(users.out) as { name: string }[]).map((u) => u.name).sort()
      expect(names).toEqual(["client1", "ops", "worker1"])

      // Its jobs: the probe completed, the transcode as it was (running), not the probe that came later.
      const jobsLs = await c.exec([BIN, "admin", "--config", config, "jobs", "ls", "--json"], {})
      expect(jobsLs.code).toBe(0)
      const jobs = JSON.parse(jobsLs.out) as { id: string; status: string }[]
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
    }, 120_000)
  })
}
