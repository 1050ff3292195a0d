import { describe, expect, test } from "bun:test"
import { Kind, decodeFrames, encodeFrame } from "../protocol/frames.ts"
import { createUploader } from "./uploader.ts"

interface Deferred {
  promise: Promise<void>
  resolve(): void
  reject(err: unknown): void
}

function deferred(): Deferred {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

class Retryable extends Error {}
class Fatal extends Error {}

/**
 * A fake transport: every `send` is recorded and stays in flight until the test settles it with
 * `ack()` / `fail()`; after `ackAll()` every send (current and later) succeeds at once.
 */
function fakeSend() {
  const bodies: Uint8Array[] = []
  /** Bodies whose send succeeded, in order. */
  const delivered: Uint8Array[] = []
  const pending: { body: Uint8Array; d: Deferred }[] = []
  const sendWaiters: (() => void)[] = []
  let auto = false
  return {
    bodies,
    delivered,
    get inFlight() {
      return pending.length
    },
    send(body: Uint8Array): Promise<void> {
      bodies.push(body)
      for (const w of sendWaiters.splice(0)) w()
      if (auto) {
        delivered.push(body)
        return Promise.resolve()
      }
      const d = deferred()
      pending.push({ body, d })
      return d.promise
    },
    /** Resolves once `n` sends in total were made (a retry goes out after a real 0 ms timer). */
    async sent(n: number) {
      while (bodies.length < n) await new Promise<void>((r) => sendWaiters.push(r))
    },
    /** Settles the oldest in-flight send successfully and lets the uploader react. */
    async ack() {
      const p = pending.shift()!
      delivered.push(p.body)
      p.d.resolve()
      await flush()
    },
    async fail(err: unknown) {
      pending.shift()!.d.reject(err)
      await flush()
    },
    ackAll() {
      auto = true
      for (const p of pending.splice(0)) {
        delivered.push(p.body)
        p.d.resolve()
      }
    },
  }
}

/** Lets pending promise callbacks run (the uploader's retry delay is 0 ms, which needs a macrotask). */
const flush = () => new Promise<void>((r) => setImmediate(r))

const frame = (seq: number, size = 3) => encodeFrame(Kind.stdout, seq, new Uint8Array(size).fill(seq & 0xff))
const seqs = (body: Uint8Array) => decodeFrames(body).map((f) => f.seq)

function setup(over: { maxBatch?: number; maxBacklog?: number; linger?: number; lingerBytes?: number } = {}) {
  const t = fakeSend()
  const up = createUploader({
    send: (b) => t.send(b),
    retryable: (err) => err instanceof Retryable,
    delay: () => 0,
    ...over,
  })
  return { t, up }
}

describe("createUploader", () => {
  test("sends the first frame at once, alone", () => {
    const { t, up } = setup()
    const f = frame(1)
    void up.push(f)
    expect(t.bodies).toHaveLength(1)
    expect(t.bodies[0]).toBe(f)
  })

  test("batches frames pushed while a send is in flight into the next single send, in order", async () => {
    const { t, up } = setup()
    await up.push(frame(1))
    for (let s = 2; s <= 6; s++) await up.push(frame(s))
    expect(t.bodies).toHaveLength(1)

    await t.ack()
    expect(t.bodies).toHaveLength(2)
    expect(seqs(t.bodies[1])).toEqual([2, 3, 4, 5, 6])

    await up.push(frame(7))
    await t.ack()
    expect(seqs(t.bodies[2])).toEqual([7])
    await t.ack()
    await up.drain()
    expect(t.bodies).toHaveLength(3)
  })

  test("splits a backlog into batches of at most maxBatch bytes, never splitting a frame", async () => {
    const size = frame(1).length // 16 bytes
    const { t, up } = setup({ maxBatch: size * 2 + 1 })
    for (let s = 1; s <= 6; s++) await up.push(frame(s))
    await up.push(frame(7, 100)) // bigger than maxBatch: goes alone
    const done = up.drain()
    while (t.inFlight) await t.ack()
    await done
    expect(t.bodies.map(seqs)).toEqual([[1], [2, 3], [4, 5], [6], [7]])
  })

  test("retries the same batch after a retryable error, losing and reordering nothing", async () => {
    const { t, up } = setup()
    await up.push(frame(1))
    await up.push(frame(2))
    await up.push(frame(3))
    await t.ack()
    expect(seqs(t.bodies[1])).toEqual([2, 3])

    await t.fail(new Retryable("503"))
    await t.sent(3)
    expect(t.bodies[2]).toEqual(t.bodies[1])

    await t.fail(new Retryable("connection reset"))
    await t.sent(4)
    expect(t.bodies[3]).toEqual(t.bodies[1])
    await t.ack()
    await up.drain()
    expect(t.bodies).toHaveLength(4)
  })

  test("a retry after frames were pushed meanwhile resends the failed frames first, still in order", async () => {
    const { t, up } = setup()
    await up.push(frame(1))
    await up.push(frame(2))
    await t.fail(new Retryable("503")) // frame 1 failed; frame 2 queued meanwhile
    await t.sent(2)
    t.ackAll()
    await up.drain()
    expect(seqs(t.bodies[1])[0]).toBe(1)
    expect(t.delivered.flatMap(seqs)).toEqual([1, 2])
  })

  test("delivers every frame exactly once in order through random failures", async () => {
    const { t, up } = setup()
    let r = 7
    const coin = () => ((r = (r * 1103515245 + 12345) & 0x7fffffff) & 4) === 0
    for (let s = 1; s <= 60; s++) {
      await up.push(frame(s))
      if (s % 3 === 0 && t.inFlight) {
        if (coin()) {
          const before = t.bodies.length
          await t.fail(new Retryable("flaky"))
          await t.sent(before + 1)
        } else await t.ack()
      }
    }
    t.ackAll()
    await up.drain()
    expect(t.bodies.length).toBeGreaterThan(t.delivered.length)
    expect(t.delivered.flatMap(seqs)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
  })

  test("a non-retryable error makes drain() and every later push() reject with it", async () => {
    const { t, up } = setup()
    await up.push(frame(1))
    await up.push(frame(2))
    const drained = up.drain().catch((err: unknown) => err)
    const fatal = new Fatal("401 invalid signature")
    await t.fail(fatal)

    expect(await drained).toBe(fatal)
    await expect(up.drain()).rejects.toBe(fatal)
    await expect(up.push(frame(3))).rejects.toBe(fatal)
    // Nothing more is sent after the failure.
    expect(t.bodies).toHaveLength(1)
  })

  test("linger: small frames on an idle line wait; drain() sends them at once, all in one request", async () => {
    // A linger no test outlives: only drain() can have sent them.
    const { t, up } = setup({ linger: 60_000 })
    await up.push(frame(1))
    await up.push(frame(2))
    await flush()
    expect(t.bodies).toHaveLength(0)
    const done = up.drain()
    expect(t.bodies).toHaveLength(1)
    expect(seqs(t.bodies[0])).toEqual([1, 2])
    await t.ack()
    await done
    up.close()
  })

  test("linger: a batch reaching lingerBytes goes at once, and a busy line never lingers", async () => {
    const size = frame(1).length
    const { t, up } = setup({ linger: 60_000, lingerBytes: size * 2 })
    await up.push(frame(1))
    expect(t.bodies).toHaveLength(0)
    await up.push(frame(2))
    expect(t.bodies).toHaveLength(1)
    expect(seqs(t.bodies[0])).toEqual([1, 2])
    // Pushed while that request is out: sent as soon as it is answered, without drain().
    await up.push(frame(3))
    await t.ack()
    expect(t.bodies).toHaveLength(2)
    expect(seqs(t.bodies[1])).toEqual([3])
    await t.ack()
    up.close()
  })

  test("linger: a small frame goes by itself once the linger is over", async () => {
    const { t, up } = setup({ linger: 1 })
    await up.push(frame(1))
    while (!t.bodies.length) await Bun.sleep(1)
    expect(seqs(t.bodies[0])).toEqual([1])
    await t.ack()
    await up.drain()
  })

  test("drain() resolves at once when nothing was pushed, and after the last ack otherwise", async () => {
    const { t, up } = setup()
    await up.drain()
    await up.push(frame(1))
    let drained = false
    const done = up.drain().then(() => (drained = true))
    await flush()
    expect(drained).toBe(false)
    await t.ack()
    await done
    expect(drained).toBe(true)
  })

  test("backpressure: push() waits while the backlog is at maxBacklog, until a send completes", async () => {
    const size = frame(1).length
    const { t, up } = setup({ maxBacklog: size * 3 })
    await up.push(frame(1))
    await up.push(frame(2))
    let released = false
    const third = up.push(frame(3)).then(() => (released = true))
    await flush()
    // Three frames unacknowledged: the backlog is at the limit.
    expect(released).toBe(false)

    await t.ack() // frame 1 acknowledged, frames 2-3 go out together
    await third
    expect(released).toBe(true)
    expect(seqs(t.bodies[1])).toEqual([2, 3])
    await t.ack()
    await up.drain()
  })

  test("backpressure: push() keeps waiting while an acknowledged send leaves the backlog at the limit", async () => {
    const size = frame(1).length
    const { t, up } = setup({ maxBacklog: size * 2, maxBatch: size })
    await up.push(frame(1))
    let second = false
    let third = false
    const p2 = up.push(frame(2)).then(() => (second = true))
    await flush()
    expect(second).toBe(false)
    const p3 = up.push(frame(3)).then(() => (third = true))
    await flush()
    expect(third).toBe(false)

    await t.ack() // frame 1 done: backlog is frames 2+3 = still at the limit
    expect(second).toBe(false)
    await t.ack() // frame 2 done: backlog is one frame
    await Promise.all([p2, p3])
    expect(second && third).toBe(true)
    await t.ack()
    await up.drain()
    expect(t.bodies.map(seqs)).toEqual([[1], [2], [3]])
  })

  test("a push waiting for room rejects when the upload fails for good", async () => {
    const size = frame(1).length
    const { t, up } = setup({ maxBacklog: size })
    const fatal = new Fatal("403")
    const first = up.push(frame(1)).catch((err: unknown) => err)
    await t.fail(fatal)
    expect(await first).toBe(fatal)
  })

  test("close() stops sending and releases drain() and waiting pushes", async () => {
    const size = frame(1).length
    const { t, up } = setup({ maxBacklog: size * 2 })
    await up.push(frame(1))
    const waiting = up.push(frame(2))
    const drained = up.drain()
    up.close()
    await waiting
    await drained
    await up.push(frame(3)) // ignored
    await t.ack()
    expect(t.bodies).toHaveLength(1)
  })

  test("with an always-succeeding transport, every frame arrives in order", async () => {
    const { t, up } = setup()
    t.ackAll()
    for (let s = 1; s <= 100; s++) await up.push(frame(s))
    await up.drain()
    expect(t.bodies.flatMap(seqs)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
  })
})
