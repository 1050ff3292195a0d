import { testStore } from "../../../test/conformance/store.ts"
import { emptiedDatabase, type TestDatabase } from "../../../test/helpers/databases.ts"
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
