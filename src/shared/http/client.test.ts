import { describe, expect, test } from "bun:test"
import { AuthError, ConflictError, DffmpegError, UnavailableError } from "../errors.ts"
import { retryable } from "./client.ts"

describe("retryable", () => {
  test("retries an unreachable coordinator and its 5xx answers", () => {
    expect(retryable(new UnavailableError("down"))).toBe(true)
    expect(retryable(new DffmpegError("bad gateway", "E_X", 502, 1))).toBe(true)
  })

  test("retries a connection dropped while a streamed body was read (a plain system error)", () => {
    const reset = Object.assign(new Error("The socket connection was closed unexpectedly"), { code: "ECONNRESET" })
    expect(retryable(reset)).toBe(true)
  })

  test("does not retry answers that waiting will not change, nor programming errors", () => {
    expect(retryable(new AuthError("refused"))).toBe(false)
    expect(retryable(new ConflictError("stale epoch"))).toBe(false)
    expect(retryable(new DffmpegError("stdout closed", "E_EPIPE", 499, 1))).toBe(false)
    expect(retryable(new TypeError("x is not a function"))).toBe(false)
    expect(retryable(Object.assign(new Error("odd"), { code: 42 }))).toBe(false)
    expect(retryable(undefined)).toBe(false)
  })
})
