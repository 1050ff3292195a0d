import { expect, test } from "bun:test"
import { tailLines, tailOf } from "./tail.ts"

const b = (s: string) => new TextEncoder().encode(s)

test("keeps the last n lines across chunk boundaries", () => {
  expect(tailLines([b("one\ntw"), b("o\nthree\n"), b("four\n")], 2)).toEqual(["three", "four"])
})

test("a partial last line counts; an empty stream has no lines", () => {
  expect(tailLines([b("a\nb")], 5)).toEqual(["a", "b"])
  expect(tailLines([], 5)).toEqual([])
  expect(tailLines([b("a\n")], 0)).toEqual([])
})

test("status lines redrawn with \\r show only their last state", () => {
  expect(tailLines([b("frame=1\rframe=2\rframe=3\r\nvideo:1kB\n")], 10)).toEqual(["frame=3", "video:1kB"])
  expect(tailLines([b("frame=1\rframe=2\r")], 10)).toEqual(["frame=2"])
})

test("keeps empty lines in the middle and decodes a character split between chunks", () => {
  const e = b("é")
  expect(tailLines([b("x\n\n"), e.subarray(0, 1), e.subarray(1), b("\n")], 3)).toEqual(["x", "", "é"])
})

test("tailOf marks the tail cut only when the lines asked for reach into the cut bytes", () => {
  // The data starts mid-line (older bytes were cut): "tail of a" is only the end of a line.
  expect(tailOf([b("tail of a\nb\nc\n")], 3, true)).toEqual({ lines: ["tail of a", "b", "c"], truncated: true })
  expect(tailOf([b("tail of a\nb\nc\n")], 2, true)).toEqual({ lines: ["b", "c"], truncated: false })
  expect(tailOf([b("a\nb\n")], 5, false)).toEqual({ lines: ["a", "b"], truncated: false })
})
