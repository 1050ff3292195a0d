import { describe, expect, test } from "bun:test"
import { storePaths } from "../index.ts"

describe("storePaths (sqlite)", () => {
  const sqlite = (path: string, secret_key_file?: string) => ({
    database: { engine: "sqlite" as const, path },
    ...(secret_key_file ? { secret_key_file } : {}),
  })

  test("a relative file is resolved against the config's directory, with its secret beside it", () => {
    expect(storePaths(sqlite("./data/dffmpeg.db"), "/etc/dffmpeg")).toEqual({
      database: "/etc/dffmpeg/data/dffmpeg.db",
      secret: "/etc/dffmpeg/data/dffmpeg.db.secret",
    })
  })

  test("an absolute file stays; secret_key_file is resolved against the config's directory too", () => {
    expect(storePaths(sqlite("/var/lib/dffmpeg/db", "keys/secret"), "/etc/dffmpeg")).toEqual({
      database: "/var/lib/dffmpeg/db",
      secret: "/etc/dffmpeg/keys/secret",
    })
  })

  test("an in-memory database has no secret file unless one is named", () => {
    expect(storePaths(sqlite(":memory:"), "/etc/dffmpeg")).toEqual({ database: ":memory:" })
    expect(storePaths(sqlite(":memory:", "/k"), "/etc/dffmpeg")).toEqual({ database: ":memory:", secret: "/k" })
  })
})
