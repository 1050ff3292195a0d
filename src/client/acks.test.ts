import { describe, expect, test } from "bun:test"
import { createAcker } from "./acks.ts"

/** Timers the test fires by hand, and sends it answers by hand: the cadence alone decides. */
function harness(everyBytes = 100, everyMs = 50) {
  const timers: { fn: () => void; ms: number; live: boolean }[] = []
  const sent: number[] = []
  const answers: { ok: () => void; fail: () => void }[] = []
  const acker = createAcker({
    everyBytes,
    everyMs,
    send: (pos) =>
      new Promise<void>((ok, no) => {
        sent.push(pos)
        answers.push({ ok, fail: () => no(new Error("coordinator away")) })
      }),
    setTimer: (fn, ms) => {
      const t = { fn, ms, live: true }
      timers.push(t)
      return t
    },
    clearTimer: (t) => void ((t as { live: boolean }).live = false),
  })
  const live = () => timers.filter((t) => t.live)
  const fireTimer = () => {
    const t = live()[0]!
    t.live = false
    t.fn()
  }
  const answer = async (ok = true) => {
    const a = answers.shift()!
    if (ok) a.ok()
    else a.fail()
    // Let the send's continuations run.
    for (let i = 0; i < 5; i++) await Promise.resolve()
  }
  return { acker, sent, live, fireTimer, answer }
}

describe("acknowledgement cadence", () => {
  test("every everyBytes consumed is acknowledged at once, with the last position taken", () => {
    const h = harness()
    h.acker.taken(1, 60)
    expect(h.sent).toEqual([])
    h.acker.taken(2, 60)
    expect(h.sent).toEqual([2])
  })

  test("a trickle below everyBytes is acknowledged everyMs after its first byte", () => {
    const h = harness()
    h.acker.taken(1, 1)
    h.acker.taken(2, 1)
    expect(h.live().map((t) => t.ms)).toEqual([50])
    expect(h.sent).toEqual([])
    h.fireTimer()
    expect(h.sent).toEqual([2])
  })

  test("one in flight: what is taken meanwhile goes in the next one, after the answer", async () => {
    const h = harness()
    h.acker.taken(1, 150)
    h.acker.taken(2, 150)
    h.acker.taken(3, 10)
    expect(h.sent).toEqual([1])
    await h.answer()
    // 160 bytes taken during the first: over everyBytes, sent at once.
    expect(h.sent).toEqual([1, 3])
  })

  test("a failed acknowledgement is covered by the next one, and flush resends what is owed", async () => {
    const h = harness()
    h.acker.taken(5, 200)
    await h.answer(false)
    expect(h.sent).toEqual([5])
    const done = h.acker.flush(1000)
    for (let i = 0; i < 5; i++) await Promise.resolve()
    expect(h.sent).toEqual([5, 5])
    await h.answer()
    await done
    // Its deadline timer was cleared once it was answered.
    expect(h.live()).toEqual([])
  })

  test("a failed acknowledgement is sent again everyMs later even when nothing more is taken", async () => {
    // A coordinator restarted with its window full of what the caller took sends nothing more until the
    // acknowledgement lost with it arrives: waiting for the next bytes would wait forever.
    const h = harness()
    h.acker.taken(5, 200)
    expect(h.sent).toEqual([5])
    await h.answer(false)
    expect(h.live().map((t) => t.ms)).toEqual([50])
    h.fireTimer()
    expect(h.sent).toEqual([5, 5])
    await h.answer(false)
    h.fireTimer()
    expect(h.sent).toEqual([5, 5, 5])
    await h.answer()
    // Acknowledged: nothing owed, no timer.
    expect(h.live()).toEqual([])
  })

  test("flush gives up at its deadline when the coordinator does not answer", async () => {
    const h = harness()
    h.acker.taken(5, 10)
    let finished = false
    const done = h.acker.flush(1000).then(() => void (finished = true))
    for (let i = 0; i < 5; i++) await Promise.resolve()
    expect(h.sent).toEqual([5])
    expect(finished).toBe(false)
    expect(h.live().map((t) => t.ms)).toEqual([1000])
    h.fireTimer()
    await done
    expect(finished).toBe(true)
  })

  test("flush with nothing owed sends nothing; stop clears the timer and ignores later positions", async () => {
    const h = harness()
    await h.acker.flush(1000)
    expect(h.sent).toEqual([])
    h.acker.taken(1, 1)
    h.acker.stop()
    expect(h.live()).toEqual([])
    h.acker.taken(2, 1000)
    expect(h.sent).toEqual([])
  })

  test("positions only grow: an older or repeated position is not taken again", () => {
    const h = harness()
    h.acker.taken(10, 60)
    h.acker.taken(10, 60)
    h.acker.taken(4, 60)
    expect(h.sent).toEqual([])
  })
})
