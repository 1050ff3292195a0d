import { describe, expect, test } from "bun:test"
import { NotFoundError } from "../../shared/errors.ts"
import { jobId, nameParam } from "./_util.ts"

describe("path parameters", () => {
  test("a job id must be a ULID; anything else is 404 like a job that does not exist", () => {
    expect(jobId("01M8DFWF4PCGSZBYEVT8TNJN46")).toBe("01M8DFWF4PCGSZBYEVT8TNJN46")
    for (const bad of [undefined, "", "01m8dfwf4pcgszbyevt8tnjn46", "../../etc/passwd", "x".repeat(100)]) {
      expect(() => jobId(bad)).toThrow(NotFoundError)
    }
    expect(() => jobId("x".repeat(100))).toThrow(`no job ${"x".repeat(40)} (job ids are ULIDs)`)
  })

  test("worker and user names follow the identity rule; others are 404 naming what was asked for", () => {
    expect(nameParam("w1", "worker")).toBe("w1")
    expect(nameParam("alice_2-b", "user")).toBe("alice_2-b")
    expect(() => nameParam("../w1", "worker")).toThrow("no worker ../w1")
    expect(() => nameParam("a.b", "user")).toThrow("no user a.b")
    expect(() => nameParam(undefined, "user")).toThrow(NotFoundError)
    expect(() => nameParam("n".repeat(80), "worker")).toThrow(`no worker ${"n".repeat(64)}`)
  })
})
