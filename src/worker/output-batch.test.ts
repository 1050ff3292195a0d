import { describe, expect, test } from "bun:test"
import { decodeFrames, FRAME_HEADER, Kind } from "../shared/protocol/frames.ts"
import {
  createBatchEncoder,
  createRetainingSender,
  LostOutputError,
  MERGE_BYTES,
  outputSeqs,
  pieceSize,
  type OutputPiece,
} from "./output-batch.ts"

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill)
const out = (data: Uint8Array, progress?: string): OutputPiece => ({
  kind: Kind.stdout,
  data,
  ...(progress ? { progress: new TextEncoder().encode(progress) } : {}),
})
const err = (text: string): OutputPiece => ({ kind: Kind.stderr, data: new TextEncoder().encode(text) })
const text = (d: Uint8Array) => new TextDecoder().decode(d)

describe("createBatchEncoder", () => {
  test("merges consecutive reads of one stream into one frame, in order, numbered from 1", () => {
    const f = decodeFrames(
      createBatchEncoder()([out(bytes(3, 1)), out(bytes(2, 2)), err("a\n"), err("b\n"), out(bytes(1, 3))]),
    )
    expect(f.map((x) => [x.kind, x.seq])).toEqual([
      [Kind.stdout, 1],
      [Kind.stderr, 2],
      [Kind.stdout, 3],
    ])
    expect([...f[0]!.data]).toEqual([1, 1, 1, 2, 2])
    expect(text(f[1]!.data)).toBe("a\nb\n")
  })

  test("numbers go on across batches: a later batch never reuses a number", () => {
    const enc = createBatchEncoder()
    enc([out(bytes(1, 1)), err("x")])
    expect(decodeFrames(enc([out(bytes(1, 2))])).map((x) => x.seq)).toEqual([3])
  })

  test("a merged frame stays within its stream's limit: stdout 1 MiB, stderr 64 KiB", () => {
    const half = MERGE_BYTES[Kind.stdout] / 2
    const f = decodeFrames(createBatchEncoder()([out(bytes(half, 1)), out(bytes(half, 2)), out(bytes(1, 3))]))
    expect(f.map((x) => x.data.length)).toEqual([2 * half, 1])
    const e = 40 * 1024
    const g = decodeFrames(createBatchEncoder()([err("a".repeat(e)), err("b".repeat(e))]))
    expect(g.map((x) => x.data.length)).toEqual([e, e])
  })

  test("only the batch's latest progress report is sent, after the output and before the exit", () => {
    const exit: OutputPiece = { kind: Kind.exit, data: new TextEncoder().encode('{"code":0,"signal":null}') }
    const body = createBatchEncoder()([out(bytes(2, 1), '{"frame":1}'), out(bytes(0, 0), '{"frame":2}'), exit])
    const f = decodeFrames(body)
    expect(f.map((x) => [x.kind, x.seq])).toEqual([
      [Kind.stdout, 1],
      [Kind.progress, 0],
      [Kind.exit, 0],
    ])
    expect(text(f[1]!.data)).toBe('{"frame":2}')
    expect(text(f[2]!.data)).toBe('{"code":0,"signal":null}')
  })

  test("a piece counts its header, bytes and report toward the batch", () => {
    expect(pieceSize(out(bytes(10, 0), "{}"))).toBe(FRAME_HEADER + 12)
  })
})

describe("createRetainingSender", () => {
  /** Three bodies (frames 1, 2–3 and 4) and their encoder, for the next ones. */
  const attempt = () => {
    const enc = createBatchEncoder()
    return { enc, bodies: [enc([out(bytes(2, 1))]), enc([out(bytes(2, 2)), err("e")]), enc([out(bytes(2, 3))])] }
  }

  test("outputSeqs names a body's first and last output frame; none for progress or exit only", () => {
    const { bodies } = attempt()
    expect(outputSeqs(bodies[1]!)).toEqual({ first: 2, last: 3 })
    const exit: OutputPiece = { kind: Kind.exit, data: new TextEncoder().encode("{}") }
    expect(outputSeqs(createBatchEncoder()([exit]))).toBeUndefined()
  })

  test("keeps each body until an answer's durable covers its last frame", async () => {
    const { enc, bodies } = attempt()
    let durable = 0
    const s = createRetainingSender(async () => ({ durable }))
    await s.send(bodies[0]!)
    await s.send(bodies[1]!)
    expect(s.keptBytes).toBe(bodies[0]!.length + bodies[1]!.length)
    durable = 2
    await s.send(bodies[2]!)
    // Body 1 (frame 1) is durable; body 2 ends at frame 3.
    expect(s.keptBytes).toBe(bodies[1]!.length + bodies[2]!.length)
    durable = 5
    await s.send(enc([err("x")]))
    expect(s.keptBytes).toBe(0)
  })

  test("asked to resend from a sequence: the kept bodies from there go again in order, then the body at hand", async () => {
    const { enc, bodies } = attempt()
    const sent: (number | undefined)[] = []
    let lost = false
    const s = createRetainingSender(async (body) => {
      sent.push(outputSeqs(body)?.first)
      if (lost && outputSeqs(body)!.first === 5) {
        lost = false
        return { resend: 2 }
      }
      return { durable: 0 }
    })
    for (const body of bodies) await s.send(body)
    lost = true
    sent.length = 0
    await s.send(enc([out(bytes(1, 4))]))
    expect(sent).toEqual([5, 2, 4, 5])
  })

  test("keeps nothing for a coordinator that does not say what is durable (it holds nothing)", async () => {
    const { bodies } = attempt()
    const s = createRetainingSender(async () => ({}))
    for (const body of bodies) await s.send(body)
    expect(s.keptBytes).toBe(0)
  })

  test("fails when asked for output it no longer keeps, or again for what it just sent", async () => {
    const { bodies } = attempt()
    const gone = createRetainingSender(async (body) => (outputSeqs(body)!.first === 2 ? { resend: 1 } : { durable: 1 }))
    await gone.send(bodies[0]!)
    await expect(gone.send(bodies[1]!)).rejects.toBeInstanceOf(LostOutputError)
    const stuck = createRetainingSender(async (body) =>
      outputSeqs(body)!.first === 1 ? { durable: 0 } : { resend: 1 },
    )
    await stuck.send(bodies[0]!)
    await expect(stuck.send(bodies[1]!)).rejects.toBeInstanceOf(LostOutputError)
  })
})
