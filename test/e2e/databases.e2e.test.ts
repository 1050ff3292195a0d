import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import { BIN, requireBinary, waitFor } from "../helpers/bin.ts"
import { Proc } from "../helpers/proc.ts"
import { databaseSql, freshDatabase, type ServerEngine } from "../helpers/databases.ts"
import { SCHEMA_VERSION } from "../../src/store/sql/migrations.ts"
import { VERSION } from "../../src/shared/version.ts"

/**
 * The operator's side of the database engines against the compiled binary: DFFMPEG_DATABASE_URL, the
 * start line, a database that cannot be used at start, and `dffmpeg admin db status` / `migrate` on
 * SQLite, the local PostgreSQL and the local MariaDB. No password ever reaches a line of output.
 */
requireBinary()
const dir = mkdtempSync(join(tmpdir(), "dffmpeg-db-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A coordinator config in its own directory; its database comes from `database` or DFFMPEG_DATABASE_URL. */
function config(database: Record<string, unknown> = {}): string {
  const d = mkdtempSync(join(dir, "c-"))
  const file = join(d, "coordinator.yaml")
  writeFileSync(file, JSON.stringify({ host: "127.0.0.1", port: 0, database }))
  return file
}

async function run(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([BIN, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  })
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
  return { code, out, err }
}

function coordinator(file: string, env: Record<string, string> = {}): Proc {
  const p = Bun.spawn([BIN, "coordinator", "--config", file], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, ...env },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  })
  return new Proc("coordinator", p)
}

/** A port on 127.0.0.1 that nothing listens on: one the kernel gave out and that was closed again. */
function closedPort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
  const port = l.port
  l.stop(true)
  return port
}

/** The URL of `db` with `password` in it (PostgreSQL here trusts 127.0.0.1: any password logs in). */
const withPassword = (url: string, password: string) => {
  const u = new URL(url)
  u.password = password
  return u.toString()
}

const PASSWORD = "Pw-8c1f-never-shown"

describe("a database that cannot be used at start", () => {
  const mysqlUrl = (over: { port?: number; password?: string; db?: string; user?: string }) =>
    `mysql://${over.user ?? "dffmpeg_test"}:${over.password ?? "dffmpeg_test"}@127.0.0.1:${over.port ?? 3306}/${over.db ?? "dfft_none"}`
  const pgUrl = (over: { port?: number; db?: string; user?: string }) =>
    `postgresql://${over.user ?? "dffmpeg_test"}:${PASSWORD}@127.0.0.1:${over.port ?? 5432}/${over.db ?? "dfft_none"}`
  const cases: [string, () => string, RegExp][] = [
    ["PostgreSQL on a closed port", () => pgUrl({ port: closedPort() }), /ECONNREFUSED/],
    ["MariaDB on a closed port", () => mysqlUrl({ port: closedPort(), password: PASSWORD }), /ECONNREFUSED/],
    ["MariaDB with a wrong password", () => mysqlUrl({ password: PASSWORD }), /Access denied/],
    // This PostgreSQL trusts 127.0.0.1 (no password is checked): a role it does not have is its refusal to log in.
    [
      "PostgreSQL with a role it does not have",
      () => pgUrl({ user: "dfft_nobody" }),
      /role "dfft_nobody" does not exist/,
    ],
    [
      "PostgreSQL with an unknown database",
      () => pgUrl({ db: "dfft_no_such_db" }),
      /database "dfft_no_such_db" does not exist/,
    ],
    [
      "MariaDB with an unknown database",
      () => mysqlUrl({ db: "dfft_no_such_db" }),
      /Unknown database 'dfft_no_such_db'/,
    ],
  ]
  for (const [what, url, why] of cases)
    test(`${what}: the coordinator and admin db status print one line naming it, password masked, and exit 3`, async () => {
      const u = url()
      const masked = u.replace(/:[^:@/]+@/, ":***@").replace(/^postgresql:/, "postgres:")
      for (const args of [
        ["coordinator", "--config", config()],
        ["admin", "db", "status", "--config", config()],
        ["admin", "users", "ls", "--local", "--config", config()],
      ]) {
        const r = await run(args, { DFFMPEG_DATABASE_URL: u })
        expect(r.code).toBe(3)
        // Besides the log lines of the start (config loaded...), one line says what is wrong.
        const all = r.err.trimEnd().split("\n")
        const lines = all.filter((l) => !/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO /.test(l))
        expect(lines).toHaveLength(1)
        expect(lines[0]).toStartWith(`dffmpeg: cannot use database ${masked}: `)
        expect(lines[0]).toMatch(why)
        expect(r.err + r.out).not.toContain(PASSWORD)
      }
    }, 30_000)

  test("an unknown scheme in DFFMPEG_DATABASE_URL is named (password not shown), exit 3", async () => {
    const r = await run(["coordinator", "--config", config()], {
      DFFMPEG_DATABASE_URL: `redis://u:${PASSWORD}@127.0.0.1/0`,
    })
    expect(r.code).toBe(3)
    expect(r.err).toBe(
      'dffmpeg: DFFMPEG_DATABASE_URL has the unknown scheme "redis:"; use postgres://, postgresql://, mysql://, mariadb://, sqlite:PATH or sqlite:///abs/path\n',
    )
  })
})

interface Status {
  engine: string
  database: string
  exists: boolean
  schemaVersion: number
  buildSchemaVersion: number
  pending: number
  version: string
  coordinators:
    | { id: string; host: string; pid: number; version: string; url: string; startedAt: number; seenAt: number }[]
    | null
}

/** One engine's database as the tests below use it: a config naming it, the URL to set, and SQL on it. */
interface Target {
  file: string
  env: Record<string, string>
  /** The database as the start line and db status show it. */
  shown: string
  sql(text: string): Promise<unknown>
  secret?: string
  /** Drops a server database at the end of its test (dropping them all after the file outlasts a hook's 5 s). */
  [Symbol.asyncDispose](): Promise<void>
}

async function target(engine: "sqlite" | ServerEngine): Promise<Target> {
  if (engine === "sqlite") {
    const file = config({ path: "./dffmpeg.db" })
    const path = join(file, "..", "dffmpeg.db")
    return {
      file,
      env: {},
      shown: path,
      [Symbol.asyncDispose]: async () => {},
      async sql(text) {
        const { Database } = await import("bun:sqlite")
        const db = new Database(path)
        try {
          return db.query(text).all()
        } finally {
          db.close()
        }
      },
    }
  }
  const db = await freshDatabase(engine)
  // PostgreSQL here logs in without checking the password: one that must never be shown can be given.
  const url = engine === "postgres" ? withPassword(db.url, PASSWORD) : db.url
  return {
    file: config(),
    env: { DFFMPEG_DATABASE_URL: url },
    shown: `${engine}://dffmpeg_test:***@127.0.0.1:${db.connection.port}/${db.name}`,
    sql: (text) => databaseSql(db, text),
    secret: engine === "postgres" ? PASSWORD : ":dffmpeg_test@",
    [Symbol.asyncDispose]: () => db.drop(),
  }
}

for (const engine of ["sqlite", "postgres", "mysql"] as const)
  describe(`${engine}: admin db and the coordinators table`, () => {
    test("db status reads without migrating; db migrate applies the pending steps and says so, then has nothing to do", async () => {
      await using t = await target(engine)
      const status = async () => {
        const r = await run(["admin", "db", "status", "--json", "--config", t.file], t.env)
        expect(r.err).toBe("")
        expect(r.code).toBe(0)
        return JSON.parse(r.out) as Status
      }
      const before = await status()
      expect(before).toMatchObject({
        engine,
        database: t.shown,
        exists: engine !== "sqlite",
        schemaVersion: 0,
        buildSchemaVersion: SCHEMA_VERSION,
        pending: SCHEMA_VERSION,
        version: VERSION,
      })
      // Twice: the first status created nothing (an SQLite file stays absent, a server database empty).
      expect((await status()).schemaVersion).toBe(0)
      if (engine === "sqlite") expect(existsSync(t.shown)).toBe(false)
      else {
        const human = await run(["admin", "db", "status", "--config", t.file], t.env)
        expect(human.out).toContain(`database            ${t.shown}\n`)
        expect(human.out).toContain(`pending migrations  ${SCHEMA_VERSION} (to schema version ${SCHEMA_VERSION})`)
      }

      const m = await run(["admin", "db", "migrate", "--config", t.file], t.env)
      expect(m.code).toBe(0)
      expect(m.out).toBe(`migrated ${t.shown} from schema version 0 to ${SCHEMA_VERSION} (${SCHEMA_VERSION} step(s))\n`)
      const again = await run(["admin", "db", "migrate", "--json", "--config", t.file], t.env)
      expect(JSON.parse(again.out)).toEqual({
        engine,
        database: t.shown,
        from: SCHEMA_VERSION,
        to: SCHEMA_VERSION,
        sealed: 0,
      })
      expect(await status()).toMatchObject({ schemaVersion: SCHEMA_VERSION, pending: 0, coordinators: [] })

      // A newer dffmpeg migrated it: this one refuses to migrate or serve it, and says so in one line.
      await t.sql(
        "UPDATE meta SET value = '99' WHERE \"key\" = 'schema_version'".replace(
          /"key"/,
          engine === "mysql" ? "`key`" : '"key"',
        ),
      )
      const newer = `dffmpeg: database schema version 99 is newer than this dffmpeg (${SCHEMA_VERSION}); upgrade dffmpeg\n`
      const refused = await run(["admin", "db", "migrate", "--config", t.file], t.env)
      expect([refused.code, refused.err]).toEqual([3, newer])
      const serve = await run(["coordinator", "--config", t.file], t.env)
      expect(serve.code).toBe(3)
      expect(serve.err.trimEnd().split("\n").at(-1)).toBe(newer.trimEnd())
      const told = await run(["admin", "db", "status", "--config", t.file], t.env)
      expect(told.code).toBe(0)
      expect(told.out).toContain(`schema version      99 (this dffmpeg: ${SCHEMA_VERSION})`)
      expect(told.out).toContain("the database is newer than this dffmpeg")
      if (t.secret) for (const r of [m, again, refused, serve, told]) expect(r.out + r.err).not.toContain(t.secret)
    }, 60_000)

    test("a running coordinator names the engine and database on its start line, is listed by db status, and is gone after a clean stop", async () => {
      await using t = await target(engine)
      const c = coordinator(t.file, t.env)
      try {
        const line = (await c.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 20_000)).input!
        const url = line.match(/listening on (\S+)/)![1]
        expect(line).toContain(` engine=${engine} database=${t.shown} `)
        const listed = await run(["admin", "db", "status", "--json", "--config", t.file], t.env)
        const s = JSON.parse(listed.out) as Status
        expect(s.coordinators).toHaveLength(1)
        const row = s.coordinators![0]
        expect(row).toMatchObject({ host: hostname(), pid: c.pid, version: VERSION, url })
        expect(line).toContain(`coordinator=${row.id}`)
        expect(row.seenAt).toBeGreaterThanOrEqual(row.startedAt)
        const human = await run(["admin", "db", "status", "--config", t.file], t.env)
        expect(human.out).toContain("1 coordinator(s) seen in the last 60 s:\n")
        expect(human.out).toMatch(new RegExp(`\\n${row.id}\\s+${hostname()}\\s+${c.pid}\\s+${VERSION}\\s+${url}\\s`))
        expect(await c.stop("SIGTERM")).toBe(0)
        const after = JSON.parse(
          (await run(["admin", "db", "status", "--json", "--config", t.file], t.env)).out,
        ) as Status
        expect(after.coordinators).toEqual([])
        if (t.secret) expect(c.log()).not.toContain(t.secret)
      } finally {
        await c.stop("SIGKILL")
      }
    }, 60_000)
  })

test("DFFMPEG_DATABASE_URL=sqlite:PATH puts the coordinator's database there (relative to the config file)", async () => {
  const file = config({ path: "./elsewhere.db" })
  const c = coordinator(file, { DFFMPEG_DATABASE_URL: "sqlite:./from-env.db" })
  try {
    const line = (await c.waitForLine(/listening on/, 20_000)).input!
    const path = join(file, "..", "from-env.db")
    expect(line).toContain(` engine=sqlite database=${path} `)
    await waitFor(() => existsSync(path))
    expect(existsSync(join(file, "..", "elsewhere.db"))).toBe(false)
  } finally {
    await c.stop("SIGTERM")
  }
}, 30_000)
