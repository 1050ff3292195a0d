import { afterAll, expect, test } from "bun:test"
import { chmodSync } from "node:fs"
import { memoryKeyring } from "../../shared/auth/keyring.ts"
import { tempDir } from "../../../test/helpers/fixtures.ts"
import { createStore } from "../index.ts"

const tmp = tempDir("sqlite")
afterAll(tmp.remove)
// One secret for every opening: the file's keys stay readable.
const keys = memoryKeyring()

const open = async (path: string) => {
  const warnings: string[] = []
  const store = await createStore({
    database: { engine: "sqlite", path },
    keys,
    onWarning: (m) => void warnings.push(m),
  })
  await store.close()
  return warnings
}

test("opening a database every user can read warns with the fix; a private one, or one in memory, does not", async () => {
  const path = tmp.fresh()
  expect(await open(path)).toEqual([])
  chmodSync(path, 0o644)
  expect(await open(path)).toEqual([
    `database ${path} is readable by every user (mode 0644); make it private: chmod 600 ${path}`,
  ])
  chmodSync(path, 0o640)
  expect(await open(path)).toEqual([])
  expect(await open(":memory:")).toEqual([])
})
