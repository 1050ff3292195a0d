import { describe, expect, test } from "bun:test"
import { Cluster } from "../helpers/cluster.ts"
import { SERVER_ENGINES, freshDatabase } from "../helpers/databases.ts"
import { rawFetch, signedHeaders } from "../helpers/signed.ts"

// Two coordinator processes on one database: a signed request captured on its way to one and replayed
// to the other is refused there (the nonce is in the database), as it is at the first (from memory).
// (SQLite has one coordinator: its check is the process's memory, docs/security.md.)
describe.each(SERVER_ENGINES.map((e) => [e]))("%s: two coordinators on one database", (engine) => {
  test("a request replayed to the second coordinator is refused with 401 replay", async () => {
    const database = (await freshDatabase(engine)).config
    await using c = await Cluster.start({ workers: 0, coordinatorConfig: { database } })
    const other = (await c.startSecondCoordinator()).url
    const req = { client: "client1", key: c.key("client1"), method: "GET", path: "/api/v1/jobs", query: "limit=1" }
    const headers = signedHeaders(req)
    const first = await rawFetch(c.url, { ...req, headers })
    expect(first.status).toBe(200)
    const replayed = await rawFetch(other, { ...req, headers })
    expect(replayed.status).toBe(401)
    expect(((await replayed.json()) as { error: { message: string } }).error.message).toContain("nonce already used")
    // And back at the first, from its own memory.
    expect((await rawFetch(c.url, { ...req, headers })).status).toBe(401)
    // A fresh request is served by the second.
    expect((await rawFetch(other, { ...req, headers: signedHeaders(req) })).status).toBe(200)
  }, 60_000)
})
