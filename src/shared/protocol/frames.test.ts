import { describe, expect, test } from "bun:test"
import { rng } from "../../../test/helpers/rng.ts"
import {
  FRAME_HEADER,
  FrameDecoder,
  FrameError,
  Kind,
  MAX_FRAME,
  concatFrames,
  decodeFrames,
  encodeFrame,
  encodeJsonFrame,
  frameJson,
  readFrames,
  type Frame,
} from "./frames.ts"

function randomBytes(n: number, rand: () => number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (rand() * 256) | 0
  return out
}

/** Cuts `body` at random points into chunks of 1..maxChunk bytes. */
function randomSplit(body: Uint8Array, rand: () => number, maxChunk: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let o = 0; o < body.length; ) {
    const n = 1 + Math.floor(rand() * maxChunk)
    out.push(body.slice(o, o + n))
    o += n
  }
  return out
}

function header(kind: number, seq: bigint, length: number): Uint8Array {
  const h = new Uint8Array(FRAME_HEADER)
  const view = new DataView(h.buffer)
  view.setUint8(0, kind)
  view.setBigUint64(1, seq)
  view.setUint32(9, length)
  return h
}

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++])
      else controller.close()
    },
  })
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Frame[]> {
  const out: Frame[] = []
  for await (const f of readFrames(stream)) out.push(f)
  return out
}

const kinds = Object.entries(Kind)

/** A mixed sequence of frames of every kind, small enough to feed byte by byte. */
function sampleFrames(rand: () => number): Frame[] {
  const frames: Frame[] = []
  let seq = 1
  for (const [, kind] of kinds)
    for (const size of [0, 1, 12, 13, 14, 200]) frames.push({ kind, seq: seq++, data: randomBytes(size, rand) })
  return frames
}

const encodeAll = (frames: Frame[]) => concatFrames(frames.map((f) => encodeFrame(f.kind, f.seq, f.data)))

describe("encodeFrame / decodeFrames", () => {
  test("the header is kind, big-endian u64 seq and big-endian u32 length, then the payload", () => {
    const f = encodeFrame(Kind.stderr, 0x0102030405, new Uint8Array([0xaa, 0xbb]))
    expect([...f]).toEqual([2, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 2, 0xaa, 0xbb])
  })

  test("an omitted payload encodes as an empty one", () => {
    expect(encodeFrame(Kind.ping, 9)).toEqual(encodeFrame(Kind.ping, 9, new Uint8Array(0)))
    expect(encodeFrame(Kind.ping, 9)).toHaveLength(FRAME_HEADER)
  })

  const rand = rng(1)
  const cases = kinds.flatMap(([name, kind]) =>
    [0, 1, 1000, 65_537, 1024 * 1024].map((size) => ({ name, kind, size, data: randomBytes(size, rand) })),
  )
  test.each(cases)("round-trips a $name frame with a $size-byte random payload", ({ kind, size, data }) => {
    const seq = size * 3 + kind
    const [frame, ...rest] = decodeFrames(encodeFrame(kind, seq, data))
    expect(rest).toHaveLength(0)
    expect(frame.kind).toBe(kind)
    expect(frame.seq).toBe(seq)
    expect(frame.data).toHaveLength(size)
    expect(Buffer.from(frame.data).equals(Buffer.from(data))).toBe(true)
  })

  test.each([0, 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 - 1, 2 ** 40])(
    "carries seq %d exactly",
    (seq) => {
      const [frame] = decodeFrames(encodeFrame(Kind.stdout, seq, new Uint8Array([1])))
      expect(frame.seq).toBe(seq)
    },
  )

  test("decodes several concatenated frames in order", () => {
    const frames = sampleFrames(rng(2))
    expect(decodeFrames(encodeAll(frames))).toEqual(frames)
  })

  test("decodes an empty body as no frames", () => {
    expect(decodeFrames(new Uint8Array(0))).toEqual([])
  })

  test("JSON frames round-trip their value", () => {
    const value = { type: "job", id: "01J", status: "running", nested: [1, "é", null] }
    const [frame] = decodeFrames(encodeJsonFrame(Kind.event, 4, value))
    expect(frame.kind).toBe(Kind.event)
    expect(frameJson(frame)).toEqual(value)
  })

  test.each([
    ["inside the header", 5],
    ["right after the header", FRAME_HEADER],
    ["one byte short of the payload", FRAME_HEADER + 99],
  ])("throws FrameError for a body truncated %s", (_name, keep) => {
    const body = concatFrames([
      encodeFrame(Kind.stdout, 1, new Uint8Array(10)),
      encodeFrame(Kind.stdout, 2, new Uint8Array(100)),
    ])
    expect(() => decodeFrames(body.subarray(0, 23 + keep))).toThrow(FrameError)
  })

  test("throws FrameError for a length header over MAX_FRAME, before the payload arrives", () => {
    expect(() => decodeFrames(header(Kind.stdout, 1n, MAX_FRAME + 1))).toThrow(FrameError)
    expect(() => new FrameDecoder().push(header(Kind.stdout, 1n, 0xffffffff))).toThrow(/exceeds/)
  })

  test("accepts a length header of exactly MAX_FRAME and waits for the payload", () => {
    const d = new FrameDecoder()
    expect(d.push(header(Kind.stdout, 1n, MAX_FRAME))).toEqual([])
    expect(d.pending).toBe(FRAME_HEADER)
  })

  test("decoded payloads are views of the input, not copies (a copy was a full pass over every relayed byte)", () => {
    const body = encodeFrame(Kind.stdout, 1, new Uint8Array([1, 2, 3]))
    const [frame] = decodeFrames(body)
    expect(frame.data.buffer).toBe(body.buffer)
    expect([...frame.data]).toEqual([1, 2, 3])
  })

  test("a frame split across pushes is joined into a new buffer: what the caller pushed is never written to", () => {
    const body = encodeFrame(Kind.stdout, 1, new Uint8Array([1, 2, 3]))
    const copy = body.slice()
    const d = new FrameDecoder()
    d.push(body.subarray(0, 5))
    const [frame] = d.push(body.subarray(5))
    expect(Buffer.from(body).equals(Buffer.from(copy))).toBe(true)
    expect([...frame!.data]).toEqual([1, 2, 3])
  })
})

describe("FrameDecoder", () => {
  test("gives the same frames when fed one byte at a time", () => {
    const frames = sampleFrames(rng(3))
    const body = encodeAll(frames)
    const d = new FrameDecoder()
    const out: Frame[] = []
    for (let i = 0; i < body.length; i++) out.push(...d.push(body.subarray(i, i + 1)))
    expect(out).toEqual(frames)
    expect(d.pending).toBe(0)
  })

  test.each([1, 2, 3, 4, 5])("gives the same frames for random splits (seed %d)", (seed) => {
    const rand = rng(100 + seed)
    const frames = sampleFrames(rand)
    // A large frame in the middle, spanning many chunks.
    frames.splice(10, 0, { kind: Kind.stdout, seq: 2 ** 40, data: randomBytes(300_000, rand) })
    const body = encodeAll(frames)
    const d = new FrameDecoder()
    const out: Frame[] = []
    for (const chunk of randomSplit(body, rand, 64 * 1024)) out.push(...d.push(chunk))
    expect(out).toEqual(frames)
    expect(d.pending).toBe(0)
  })

  test("accepts empty chunks", () => {
    const d = new FrameDecoder()
    const body = encodeFrame(Kind.stdin, 1, new Uint8Array([7]))
    expect(d.push(new Uint8Array(0))).toEqual([])
    expect(d.push(body.subarray(0, 4))).toEqual([])
    expect(d.push(new Uint8Array(0))).toEqual([])
    expect(d.push(body.subarray(4))).toEqual([{ kind: Kind.stdin, seq: 1, data: new Uint8Array([7]) }])
  })

  test("reports the bytes of an incomplete frame as pending", () => {
    const d = new FrameDecoder()
    const body = encodeFrame(Kind.stdout, 1, new Uint8Array(10))
    d.push(body.subarray(0, 7))
    expect(d.pending).toBe(7)
    d.push(body.subarray(7, 20))
    expect(d.pending).toBe(20)
    expect(d.push(body.subarray(20))).toHaveLength(1)
    expect(d.pending).toBe(0)
  })
})

describe("readFrames", () => {
  test("yields every frame of a stream split at random points", async () => {
    const rand = rng(7)
    const frames = sampleFrames(rand)
    frames.push({ kind: Kind.stdout, seq: 999, data: randomBytes(1024 * 1024, rand) })
    frames.push({ kind: Kind.exit, seq: 1000, data: new TextEncoder().encode('{"code":0}') })
    expect(await collect(streamOf(randomSplit(encodeAll(frames), rand, 100_000)))).toEqual(frames)
  })

  test("yields nothing for an empty stream", async () => {
    expect(await collect(streamOf([]))).toEqual([])
  })

  test("yields the complete frames, then throws FrameError when the stream ends inside a frame", async () => {
    const body = concatFrames([
      encodeFrame(Kind.stdout, 1, new Uint8Array([1])),
      encodeFrame(Kind.stdout, 2, new Uint8Array([2, 2])),
    ])
    const seen: Frame[] = []
    let error: unknown
    try {
      for await (const f of readFrames(streamOf([body.subarray(0, body.length - 1)]))) seen.push(f)
    } catch (err) {
      error = err
    }
    expect(seen.map((f) => f.seq)).toEqual([1])
    expect(error).toBeInstanceOf(FrameError)
  })

  test("throws FrameError on an oversized frame in the stream", async () => {
    await expect(collect(streamOf([header(Kind.stdout, 1n, MAX_FRAME + 1)]))).rejects.toThrow(FrameError)
  })
})
