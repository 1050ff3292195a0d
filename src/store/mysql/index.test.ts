import { testStore } from "../../../test/conformance/store.ts"
import { expect, test } from "bun:test"
import { databaseSql, emptiedDatabase, type TestDatabase } from "../../../test/helpers/databases.ts"
import { createMysqlStore } from "./index.ts"

// The Store contract on MySQL/MariaDB (127.0.0.1:3306), every test on an empty database.
const database = emptiedDatabase("mysql")
let last: TestDatabase
testStore(
  "mysql",
  async () => createMysqlStore({ connection: (last = await database()).connection }),
  // Another pool on the same database, as a second coordinator has.
  () => createMysqlStore({ connection: last.connection }),
)

test("no column is left as TEXT (64 KiB on MySQL): every unbounded text column is LONGTEXT once migrated", async () => {
  const db = await database()
  const store = createMysqlStore({ connection: db.connection })
  try {
    await store.migrate()
  } finally {
    await store.close()
  }
  const types = (await databaseSql(
    db,
    `SELECT table_name AS t, column_name AS c, data_type AS type FROM information_schema.columns WHERE table_schema = '${db.name}' AND data_type IN ('text', 'tinytext', 'mediumtext', 'longtext')`,
  )) as { t: string; c: string; type: string }[]
  expect(types.filter((r) => r.type !== "longtext")).toEqual([])
  // The job's arguments, concat lists and the workers' tools, at least.
  expect(types.map((r) => `${r.t}.${r.c}`)).toEqual(
    expect.arrayContaining(["jobs.args", "job_args.args", "job_files.files", "workers.tools"]),
  )
})
