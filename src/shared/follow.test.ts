import { describe, expect, test } from "bun:test"
import { followOutput, type Wake } from "./follow.ts"

interface Row {
  pos: number
}

/** A job's stored output that grows on each `wait`, as a worker's uploads would; it ends after `steps`. */
function job(steps: Row[][], pageSize = 2) {
  const rows: Row[] = []
  let status = "running"
  const waits: number[] = []
  const idles: number[] = []
  return {
    rows,
    waits,
    idles,
    read: async (cursor: number, limit = pageSize) => rows.filter((r) => r.pos > cursor).slice(0, limit),
    live: {
      state: async () => ({ status }),
      ended: (s: { status: string }) => s.status === "completed",
      idle: async (_: unknown, cursor: number) => void idles.push(cursor),
      wait: async () => {
        waits.push(rows.length)
        const next = steps.shift()
        if (next) rows.push(...next)
        // The last bytes and the end are committed together.
        if (!steps.length) status = "completed"
      },
    },
  }
}

test("delivers every row in order, page after page, waits while the job runs and drains what came with its end", async () => {
  const j = job([[{ pos: 4 }], [{ pos: 5 }, { pos: 6 }, { pos: 7 }]])
  j.rows.push({ pos: 1 }, { pos: 2 }, { pos: 3 })
  const got: number[] = []
  const end = await followOutput({
    after: 0,
    read: j.read,
    onRow: async (r) => void got.push(r.pos),
    live: j.live,
    signal: new AbortController().signal,
  })
  expect(got).toEqual([1, 2, 3, 4, 5, 6, 7])
  expect(end).toEqual({ cursor: 7, ended: { status: "completed" } })
  expect(j.idles).toEqual([3, 4])
  expect(j.waits).toEqual([3, 4])
})

test("starts after `after`; without `live` it ends once caught up", async () => {
  const j = job([])
  j.rows.push({ pos: 1 }, { pos: 2 }, { pos: 3 })
  const got: number[] = []
  const end = await followOutput({
    after: 1,
    read: j.read,
    onRow: async (r) => void got.push(r.pos),
    signal: new AbortController().signal,
  })
  expect(got).toEqual([2, 3])
  expect(end).toEqual({ cursor: 3 })
})

test("a job that is gone ends the loop; an abort stops it between rows", async () => {
  const gone = await followOutput({
    after: 0,
    read: async () => [],
    onRow: async () => {},
    live: { state: async () => undefined, ended: () => true, wait: async () => {} },
    signal: new AbortController().signal,
  })
  expect(gone).toEqual({ cursor: 0 })
  const ac = new AbortController()
  const got: number[] = []
  const j = job([])
  j.rows.push({ pos: 1 }, { pos: 2 })
  await followOutput({
    after: 0,
    read: j.read,
    onRow: async (r) => {
      got.push(r.pos)
      ac.abort()
    },
    live: j.live,
    signal: ac.signal,
  })
  expect(got).toEqual([1])
})

test("rows committed with the end between the last read and the state read are still delivered", async () => {
  const rows: Row[] = [{ pos: 1 }]
  let ended = false
  const got: number[] = []
  await followOutput({
    after: 0,
    read: async (cursor: number, limit = 10) => rows.filter((r) => r.pos > cursor).slice(0, limit),
    onRow: async (r) => void got.push(r.pos),
    live: {
      state: async () => {
        // The worker's last upload and its exit land just now.
        if (!ended) rows.push({ pos: 2 }, { pos: 3 })
        ended = true
        return { ended }
      },
      ended: (s) => s.ended,
      wait: async () => {},
    },
    signal: new AbortController().signal,
  })
  expect(got).toEqual([1, 2, 3])
})

describe("told what woke it", () => {
  type State = { status: string }
  /**
   * A job the test moves by hand: each `wait` gives the next of `steps`, which first stores its rows and
   * sets the state (a commit), then is the wake-up a notifier would hand (nothing: a wake-up without a hint).
   */
  function told(steps: { rows?: Row[]; status?: string; wake?: Wake<State> }[]) {
    const rows: Row[] = []
    const counts = { reads: 0, states: 0 }
    let status = "queued"
    const got: number[] = []
    const run = () =>
      followOutput({
        after: 0,
        page: 2,
        read: async (cursor: number, limit = 2) => (counts.reads++, rows.filter((r) => r.pos > cursor).slice(0, limit)),
        onRow: async (r) => void got.push(r.pos),
        live: {
          state: async () => (counts.states++, { status }),
          ended: (s: State) => s.status === "completed",
          wait: async () => {
            const step = steps.shift()!
            rows.push(...(step.rows ?? []))
            status = step.status ?? status
            return step.wake
          },
        },
        signal: new AbortController().signal,
      })
    return { run, counts, got }
  }
  const state = (status: string, output = false) => ({ status, wake: { state: { status }, output } })

  test("a state without output reads nothing; a short page is caught up; an end told before the read needs no drain", async () => {
    const j = told([
      state("assigned"),
      state("running"),
      { rows: [{ pos: 1 }, { pos: 2 }, { pos: 3 }], ...state("completed", true) },
    ])
    expect(await j.run()).toEqual({ cursor: 3, ended: { status: "completed" } })
    expect(j.got).toEqual([1, 2, 3])
    // The first page, then a full page and a short one after the end; the state only at first.
    expect(j.counts).toEqual({ reads: 3, states: 1 })
  })

  test("an end told without output is read past once; output told without a state, or nothing told, reads as before", async () => {
    const ended = told([{ rows: [{ pos: 1 }], ...state("completed") }])
    expect(await ended.run()).toEqual({ cursor: 1, ended: { status: "completed" } })
    expect([ended.got, ended.counts]).toEqual([[1], { reads: 2, states: 1 }])
    for (const wake of [{ output: true }, undefined]) {
      const j = told([{ rows: [{ pos: 1 }], status: "completed", wake }])
      expect(await j.run()).toEqual({ cursor: 1, ended: { status: "completed" } })
      // The state is read after the page, so the end may have come in between: one more read drains.
      expect([j.got, j.counts]).toEqual([[1], { reads: 3, states: 2 }])
    }
  })
})
