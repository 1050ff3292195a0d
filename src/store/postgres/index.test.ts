import { testStore } from "../../../test/conformance/store.ts"
import { emptiedDatabase } from "../../../test/helpers/databases.ts"
import { createPostgresStore } from "./index.ts"

// The Store contract on PostgreSQL (127.0.0.1:5432), every test on an empty database.
const database = emptiedDatabase("postgres")
testStore("postgres", async () => createPostgresStore({ connection: (await database()).connection }))
