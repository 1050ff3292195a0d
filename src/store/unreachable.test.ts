import { describe, expect, test } from "bun:test"
import { databaseUnreachable } from "./unreachable.ts"

const err = (message: string, props: Record<string, unknown> = {}) => Object.assign(new Error(message), props)

describe("databaseUnreachable", () => {
  test("the drivers' connection errors", () => {
    for (const e of [
      err("connect ECONNREFUSED 127.0.0.1:5432", { code: "ECONNREFUSED" }),
      err("read ECONNRESET", { code: "ECONNRESET" }),
      err("terminating connection due to administrator command", { code: "57P01" }),
      err("the database system is shutting down", { code: "57P03" }),
      err("Connection terminated unexpectedly"),
      err("Connection terminated due to connection timeout"),
      err("timeout exceeded when trying to connect"),
      err("Connection lost: The server closed the connection.", { code: "PROTOCOL_CONNECTION_LOST", fatal: true }),
      err("Too many connections", { code: "ER_CON_COUNT_ERROR" }),
      err("Can't add new command when connection is in closed state"),
      err("wrapped", { cause: err("x", { code: "ECONNREFUSED" }) }),
      new AggregateError([err("a", { code: "ECONNREFUSED" }), err("b", { code: "ECONNREFUSED" })], "all refused"),
    ])
      expect(databaseUnreachable(e)).toBe(true)
  })

  test("statement errors and bugs are not", () => {
    for (const e of [
      err("duplicate key value violates unique constraint", { code: "23505" }),
      err("Duplicate entry", { code: "ER_DUP_ENTRY", fatal: false }),
      err("syntax error at or near", { code: "42601" }),
      new TypeError("x is undefined"),
      "a string",
      undefined,
    ])
      expect(databaseUnreachable(e)).toBe(false)
  })
})
