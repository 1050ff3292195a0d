import { describe, expect, test } from "bun:test"
import { collapseLine, createLogReader, tailBytes, tailText } from "./log-text.ts"

const enc = (s: string) => new TextEncoder().encode(s)

describe("log text", () => {
  test.each([
    ["plain line", "plain line"],
    ["frame=1\rframe=2", "frame=2"],
    ["frame=1\rframe=2\r", "frame=2"],
    ["\r\r", ""],
    ["", ""],
    ["a\r\rb\r\r", "b"],
  ])("a line shows its last non-empty \\r segment: %j", (line, shown) => {
    expect(collapseLine(line)).toBe(shown)
  })

  test("a status line rewritten with \\r across many chunks stays one short partial line", () => {
    const r = createLogReader()
    expect(r.push([enc("Input #0\n")])).toEqual({ lines: "Input #0\n", partial: "" })
    for (let i = 0; i < 10_000; i++) r.push([enc(`frame=${i} fps=25\r`)])
    expect(r.push([enc("frame=10000 fps=2")])).toEqual({ lines: "", partial: "frame=10000 fps=2" })
    expect(r.push([enc("5\r\n")])).toEqual({ lines: "frame=10000 fps=25\n", partial: "" })
  })

  test("text continued after a trailing \\r replaces the status line rather than extending it", () => {
    const r = createLogReader()
    r.push([enc("frame=1\r")])
    expect(r.push([enc("[out] done\n")])).toEqual({ lines: "[out] done\n", partial: "" })
  })

  test("CRLF line endings and characters split between chunks", () => {
    const euro = enc("€")
    const r = createLogReader()
    expect(r.push([enc("a\r\nb"), euro.subarray(0, 1)])).toEqual({ lines: "a\n", partial: "b" })
    expect(r.push([euro.subarray(1), enc("\n")])).toEqual({ lines: "b€\n", partial: "" })
  })

  test("a line that never ends is kept bounded", () => {
    const r = createLogReader()
    for (let i = 0; i < 100; i++) r.push([enc("x".repeat(1024))])
    expect(r.push([]).partial.length).toBeLessThanOrEqual(16 * 1024)
  })

  test("a tail keeps the last bytes and starts at a line boundary when older ones were cut", () => {
    const chunks = [enc("first line\nsecond"), enc(" line\nthird line\n")]
    expect(tailBytes(chunks, 1000)).toEqual({ chunks, cut: false })
    const cut = tailBytes(chunks, 20)
    expect(cut.cut).toBe(true)
    expect(Buffer.concat(cut.chunks).toString()).toBe("ond line\nthird line\n")
    expect(tailText(chunks, 20)).toEqual({ lines: "third line\n", partial: "" })
    expect(tailText(chunks)).toEqual({ lines: "first line\nsecond line\nthird line\n", partial: "" })
  })
})
