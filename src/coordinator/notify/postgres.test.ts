import { describe, expect, test } from "bun:test"
import { testCoordinatorWakeups, testNotifier } from "../../../test/conformance/notifier.ts"
import { freshDatabase, type TestDatabase } from "../../../test/helpers/databases.ts"
import { TcpProxy } from "../../../test/helpers/tcp-proxy.ts"
import type { Notifier } from "../hub.ts"
import { PAYLOAD_MAX_BYTES, PostgresNotifier, payloads, topicsOf } from "./postgres.ts"
import { EVERY_TOPIC } from "./remote.ts"

// The notifier contract on PostgreSQL (127.0.0.1:5432): two notifiers on one fresh database, as two
// coordinators have; `b` behind a TCP proxy when the test cuts its connection.
let db: Promise<TestDatabase> | undefined
testNotifier("postgres", {
  remote: true,
  async pair(proxied) {
    const d = await (db ??= freshDatabase("postgres"))
    const proxy = proxied ? TcpProxy.start(d.connection) : undefined
    const a = new PostgresNotifier({ connection: d.connection })
    const b = new PostgresNotifier({
      connection: proxy ? { ...d.connection, host: "127.0.0.1", port: proxy.port } : d.connection,
    })
    expect(await a.start()).toBe(true)
    expect(await b.start()).toBe(true)
    return { a, b, proxy }
  },
  // Everything one tick notified goes out in one statement, whatever the number of payloads.
  statements: { of: (n: Notifier) => (n as PostgresNotifier).stats.statements, for: () => 1 },
})

describe("postgres notifier payloads", () => {
  test("are below the limit, start with the origin and carry every topic once, in order", () => {
    const topics = Array.from({ length: 500 }, (_, i) => `job:${i}:output`.padEnd(20 + (i % 100), "x"))
    const out = payloads("o1", topics)
    expect(out.length).toBeGreaterThan(1)
    for (const p of out) {
      expect(Buffer.byteLength(p)).toBeLessThanOrEqual(PAYLOAD_MAX_BYTES)
      expect(p.startsWith("o1\n")).toBe(true)
    }
    expect(out.flatMap((p) => topicsOf(p, "other") ?? [])).toEqual(topics)
    expect(payloads("o1", [])).toEqual([])
  })

  test("a payload of its own origin, or one that is not a list of topics, wakes nothing", () => {
    expect(topicsOf("o1\njob:a:output", "o1")).toBeUndefined()
    expect(topicsOf("just text", "o1")).toBeUndefined()
    expect(topicsOf("o2\n\njob:a:output\n" + "y".repeat(200) + "\n*", "o1")).toEqual(["job:a:output", EVERY_TOPIC])
    expect(topicsOf("o2\n" + "x".repeat(9000), "o1")).toBeUndefined()
  })
})

testCoordinatorWakeups("postgres")
