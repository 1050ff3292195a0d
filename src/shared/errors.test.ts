import { describe, expect, test } from "bun:test"
import {
  AuthError,
  ConfigError,
  ConflictError,
  InvalidError,
  NotFoundError,
  QuotaError,
  ThrottledError,
  TooManyError,
  UnavailableError,
  UsageError,
  fromErrorBody,
} from "./errors.ts"
import { ExitCode } from "./exit-codes.ts"

const body = (code: string | undefined, message: string, details?: unknown) => ({ error: { code, message, details } })

describe("fromErrorBody", () => {
  test("keeps the code and details the coordinator sent", () => {
    const e = fromErrorBody(400, body("E_INVALID", "invalid request body", ["args: too long"]))
    expect(e).toBeInstanceOf(InvalidError)
    expect(e.code).toBe("E_INVALID")
    expect(e.details).toEqual(["args: too long"])
    const c = fromErrorBody(409, body("E_CONFLICT", "job already ended", { status: "completed" }))
    expect(c).toBeInstanceOf(ConflictError)
    expect(c.details).toEqual({ status: "completed" })
  })

  test("the class follows the status, a code it does not know is kept as sent", () => {
    const e = fromErrorBody(500, body("E_INTERNAL", "internal error"))
    expect(e).toBeInstanceOf(UnavailableError)
    expect(e.code).toBe("E_INTERNAL")
    expect(e.exitCode).toBe(ExitCode.UNAVAILABLE)
    const m = fromErrorBody(405, body("E_METHOD", "HEAD is not supported"))
    expect(m).toBeInstanceOf(InvalidError)
    expect(m.code).toBe("E_METHOD")
  })

  test("each status and code gives its typed error", () => {
    expect(fromErrorBody(401, body("E_AUTH", "bad signature"))).toBeInstanceOf(AuthError)
    const forbidden = fromErrorBody(403, body("E_FORBIDDEN", "admins only"))
    expect(forbidden).toBeInstanceOf(AuthError)
    expect(forbidden.status).toBe(403)
    expect(fromErrorBody(404, body("E_NOT_FOUND", "no job"))).toBeInstanceOf(NotFoundError)
    expect(fromErrorBody(429, body("E_TOO_MANY", "too many streams", { limit: 4 }))).toBeInstanceOf(TooManyError)
    expect(fromErrorBody(429, body("E_QUOTA", "queue full"))).toBeInstanceOf(QuotaError)
    const slow = fromErrorBody(429, body("E_THROTTLED", "slow down", { retryAfter: 7 }))
    expect(slow).toBeInstanceOf(ThrottledError)
    expect((slow as ThrottledError).retryAfter).toBe(7)
    const config = fromErrorBody(400, body("E_CONFIG", "bad config", ["paths.X: must be absolute"]))
    expect(config).toBeInstanceOf(ConfigError)
    expect((config as ConfigError).issues).toEqual(["paths.X: must be absolute"])
  })

  test("an unsigned refusal (message only) gets the class's own code and no details", () => {
    const e = fromErrorBody(401, { error: { message: "who are you" } })
    expect(e.code).toBe("E_AUTH")
    expect(e.message).toBe("who are you")
    expect(e.details).toBeUndefined()
    expect(fromErrorBody(502, "").message).toBe("HTTP 502")
  })
})

test("each class names itself, so logs and --json say which error it was", () => {
  expect(new UsageError("x").name).toBe("UsageError")
  expect(new UsageError("x").exitCode).toBe(ExitCode.USAGE)
  expect(new NotFoundError("x").status).toBe(404)
})
