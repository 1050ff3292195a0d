import { describe, expect, test } from "bun:test"
import { parseInstant, parseSince } from "./time.ts"

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0)

describe("parseInstant", () => {
  test.each([
    ["1700000000000", 1_700_000_000_000],
    ["0", 0],
    ["2026-11-27", Date.UTC(2026, 10, 27)],
    ["2026-11-27T03:04:05Z", Date.UTC(2026, 10, 27, 3, 4, 5)],
    ["2026-11-27 03:04:05.250Z", Date.UTC(2026, 10, 27, 3, 4, 5, 250)],
    ["2026-11-27T03:04:05+01:00", Date.UTC(2026, 10, 27, 2, 4, 5)],
    ["2024-02-29", Date.UTC(2024, 1, 29)],
  ])("%p is %p", (s, ms) => {
    expect(parseInstant(s)).toBe(ms)
  })

  test("a date-time without offset is local time", () => {
    expect(parseInstant("2026-11-27T03:04")).toBe(new Date(2026, 10, 27, 3, 4).getTime())
  })

  test.each([
    "",
    "yesterday",
    "-5",
    "1.5",
    "2026-13-01",
    "2026-02-30",
    "2025-02-29",
    "2026-11-27T24:00",
    "2026-11-27T03:60",
    "March 7",
    "2026/11/27",
    "2026-11-27T03:04:05 GMT",
  ])("%p is refused", (s) => {
    expect(parseInstant(s)).toBeUndefined()
  })
})

describe("parseSince", () => {
  test.each([
    ["90s", NOW - 90_000],
    ["10m", NOW - 600_000],
    ["2h", NOW - 7_200_000],
    ["7d", NOW - 7 * 86_400_000],
    ["1w", NOW - 7 * 86_400_000],
    ["0m", NOW],
    ["2026-11-27", Date.UTC(2026, 10, 27)],
  ])("%p is %p", (s, ms) => {
    expect(parseSince(s, NOW)).toBe(ms)
  })

  test.each(["1y", "10 m", "m", "-1h", "1.5h", "10M"])("%p is refused", (s) => {
    expect(parseSince(s, NOW)).toBeUndefined()
  })
})
