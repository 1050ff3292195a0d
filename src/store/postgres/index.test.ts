import { testStore } from "../../../test/conformance/store.ts"
import { emptiedDatabase, type TestDatabase } from "../../../test/helpers/databases.ts"
import { createPostgresStore } from "./index.ts"

// The Store contract on PostgreSQL (127.0.0.1:5432), every test on an empty database.
const database = emptiedDatabase("postgres")
let last: TestDatabase
testStore(
  "postgres",
  async () => createPostgresStore({ connection: (last = await database()).connection }),
  // Another pool on the same database, as a second coordinator has.
  () => createPostgresStore({ connection: last.connection }),
)
