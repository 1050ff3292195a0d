import { expect, test } from "bun:test"
import { UnavailableError } from "../shared/errors.ts"
import { watch, type Frame } from "./watch.ts"

/** A stream double that records what the view wrote; `frames` are served in order, then the view is stopped. */
function run(frames: (Frame | Error)[], o: { tty?: boolean; json?: boolean } = {}) {
  const out: string[] = []
  const ac = new AbortController()
  let i = 0
  const read = async () => {
    if (i >= frames.length) {
      ac.abort()
      throw new Error("stopped")
    }
    const f = frames[i++]
    if (f instanceof Error) throw f
    return f
  }
  const done = watch({
    intervalMs: 1,
    tty: !!o.tty,
    json: !!o.json,
    read,
    signal: ac.signal,
    out: { write: (s: string) => (out.push(s), true), columns: 20 },
  })
  return done.then(() => out)
}
const frame = (n: number, text = `table ${n}\n`): Frame => ({ title: `t${n}`, text, data: { n } })

test("on a pipe a state is printed once, with a timestamp, and again only when it changed", async () => {
  const out = await run([frame(1), frame(1), frame(2), frame(2)])
  expect(out).toHaveLength(2)
  expect(out[0]).toMatch(/^--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ t1\ntable 1\n\n$/)
  expect(out[1]).toMatch(/ t2\ntable 2\n\n$/)
})

test("--json prints one object per change", async () => {
  const out = await run([frame(1), frame(1), frame(3)], { json: true })
  expect(out.map((l) => JSON.parse(l).n)).toEqual([1, 3])
})

test("a key decides what counts as a change", async () => {
  const out = await run([
    { ...frame(1), key: "same" },
    { ...frame(2), key: "same" },
  ])
  expect(out).toHaveLength(1)
})

test("on a terminal it redraws in place on the alternate screen, cuts long lines, and restores the screen", async () => {
  const out = await run([frame(1, "x".repeat(50) + "\n"), frame(1)], { tty: true })
  expect(out[0]).toBe("\x1b[?1049h\x1b[?25l")
  expect(out[1].startsWith("\x1b[H")).toBe(true)
  expect(out[1]).toContain("x".repeat(19) + "…\x1b[K")
  expect(out[1].endsWith("\x1b[J")).toBe(true)
  expect(out).toHaveLength(4)
  expect(out.at(-1)).toBe("\x1b[?25h\x1b[?1049l")
})

test("an unreachable coordinator is shown and retried; other errors end the view", async () => {
  const out = await run([new UnavailableError("cannot reach the coordinator at http://x: ECONNREFUSED"), frame(1)])
  expect(out[0]).toContain("dffmpeg: cannot reach the coordinator at http://x: ECONNREFUSED (retrying)\n")
  expect(out[1]).toContain("table 1")
  await expect(run([new Error("boom")])).rejects.toThrow("boom")
})

test("what the coordinator said is shown escaped: no control character reaches the terminal", async () => {
  const out = await run([new UnavailableError("gone\x1b]0;pwned\x07\r\nfake line"), frame(1)])
  expect(out[0]).toContain("dffmpeg: gone\\x1b]0;pwned\\x07\\r\\nfake line (retrying)\n")
})
