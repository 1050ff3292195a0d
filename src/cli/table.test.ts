import { describe, expect, test } from "bun:test"
import { ago, bar, clock, duration, fields, progress, table, truncate } from "./table.ts"

test("table aligns columns, leaves the last one unpadded and shows missing cells as -", () => {
  expect(
    table(
      ["ID", "STATUS", "ARGS"],
      [
        ["a", "running", "-i x"],
        ["bbb", null, ""],
      ],
    ),
  ).toBe("ID   STATUS   ARGS\na    running  -i x\nbbb  -        \n")
})

test("duration and clock", () => {
  expect([duration(250), duration(1500), duration(61_000), duration(null)]).toEqual(["250ms", "1.5s", "1m01s", "-"])
  expect([clock(0), clock(31_400), clock(12 * 60_000 + 5000), clock(3_723_000)]).toEqual([
    "0:00",
    "0:31",
    "12:05",
    "1:02:03",
  ])
})

test("ago uses one unit", () => {
  const now = 1_000_000_000
  expect([
    ago(now - 5000, now),
    ago(now - 150_000, now),
    ago(now - 7_200_000, now),
    ago(now - 3 * 86_400_000, now),
    ago(now + 5000, now),
    ago(null, now),
  ]).toEqual(["5s", "2m", "2h", "3d", "0s", "-"])
})

describe("progress", () => {
  const p = { timeMs: 60_000, percent: 42.7, speed: 1.8, etaMs: 31_000 }
  test.each([
    [p, "42% 1.8x eta 0:31"],
    [{ ...p, speed: 12.34 }, "42% 12.3x eta 0:31"],
    [{ ...p, speed: 0.25 }, "42% 0.25x eta 0:31"],
    [{ ...p, etaMs: null }, "42% 1.8x"],
    [{ ...p, speed: null, etaMs: null }, "42%"],
    [{ ...p, percent: null, timeMs: 3_723_000 }, "at 1:02:03 1.8x"],
    [null, "-"],
  ])("%p → %p", (input, out) => {
    expect(progress(input)).toBe(out)
  })
})

test("bar, truncate and fields", () => {
  expect([bar(0, 4, 4), bar(1, 4, 4), bar(4, 4, 4), bar(9, 4, 4), bar(0, 0, 4)]).toEqual([
    "[----]",
    "[#---]",
    "[####]",
    "[####]",
    "[----]",
  ])
  expect([truncate("abcdef", 4), truncate("abc", 4)]).toEqual(["abc…", "abc"])
  expect(
    fields([
      ["id", "x"],
      ["status", null],
      ["worker", "w1"],
    ]),
  ).toBe("id      x\nstatus  -\nworker  w1\n")
})

describe("cells reach the terminal escaped", () => {
  const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/
  const evil = "1\x1b[2J\x1b]0;t\x07\r\nFAKE LINE \u202eevil"

  test("table: control and bidi characters are written visibly, and columns stay aligned", () => {
    const out = table(
      ["ID", "VERSION", "LAST"],
      [
        ["w1", evil, "x"],
        ["w2", "0.1.0", "y"],
      ],
    )
    expect(out).not.toMatch(UNSAFE)
    expect(out.split("\n")).toHaveLength(4)
    expect(out).toContain("1\\x1b[2J\\x1b]0;t\\x07\\r\\nFAKE LINE \\u202eevil  x\n")
    const [h, a, b] = out.split("\n")
    expect(a!.lastIndexOf("x")).toBe(h!.indexOf("LAST"))
    expect(b!.lastIndexOf("y")).toBe(h!.indexOf("LAST"))
  })

  test("fields: values escaped, one line each", () => {
    const out = fields([
      ["version", evil],
      ["id", "w1"],
    ])
    expect(out).not.toMatch(UNSAFE)
    expect(out).toBe("version  1\\x1b[2J\\x1b]0;t\\x07\\r\\nFAKE LINE \\u202eevil\nid       w1\n")
  })
})
