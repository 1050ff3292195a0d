#!/usr/bin/env bun
/**
 * Wake-ups across coordinators: from `notify(topic)` on one notifier to the wake of a waiter on another
 * notifier of the same database (two instances in this process, each with its own connection, as two
 * coordinators have). PostgreSQL (LISTEN/NOTIFY) and MariaDB (the change sequence, read every
 * `notify_interval_ms`, default 50), against the in-memory hub. Each sample waits a random 0-100 ms
 * first, so the MariaDB samples fall at every phase of its read interval. And the broker notifier
 * (config `notifier: mqtt|rabbitmq`, issue 15) over the local Mosquitto and RabbitMQ.
 * Run: `bun run bench:notify`. Options: --samples N (default 500), --interval MS (MariaDB, default 50).
 */
import { Hub, type Notifier } from "../src/coordinator/hub.ts"
import { MysqlNotifier } from "../src/coordinator/notify/mysql.ts"
import { PostgresNotifier } from "../src/coordinator/notify/postgres.ts"
import { createMysqlStore } from "../src/store/mysql/index.ts"
import pg from "pg"
import { createConnection } from "mysql2/promise"
import { serverConnection } from "../src/store/server/connection.ts"
import { f, pct } from "./_common.ts"
import { BrokerNotifier } from "../src/coordinator/notify/broker.ts"
import { memoryKeyring } from "../src/shared/auth/keyring.ts"
import { newId } from "../src/shared/ids.ts"
import { COORDINATORS, openLink } from "../src/transports/index.ts"
import * as v from "valibot"
import { resolveTransports, Transports } from "../src/shared/config/transports.ts"
import { brokerTransports } from "../test/helpers/brokers.ts"

const arg = (name: string, d: number) => {
  const i = process.argv.indexOf(name)
  return i === -1 ? d : Number(process.argv[i + 1]) || d
}
const samples = arg("--samples", 500)
const interval = arg("--interval", 50)

async function measure(a: Notifier, b: Notifier): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < samples; i++) {
    await Bun.sleep(Math.random() * 100)
    const t = `job:bench${i}:output`
    const sub = b.subscribe(t)
    const t0 = performance.now()
    a.notify(t)
    await sub.wait(30_000)
    out.push(performance.now() - t0)
    sub.close()
  }
  return out
}

/** A new database on the local server, as the tests' role (test/helpers/databases.ts, which needs bun test). */
async function database(engine: "postgres" | "mysql") {
  const name = `dfft_bench_${process.pid}_${engine}`
  const admin = (text: string) =>
    engine === "postgres"
      ? (async () => {
          const c = new pg.Client({ connectionString: "postgres://dffmpeg_test:dffmpeg_test@127.0.0.1:5432/postgres" })
          await c.connect()
          await c.query(text).finally(() => c.end())
        })()
      : (async () => {
          const c = await createConnection({ host: "127.0.0.1", user: "dffmpeg_test", password: "dffmpeg_test" })
          await c.query(text).finally(() => c.end())
        })()
  await admin(`DROP DATABASE IF EXISTS ${name}`)
  await admin(`CREATE DATABASE ${name}`)
  const url = `${engine}://dffmpeg_test:dffmpeg_test@127.0.0.1:${engine === "postgres" ? 5432 : 3306}/${name}`
  const connection = serverConnection(
    { engine, url, pool_size: 4, connect_timeout_seconds: 5, notify_interval_ms: interval } as never,
    process.cwd(),
  )
  return { connection, drop: () => admin(`DROP DATABASE IF EXISTS ${name}`) }
}

const rows: string[] = []
const report = (name: string, xs: number[]) =>
  rows.push(
    `| ${name} | ${xs.length} | ${f(pct(xs, 50))} | ${f(pct(xs, 90))} | ${f(pct(xs, 99))} | ${f(Math.max(...xs))} |`,
  )

const hub = new Hub()
report("memory (one process)", await measure(hub, hub))

const pgdb = await database("postgres")
const pa = new PostgresNotifier({ connection: pgdb.connection })
const pb = new PostgresNotifier({ connection: pgdb.connection })
await pa.start()
await pb.start()
report("PostgreSQL LISTEN/NOTIFY", await measure(pa, pb))
await pa.close()
await pb.close()

const mydb = await database("mysql")
const store = createMysqlStore({ connection: mydb.connection })
await store.migrate()
await store.close()
const ma = new MysqlNotifier({ connection: mydb.connection })
const mb = new MysqlNotifier({ connection: mydb.connection })
await ma.start()
await mb.start()
report(`MariaDB change sequence (notify_interval_ms ${interval})`, await measure(ma, mb))
await ma.close()
await mb.close()

for (const kind of ["mqtt", "rabbitmq"] as const) {
  const keys = memoryKeyring()
  // The loopback broker with names of this run's own, as the tests use it.
  const settings = resolveTransports(v.parse(Transports, brokerTransports(kind)), "/")[kind]!
  const open = async () => {
    const self = { identity: COORDINATORS, instance: newId() }
    const n = new BrokerNotifier({ kind, keys })
    const link = await openLink(kind, settings, {
      self,
      serveRequests: true,
      onMessage: async (channel, bytes) => {
        if (channel === "notify") n.receive(bytes)
      },
    })
    await link.ready(10_000)
    n.attach(link, self)
    await n.start()
    return { n, link }
  }
  const x = await open()
  const y = await open()
  report(`${kind === "mqtt" ? "MQTT (Mosquitto)" : "RabbitMQ"} broker notifier`, await measure(x.n, y.n))
  for (const o of [x, y]) {
    await o.n.close()
    await o.link.close()
  }
}

console.log("| notifier | samples | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
console.log(rows.join("\n"))
await pgdb.drop()
await mydb.drop()
