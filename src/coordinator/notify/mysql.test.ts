import { describe, expect, test } from "bun:test"
import { testCoordinatorWakeups, testNotifier } from "../../../test/conformance/notifier.ts"
import { waitFor } from "../../../test/helpers/bin.ts"
import { databaseSql, freshDatabase, type TestDatabase } from "../../../test/helpers/databases.ts"
import { TcpProxy } from "../../../test/helpers/tcp-proxy.ts"
import { createMysqlStore } from "../../store/mysql/index.ts"
import type { Notifier } from "../hub.ts"
import { ChangeCursor, GAP_MS, INSERT_ROWS, MysqlNotifier, PRUNE_ROWS } from "./mysql.ts"

// The notifier contract on MariaDB (127.0.0.1:3306): two notifiers on one fresh, migrated database (the
// `changes` table), as two coordinators have; `b` behind a TCP proxy when the test cuts its connection.
let db: Promise<TestDatabase> | undefined
const database = () =>
  (db ??= (async () => {
    const d = await freshDatabase("mysql")
    const store = createMysqlStore({ connection: d.connection })
    await store.migrate()
    await store.close()
    return d
  })())

testNotifier("mysql", {
  remote: true,
  async pair(proxied) {
    const d = await database()
    const proxy = proxied ? TcpProxy.start(d.connection) : undefined
    const a = new MysqlNotifier({ connection: d.connection })
    const b = new MysqlNotifier({
      connection: proxy ? { ...d.connection, host: "127.0.0.1", port: proxy.port } : d.connection,
    })
    expect(await a.start()).toBe(true)
    expect(await b.start()).toBe(true)
    return { a, b, proxy }
  },
  // One multi-row INSERT per tick, of at most INSERT_ROWS rows.
  statements: { of: (n: Notifier) => (n as MysqlNotifier).stats.statements, for: (t) => Math.ceil(t / INSERT_ROWS) },
})

describe("mysql change sequence", () => {
  test("a row whose lower id becomes visible after a higher one is taken once; old gaps are dropped", () => {
    const c = new ChangeCursor(10)
    expect(c.take(13, 0)).toBe(true)
    expect(c.gapIds(0)).toEqual([11, 12])
    // 12 commits late: taken, and not again.
    expect(c.take(12, 5)).toBe(true)
    expect(c.take(12, 5)).toBe(false)
    expect(c.take(13, 5)).toBe(false)
    expect(c.gapIds(GAP_MS)).toEqual([11])
    expect(c.gapIds(GAP_MS + 1)).toEqual([])
    expect(c.take(11, GAP_MS + 1)).toBe(false)
    // A jump over more ids than are tracked is not a gap list.
    expect(c.take(1_000_000, 0)).toBe(true)
    expect(c.gapIds(0)).toEqual([])
  })

  test("a row committed late under a lower id still wakes the other coordinator", async () => {
    const d = await database()
    const b = new MysqlNotifier({ connection: d.connection })
    expect(await b.start()).toBe(true)
    try {
      const [{ id }] = (await databaseSql(d, "SELECT COALESCE(MAX(id), 0) + 100 AS id FROM changes")) as {
        id: number
      }[]
      const late = b.subscribe("job:late:output")
      const first = b.subscribe("job:first:output")
      // A higher id first, then the lower one it skipped, as two INSERTs that commit out of order.
      await databaseSql(d, `INSERT INTO changes (id, topic, origin, at) VALUES (${id + 2}, 'job:first:output', 'x', 0)`)
      await first.wait(30_000)
      await databaseSql(d, `INSERT INTO changes (id, topic, origin, at) VALUES (${id + 1}, 'job:late:output', 'x', 0)`)
      const t0 = performance.now()
      await late.wait(30_000)
      expect(performance.now() - t0).toBeLessThan(5000)
      late.close()
      first.close()
    } finally {
      await b.close()
    }
  })

  test("rows older than a minute by the database's clock are pruned in batches", async () => {
    const d = await database()
    const old = PRUNE_ROWS * 2 + 10
    await databaseSql(
      d,
      `INSERT INTO changes (topic, origin, at) SELECT 'job:old:output', 'x', UNIX_TIMESTAMP() * 1000 - 120000 FROM
       (SELECT 1 FROM information_schema.columns a CROSS JOIN information_schema.columns b LIMIT ${old}) t`,
    )
    const count = async (where: string) =>
      Number(((await databaseSql(d, `SELECT count(*) AS n FROM changes WHERE ${where}`)) as { n: number }[])[0].n)
    expect(await count("topic = 'job:old:output'")).toBe(old)
    const n = new MysqlNotifier({ connection: d.connection })
    expect(await n.start()).toBe(true)
    n.notify("job:new:output")
    try {
      await waitFor(async () => (await count("topic = 'job:old:output'")) === 0, { what: "the old rows pruned" })
      await waitFor(async () => (await count("topic = 'job:new:output'")) === 1, { what: "the new row kept" })
    } finally {
      await n.close()
    }
  })
})

testCoordinatorWakeups("mysql")
