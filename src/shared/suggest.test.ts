import { expect, test } from "bun:test"
import { closest, didYouMean, editDistance } from "./suggest.ts"

test("edit distance counts an adjacent swap as one edit", () => {
  expect(editDistance("hots", "host")).toBe(1)
  expect(editDistance("cordinator", "coordinator")).toBe(1)
  expect(editDistance("kitten", "sitting")).toBe(3)
  expect(editDistance("", "abc")).toBe(3)
  expect(editDistance("same", "same")).toBe(0)
})

test("closest: one edit for short names, two from five characters, a unique prefix of three or more", () => {
  const commands = ["coordinator", "worker", "client", "admin", "version", "completion", "config"]
  expect(closest("cordinator", commands)).toBe("coordinator")
  expect(closest("wroker", commands)).toBe("worker")
  expect(closest("ADMN", commands)).toBe("admin")
  expect(closest("coord", commands)).toBe("coordinator")
  // "co" is the start of three names: no guess.
  expect(closest("co", commands)).toBeUndefined()
  expect(closest("conf", commands)).toBe("config")
  expect(closest("xyzzy", commands)).toBeUndefined()
  // Two edits on a four-letter word is a different word.
  expect(closest("hist", ["host", "port"])).toBe("host")
  expect(closest("hxxt", ["host"])).toBeUndefined()
  // The name itself is not a suggestion for itself.
  expect(closest("host", ["host"])).toBeUndefined()
})

test("didYouMean writes the suggestion its way, or nothing", () => {
  expect(didYouMean("hots", ["host", "port"])).toBe('; did you mean "host"?')
  expect(didYouMean("jsno", ["json"], (f) => `--${f}`)).toBe("; did you mean --json?")
  expect(didYouMean("qqqq", ["json"])).toBe("")
})
