#!/usr/bin/env bun
/**
 * Which PostgreSQL driver under Kysely (issue 14): Kysely's PostgresDialect over `pg` (what the store
 * uses, and what its LISTEN/NOTIFY connection uses) against a small Kysely dialect over Bun's built-in
 * `Bun.SQL` (the tested one of /work/shared/toolchain.md's appendix). Both on the same fresh database,
 * in this one process, each measured the same way, the drivers alternating:
 *  1. round trips: `select $1::int` one at a time (--trips N, default 2000): statements/s, and this
 *     process's CPU per statement (process.cpuUsage: the driver's and Kysely's share, not the server's);
 *  2. transactions: BEGIN; SELECT ... FOR UPDATE; UPDATE; COMMIT on one of 64 rows, 1 and 8 at a time
 *     (--txs N, default 1000): transactions/s and CPU per statement;
 *  3. the store's job cycle: createJob, assign, start, appendOutput with the exit (what an attached
 *     trivial job costs the store), on the real SQL store (createSqlStore) over each driver, 1 and 8
 *     jobs at a time (--jobs N, default 200): jobs/s and CPU per job. A driver under which the store
 *     does not work as it is (types it reads back differently) says so instead of a figure.
 * Pool of 10 connections each, as the store's default pool_size. --quick: a fifth of every count.
 * Prints a Markdown report (for docs/performance.md); --json FILE writes the figures.
 * Run: `bun run bench:pg-drivers` (uses the local PostgreSQL of the tests, test/helpers/databases.ts).
 */
import { SQL } from "bun"
import { writeFileSync } from "node:fs"
import { cpus, loadavg, totalmem } from "node:os"
import {
  CompiledQuery,
  Kysely,
  PostgresAdapter,
  PostgresDialect,
  PostgresIntrospector,
  PostgresQueryCompiler,
  sql,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type QueryResult,
} from "kysely"
import pg from "pg"
import { memoryKeyring } from "../src/shared/auth/keyring.ts"
import { pgOptions } from "../src/store/postgres/index.ts"
import { postgresDialect } from "../src/store/sql/dialect.ts"
import { createSqlStore } from "../src/store/sql/store.ts"
import { serverKysely } from "../src/store/server/kysely.ts"
import type { Store } from "../src/store/types.ts"
import { freshDatabase } from "../test/helpers/databases.ts"
import { EXIT_OK, mappedJob, outputChunk } from "../test/helpers/fixtures.ts"
import { pct } from "./_common.ts"

const argv = process.argv
if (argv.includes("--help") || argv.includes("-h")) {
  console.log("usage: bun bench/pg-drivers.ts [--quick] [--trips N] [--txs N] [--jobs N] [--json FILE]")
  process.exit(0)
}
const scale = argv.includes("--quick") ? 0.2 : 1
const arg = (name: string, dflt: number) => {
  const i = argv.indexOf(name)
  return Math.max(1, Math.round(i > 0 ? Number(argv[i + 1]) || dflt : dflt * scale))
}
const trips = arg("--trips", 2000)
const txs = arg("--txs", 1000)
const jobs = arg("--jobs", 200)
const ji = argv.indexOf("--json")
const jsonFile = ji > 0 ? argv[ji + 1] : undefined
const POOL = 10

/** The appendix's dialect: Kysely over Bun.SQL, one reserved connection per Kysely connection. */
class BunSqlConnection implements DatabaseConnection {
  constructor(readonly c: any) {}
  async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    const rows = await this.c.unsafe(q.sql, q.parameters as unknown[])
    const n = rows.count ?? rows.affectedRows
    return {
      rows: [...rows] as R[],
      numAffectedRows: n != null && q.query.kind !== "SelectQueryNode" ? BigInt(n) : undefined,
    }
  }
  // biome-ignore lint/correctness/useYield: Kysely's interface; the store never streams.
  async *streamQuery(): AsyncIterableIterator<QueryResult<any>> {
    throw new Error("not implemented")
  }
}
class BunSqlDriver implements Driver {
  constructor(private readonly db: SQL) {}
  async init() {}
  async acquireConnection() {
    return new BunSqlConnection(await this.db.reserve())
  }
  async beginTransaction(c: BunSqlConnection) {
    await c.executeQuery(CompiledQuery.raw("begin"))
  }
  async commitTransaction(c: BunSqlConnection) {
    await c.executeQuery(CompiledQuery.raw("commit"))
  }
  async rollbackTransaction(c: BunSqlConnection) {
    await c.executeQuery(CompiledQuery.raw("rollback"))
  }
  async releaseConnection(c: BunSqlConnection) {
    c.c.release()
  }
  async destroy() {
    await this.db.close()
  }
}
class BunSqlDialect implements Dialect {
  constructor(private readonly db: SQL) {}
  createDriver() {
    return new BunSqlDriver(this.db)
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler()
  }
  createAdapter() {
    return new PostgresAdapter()
  }
  createIntrospector(db: Kysely<any>) {
    return new PostgresIntrospector(db)
  }
}

const database = await freshDatabase("postgres")
const conn = database.connection

type Make = () => Dialect
const drivers: Record<string, Make> = {
  "pg (PostgresDialect)": () => {
    const pool = new pg.Pool({ ...pgOptions(conn), max: POOL, idleTimeoutMillis: 30_000 })
    pool.on("error", () => {})
    return new PostgresDialect({ pool })
  },
  "Bun.SQL (30-line dialect)": () => new BunSqlDialect(new SQL({ url: database.url, max: POOL })),
}

const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** Runs `n` calls of `one`, `conc` at a time: calls/s, CPU ms per call, and each call's latency. */
async function measure(n: number, conc: number, one: (i: number) => Promise<void>) {
  let next = 0
  const lat: number[] = []
  const c0 = cpuMs()
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < n) {
        const i = next++
        const t = performance.now()
        await one(i)
        lat.push(performance.now() - t)
      }
    }),
  )
  const wall = performance.now() - t0
  return { perSec: n / (wall / 1000), cpuPerCall: (cpuMs() - c0) / n, p50: pct(lat, 50) }
}

interface Row {
  driver: string
  test: string
  conc: number
  perSec: number
  /** CPU ms of this process per statement (or per job, for the store's cycle). */
  cpu: number
  p50: number
  note?: string
}
const rows: Row[] = []
// One secret for every store on the database, as the coordinators of one database share theirs.
const keys = memoryKeyring()

// The shared table for the transaction test.
{
  const db = new Kysely<any>({ dialect: drivers["pg (PostgresDialect)"]!() })
  await sql`create table counters (id integer primary key, n bigint not null)`.execute(db)
  await sql`insert into counters select g, 0 from generate_series(0, 63) g`.execute(db)
  await db.destroy()
}

const load0 = loadavg()
// Two rounds, the drivers alternating, so that neither has the quieter machine; the better round is kept.
for (let round = 0; round < 2; round++)
  for (const [name, make] of Object.entries(drivers)) {
    const db = new Kysely<any>({ dialect: make() })
    const keep = (r: Row) => {
      const i = rows.findIndex((x) => x.driver === r.driver && x.test === r.test && x.conc === r.conc)
      if (i === -1) rows.push(r)
      else if (r.perSec > rows[i]!.perSec) rows[i] = r
    }
    // Warm-up: the pool's connections.
    await Promise.all(Array.from({ length: POOL }, () => sql`select 1`.execute(db)))
    const rt = await measure(trips, 1, async (i) => {
      const r = await sql<{ v: number }>`select ${i}::int as v`.execute(db)
      if (Number(r.rows[0]!.v) !== i) throw new Error(`${name}: select answered ${r.rows[0]!.v}`)
    })
    keep({ driver: name, test: "round trip (select $1)", conc: 1, perSec: rt.perSec, cpu: rt.cpuPerCall, p50: rt.p50 })
    for (const conc of [1, 8]) {
      const tx = await measure(txs, conc, async (i) => {
        await db.transaction().execute(async (t) => {
          const id = i % 64
          const r = await sql<{ n: number }>`select n from counters where id = ${id} for update`.execute(t)
          await sql`update counters set n = ${Number(r.rows[0]!.n) + 1} where id = ${id}`.execute(t)
        })
      })
      // 4 statements a transaction: BEGIN, SELECT, UPDATE, COMMIT.
      keep({
        driver: name,
        test: "transaction (4 statements)",
        conc,
        perSec: tx.perSec * 4,
        cpu: tx.cpuPerCall / 4,
        p50: tx.p50,
      })
    }
    await db.destroy()

    // The store's job cycle on the real SQL store over this driver.
    for (const conc of [1, 8]) {
      const store: Store = createSqlStore(serverKysely(make()), postgresDialect, { keys })
      try {
        await store.migrate()
        const prefix = `${name.split(" ")[0]}-r${round}c${conc}`
        const cycle = await measure(jobs, conc, async (i) => {
          const id = `${prefix}-${i}`
          const now = Date.now()
          await store.createJob(mappedJob(id), now)
          const a = await store.assign(id, "w1", now)
          if (!a) throw new Error(`${name}: ${id} not assigned`)
          const s = await store.start(id, "w1", a.epoch, now)
          if (!s) throw new Error(`${name}: ${id} not started`)
          const r = await store.appendOutput(id, "w1", a.epoch, [outputChunk(1, "ok\n")], EXIT_OK, now)
          if (!r.ok) throw new Error(`${name}: ${id} output refused: ${JSON.stringify(r)}`)
          const job = await store.getJob(id)
          if (job?.status !== "completed" || job.epoch !== a.epoch || job.finishedAt !== now)
            throw new Error(`${name}: ${id} read back as ${JSON.stringify(job)}`)
        })
        keep({
          driver: name,
          test: "store job cycle (per job)",
          conc,
          perSec: cycle.perSec,
          cpu: cycle.cpuPerCall,
          p50: cycle.p50,
        })
      } catch (err) {
        keep({
          driver: name,
          test: "store job cycle (per job)",
          conc,
          perSec: 0,
          cpu: Number.NaN,
          p50: Number.NaN,
          note: `the store fails over this driver: ${(err as Error).message.slice(0, 160)}`,
        })
      } finally {
        await store.close()
      }
    }
  }
const load1 = loadavg()

const pgVersion = await (async () => {
  const c = new pg.Client({ connectionString: database.url })
  await c.connect()
  const v = (await c.query("show server_version")).rows[0].server_version as string
  await c.end()
  return v
})()
await database.drop()

const lines = [
  `### bench:pg-drivers, ${new Date().toISOString().slice(0, 10)}`,
  "",
  `Machine: ${cpus()[0]?.model ?? "?"} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Bun ${Bun.version}, ` +
    `PostgreSQL ${pgVersion} on 127.0.0.1 (TCP); load average ${load0.map((x) => x.toFixed(2)).join(" ")} at start, ` +
    `${load1.map((x) => x.toFixed(2)).join(" ")} at end. Pool of ${POOL}; the better of 2 alternating rounds. ` +
    `CPU is this process's (driver + Kysely), per statement (per job for the store's cycle).`,
  "",
  "| test | at a time | driver | statements/s (jobs/s) | CPU ms each | latency p50 (ms) |",
  "|---|---:|---|---:|---:|---:|",
  ...rows
    .sort((a, b) => a.test.localeCompare(b.test) || a.conc - b.conc || a.driver.localeCompare(b.driver))
    .map((r) =>
      r.note
        ? `| ${r.test} | ${r.conc} | ${r.driver} | ${r.note} | | |`
        : `| ${r.test} | ${r.conc} | ${r.driver} | ${r.perSec.toFixed(0)} | ${r.cpu.toFixed(3)} | ${r.p50.toFixed(2)} |`,
    ),
]
console.log(lines.join("\n"))
if (jsonFile)
  writeFileSync(jsonFile, JSON.stringify({ date: new Date().toISOString(), load: [load0, load1], rows }, null, 2))
process.exit(0)
