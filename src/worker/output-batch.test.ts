import { describe, expect, test } from "bun:test"
import { decodeFrames, FRAME_HEADER, Kind } from "../shared/protocol/frames.ts"
import { createBatchEncoder, MERGE_BYTES, pieceSize, type OutputPiece } from "./output-batch.ts"

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
