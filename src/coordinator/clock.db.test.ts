import { afterAll, describe, expect, test } from "bun:test"
import { createLogger } from "../shared/log.ts"
import { createMysqlStore } from "../store/mysql/index.ts"
import { createPostgresStore } from "../store/postgres/index.ts"
import { SERVER_ENGINES, freshDatabase } from "../../test/helpers/databases.ts"
import type { Store } from "../store/index.ts"
import { createClock } from "./clock.ts"

// On the real servers (same host): the offset to the database's clock is measured and small.
const stores: Store[] = []
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()))
})

describe.each(SERVER_ENGINES.map((e) => [e]))("clock against %s", (engine) => {
  test("the measured offset is under 100 ms, and now() tracks the database's clock", async () => {
    const db = await freshDatabase(engine)
    const store = (engine === "postgres" ? createPostgresStore : createMysqlStore)({ connection: db.connection })
    stores.push(store)
    const clock = createClock({ read: () => store.clock(), log: createLogger({ level: "error" }) })
    const offset = await clock.sync()
    expect(Math.abs(offset)).toBeLessThan(100)
    const t0 = clock.now()
    const server = await store.clock()
    const t1 = clock.now()
    expect(server).toBeGreaterThan(t0 - 100)
    expect(server).toBeLessThan(t1 + 100)
  })
})
