import { expect, test } from "bun:test"
import { VAR_NAME, escapeDollar, isVarRef, parseVarRef, splitPrefix, unescapeDollar, varOf } from "./vars.ts"

test("names: a letter or '_', then up to 63 letters, digits or '_'", () => {
  for (const ok of ["Movies", "_x", "a1_b", "M".repeat(64)]) expect(VAR_NAME.test(ok)).toBe(true)
  for (const bad of ["", "1a", "a-b", "a b", "a/b", "M".repeat(65), "Mé"]) expect(VAR_NAME.test(bad)).toBe(false)
})

test("references: $Name or $Name/rest; $$ escapes a literal $", () => {
  expect(parseVarRef("$Movies")).toEqual({ name: "Movies", rest: "" })
  expect(parseVarRef("$Movies/a b\n.mkv")).toEqual({ name: "Movies", rest: "/a b\n.mkv" })
  expect(parseVarRef("$Mo-vies/a")).toBeUndefined()
  expect(parseVarRef("$")).toBeUndefined()
  expect(parseVarRef("Movies/a")).toBeUndefined()
  expect(isVarRef("$Movies")).toBe(true)
  expect(isVarRef("$$Movies")).toBe(false)
  expect(isVarRef("/media")).toBe(false)
  expect(escapeDollar("$5 off")).toBe("$$5 off")
  expect(escapeDollar("plain")).toBe("plain")
  expect(unescapeDollar(escapeDollar("$5 off"))).toBe("$5 off")
})

test("an argument's variable, after an optional file: prefix", () => {
  expect(splitPrefix("file:$M/a")).toEqual({ prefix: "file:", value: "$M/a" })
  expect(varOf("file:$Movies/a.mkv")).toBe("Movies")
  expect(varOf("$Movies")).toBe("Movies")
  expect(varOf("$$Movies/a")).toBeUndefined()
  expect(varOf("-i")).toBeUndefined()
  // A malformed reference still names something, which no declared variable can match.
  expect(varOf("$Mo vies/a")).toBe("Mo vies")
})
