import { describe, expect, test } from "bun:test"
import { clock } from "../shared/time.ts"
import { createStatusLine, formatStatus } from "./status-line.ts"

const progress = (over = {}) => ({
  timeMs: 12_000,
  durationMs: 40_000,
  percent: 30,
  speed: 1.84,
  fps: 50,
  frame: 600,
  etaMs: 15_200,
  at: 0,
  ...over,
})

describe("formatStatus", () => {
  test("says where the job is, and how far once it runs", () => {
    expect(formatStatus({ status: "queued", workerId: null, progress: null })).toBe("dffmpeg: queued")
    expect(formatStatus({ status: "assigned", workerId: "w1", progress: null })).toBe("dffmpeg: assigned on w1")
    expect(formatStatus({ status: "running", workerId: "w1", progress: progress() })).toBe(
      "dffmpeg: running on w1 · 30% · 1.84× · ETA 0:15",
    )
    expect(
      formatStatus({
        status: "running",
        workerId: "w1",
        progress: progress({ percent: null, etaMs: null, speed: null, timeMs: 3_725_000 }),
      }),
    ).toBe("dffmpeg: running on w1 · 1:02:05")
    expect(
      formatStatus({ status: "running", workerId: "w1", progress: progress({ percent: 4.25, speed: 12.5 }) }),
    ).toBe("dffmpeg: running on w1 · 4.3% · 12.5× · ETA 0:15")
  })

  test("clock", () => {
    expect(clock(0)).toBe("0:00")
    expect(clock(59_499)).toBe("0:59")
    expect(clock(61_000)).toBe("1:01")
    expect(clock(3_600_000)).toBe("1:00:00")
    expect(clock(-5)).toBe("0:00")
  })
})

describe("createStatusLine", () => {
  test("draws only after a quiet second, erases before output, and never outgrows the terminal", () => {
    let t = 10_000
    const out: string[] = []
    const line = createStatusLine(
      (s) => out.push(s),
      () => t,
      () => 30,
    )
    line.update({ status: "queued", workerId: null, progress: null })
    expect(out).toEqual(["\r\x1b[Kdffmpeg: queued"])
    line.clear()
    expect(out.at(-1)).toBe("\r\x1b[K")
    // Output just happened: an update is remembered but not drawn yet.
    line.update({ status: "running", workerId: "a-rather-long-worker-name", progress: progress() })
    expect(out.length).toBe(2)
    // Nothing drawn, so nothing to erase.
    line.clear()
    expect(out.length).toBe(2)
    t += 1500
    line.update({ status: "running", workerId: "a-rather-long-worker-name", progress: progress() })
    expect(out.at(-1)).toBe("\r\x1b[Kdffmpeg: running on a-rather…")
    expect(out.at(-1)!.length - 4).toBeLessThanOrEqual(29)
    // The same text is not drawn again.
    const n = out.length
    line.update({ status: "running", workerId: "a-rather-long-worker-name", progress: progress() })
    expect(out.length).toBe(n)
    line.stop()
    expect(out.at(-1)).toBe("\r\x1b[K")
  })

  test("a terminal that reports no size is taken as 80 columns", () => {
    const out: string[] = []
    const line = createStatusLine(
      (s) => out.push(s),
      () => 10_000,
      () => 0,
    )
    line.update({ status: "running", workerId: "w1", progress: progress() })
    expect(out).toEqual(["\r\x1b[Kdffmpeg: running on w1 · 30% · 1.84× · ETA 0:15"])
    line.stop()
  })
})
