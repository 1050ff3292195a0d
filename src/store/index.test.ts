import { expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parse } from "valibot"
import { fileKeyring } from "../shared/auth/secret-file.ts"
import { Database } from "../shared/config/server-schema.ts"
import { freshDatabase, SERVER_ENGINES } from "../../test/helpers/databases.ts"
import { mappedJob, T0 } from "../../test/helpers/fixtures.ts"
import { createStore } from "./index.ts"

for (const engine of SERVER_ENGINES)
  test(`createStore on ${engine} migrates a fresh database without an onKeys callback (a tool's or a benchmark's store)`, async () => {
    const db = await freshDatabase(engine)
    const dir = mkdtempSync(join(tmpdir(), "dffmpeg-store-"))
    const store = await createStore({
      database: parse(Database, db.config),
      base: dir,
      keys: fileKeyring(join(dir, "secret")),
    })
    try {
      await store.createJob(mappedJob("j1"), T0)
      expect((await store.getJob("j1"))?.status).toBe("queued")
    } finally {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
