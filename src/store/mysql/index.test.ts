import { testStore } from "../../../test/conformance/store.ts"
import { emptiedDatabase } from "../../../test/helpers/databases.ts"
import { createMysqlStore } from "./index.ts"

// The Store contract on MySQL/MariaDB (127.0.0.1:3306), every test on an empty database.
const database = emptiedDatabase("mysql")
testStore("mysql", async () => createMysqlStore({ connection: (await database()).connection }))
