import { expect, test } from "bun:test"
import { errorExit } from "./error-exit.ts"
import {
  AuthError,
  ConfigError,
  InvalidError,
  JobFailedError,
  NotFoundError,
  OutputLostError,
  UnavailableError,
  UsageError,
} from "./errors.ts"
import { ExitCode, PROXY_FAILURE } from "./exit-codes.ts"

test("command mode: the error's own exit code, its issues one per line, a hint for usage errors", () => {
  expect(errorExit(new NotFoundError("no job 01J"), "command")).toEqual({
    code: ExitCode.FAILURE,
    line: "dffmpeg: no job 01J",
    more: [],
  })
  expect(errorExit(new ConfigError("invalid config", ["port: too big", "host: empty"]), "command")).toEqual({
    code: ExitCode.CONFIG,
    line: "dffmpeg: invalid config",
    more: ["  ↳ port: too big", "  ↳ host: empty"],
  })
  expect(errorExit(new UsageError("unknown option --x"), "command")).toEqual({
    code: ExitCode.USAGE,
    line: "dffmpeg: unknown option --x",
    more: ["run with --help for usage"],
  })
  expect(errorExit(new UnavailableError("cannot reach"), "command").code).toBe(ExitCode.UNAVAILABLE)
  expect(errorExit(new AuthError("unknown client"), "command")).toEqual({
    code: ExitCode.AUTH,
    line: "dffmpeg: unknown client",
    more: [],
  })
})

test("proxy mode: always one line and PROXY_FAILURE, issues on that line, auth failures say what to check", () => {
  expect(errorExit(new ConfigError("invalid config", ["port: too big", "host: empty"]), "proxy")).toEqual({
    code: PROXY_FAILURE,
    line: "dffmpeg: invalid config: port: too big; host: empty",
    more: [],
  })
  expect(errorExit(new InvalidError("invalid request body", ["args.0: too long"]), "proxy").line).toBe(
    "dffmpeg: invalid request body: args.0: too long",
  )
  expect(errorExit(new AuthError("bad signature"), "proxy").line).toBe(
    "dffmpeg: the coordinator refused our credentials (bad signature); check client_id and hmac_key",
  )
  expect(errorExit(new AuthError("clients only", 403), "proxy").line).toBe("dffmpeg: not allowed: clients only")
  expect(errorExit(new JobFailedError("job 01J failed: worker lost"), "proxy").code).toBe(PROXY_FAILURE)
  // A job that ran keeps ffmpeg's own failure code after its one line.
  expect(errorExit(new JobFailedError("job 01J failed: files lost", 8), "proxy")).toEqual({
    code: 8,
    line: "dffmpeg: job 01J failed: files lost",
    more: [],
  })
  expect(errorExit(new OutputLostError("the reader closed our standard output"), "proxy").code).toBe(PROXY_FAILURE)
})

test("anything else is an unexpected error: a stack for commands, one line for the proxy", () => {
  const err = new Error("boom")
  const cmd = errorExit(err, "command")
  expect(cmd.code).toBe(ExitCode.FAILURE)
  // The stack one frame a line, as `dffmpeg` printed it before the error edge was shared.
  expect(cmd.line).toBe("dffmpeg: unexpected error: Error: boom")
  expect(cmd.more.length).toBeGreaterThan(0)
  for (const frame of cmd.more) expect(frame).toStartWith("    at ")
  expect(errorExit(err, "proxy")).toEqual({ code: PROXY_FAILURE, line: "dffmpeg: unexpected error: boom", more: [] })
  expect(errorExit("a string", "proxy").line).toBe("dffmpeg: unexpected error: a string")
})

test("every piece of text is escaped: nothing a coordinator sent reaches the terminal raw", () => {
  const hostile = new InvalidError("bad\x1b[31m\r\nfake line", ["issue\u202e\x07"])
  for (const edge of ["proxy", "command"] as const) {
    const { line, more } = errorExit(hostile, edge)
    for (const l of [line, ...more]) expect(l).not.toMatch(/[\x00-\x1f\u202e]/)
  }
  expect(errorExit(hostile, "command").more).toEqual(["  ↳ issue\\u202e\\x07"])
  const bug = new TypeError("bad\x1b[31m\r\nfake line")
  const { line, more } = errorExit(bug, "command")
  expect(line).toBe("dffmpeg: unexpected error: TypeError: bad\\x1b[31m\\r\\nfake line")
  for (const l of more) expect(l).not.toMatch(/[\x00-\x1f\u202e]/)
})
