import { describe, expect, test } from "bun:test"
import { createLogger } from "../shared/log.ts"
import { CLOCK_WARN_MS, createClock } from "./clock.ts"

/** A host clock that moves only when told, and a database whose clock is `offset` ms ahead, `rtt` ms away. */
function fakes(offset: number, rtt = 4) {
  let t = 1_700_000_000_000
  const reads = { n: 0 }
  const warnings: unknown[][] = []
  const log = Object.assign(createLogger({ level: "error" }), { warn: (...a: unknown[]) => warnings.push(a) })
  const read = async () => {
    reads.n++
    t += rtt / 2
    const db = t + offset
    t += rtt / 2
    return db
  }
  return { local: () => t, advance: (ms: number) => (t += ms), read, reads, log, warnings }
}

describe("coordinator clock", () => {
  test("now is the host's time plus the offset measured at the round trip's midpoint", async () => {
    const f = fakes(250)
    const clock = createClock({ read: f.read, log: f.log as never, local: f.local })
    expect(await clock.sync()).toBe(250)
    expect(clock.now() - f.local()).toBe(250)
    // Three samples the first time.
    expect(f.reads.n).toBe(3)
    expect(f.warnings).toEqual([])
  })

  test("a negative offset, larger than CLOCK_WARN_MS, is used and logged once", async () => {
    const f = fakes(-5_000)
    const clock = createClock({ read: f.read, log: f.log as never, local: f.local, minGapMs: 10 })
    expect(await clock.sync()).toBe(-5_000)
    expect(clock.now()).toBe(f.local() - 5_000)
    expect(f.warnings).toHaveLength(1)
    expect(JSON.stringify(f.warnings[0])).toContain("-5000")
    f.advance(20)
    await clock.sync()
    expect(f.warnings).toHaveLength(1)
    expect(CLOCK_WARN_MS).toBe(1_000)
  })

  test("refreshes are bounded: a sync within the minimum gap reuses the last measure", async () => {
    const f = fakes(10)
    const clock = createClock({ read: f.read, log: f.log as never, local: f.local, minGapMs: 5_000 })
    await clock.sync()
    const after = f.reads.n
    await Promise.all([clock.sync(), clock.sync(), clock.sync()])
    expect(f.reads.n).toBe(after)
    f.advance(5_000)
    await clock.sync()
    expect(f.reads.n).toBe(after + 1)
  })

  test("a sample with a round trip over a second is dropped; a failed read keeps the last offset", async () => {
    const slow = fakes(400, 1_500)
    const clock = createClock({ read: slow.read, log: slow.log as never, local: slow.local })
    expect(await clock.sync()).toBe(0)
    let fail = false
    const f = fakes(300)
    const c2 = createClock({
      read: () => (fail ? Promise.reject(new Error("gone")) : f.read()),
      log: f.log as never,
      local: f.local,
      minGapMs: 1,
    })
    await c2.sync()
    fail = true
    f.advance(10)
    await expect(c2.sync()).rejects.toThrow("gone")
    expect(c2.offset()).toBe(300)
  })
})
