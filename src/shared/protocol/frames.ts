/**
 * Binary framing used on every byte stream of a job (worker → coordinator output uploads,
 * coordinator → client output streams, client → coordinator stdin uploads, coordinator → worker stdin
 * streams). Bytes are carried exactly as read: no text decoding, no line splitting, no base64.
 *
 *   kind: u8 | seq: u64 big-endian | length: u32 big-endian | payload
 *
 * `seq` is the sender's sequence number (worker uploads, stdin uploads) or the coordinator's stream
 * position (streams), so a reader can resume after the last frame it saw.
 */
/** Media type of every framed body and stream (uploads, downlinks, output streams and pages). */
export const FRAMES_MEDIA_TYPE = "application/vnd.dffmpeg.frames"

export const Kind = {
  stdout: 1,
  stderr: 2,
  stdin: 3,
  /** End of the caller's stdin. */
  stdinEnd: 4,
  /** JSON `ExitInfo`: the process ended (worker upload) or the job is terminal (stream). */
  exit: 5,
  /** JSON event (e.g. `{type:"job", id, status}`), informational. */
  event: 6,
  /** Keep-alive on an otherwise silent stream. */
  ping: 7,
  /** JSON `{code, message}`: the stream cannot go on. */
  error: 8,
  /** A signal name (`SIGINT`) the caller received, to deliver to the remote process. */
  signal: 9,
  /** The job was canceled: stop the process (`q`, then SIGTERM, then SIGKILL). */
  cancel: 10,
  /** JSON `ProgressReport` (worker upload, seq 0): how far the process got; never part of the output. */
  progress: 11,
  /** HMAC of the frames since the previous one (coordinator → worker/client streams; shared/auth/response.ts). */
  mac: 12,
  /** The coordinator ended the stream on purpose (sealed by the `mac` after it): nothing was cut off. */
  end: 13,
} as const
export type Kind = (typeof Kind)[keyof typeof Kind]

/** Signals a caller may have delivered to the remote process (payload of a `signal` frame). */
export const RELAYED_SIGNALS: ReadonlySet<string> = new Set([
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
])

export const FRAME_HEADER = 13
/** Largest payload a decoder accepts; bigger frames mean a corrupt or hostile stream. */
export const MAX_FRAME = 16 * 1024 * 1024

export interface Frame {
  kind: number
  seq: number
  data: Uint8Array
  /**
   * SHA-256 of `data` where the receiver already has it: from a body signed by its frames' digests
   * (shared/auth/hmac.ts, `framesBodyHash`), reused to seal the stream that relays it.
   */
  digest?: Uint8Array
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function encodeFrame(kind: number, seq: number, data: Uint8Array = EMPTY): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER + data.length)
  const view = new DataView(out.buffer)
  view.setUint8(0, kind)
  view.setBigUint64(1, BigInt(seq))
  view.setUint32(9, data.length)
  out.set(data, FRAME_HEADER)
  return out
}

export function encodeJsonFrame(kind: number, seq: number, value: unknown): Uint8Array {
  return encodeFrame(kind, seq, enc.encode(JSON.stringify(value)))
}

export function frameJson(frame: Frame): unknown {
  return JSON.parse(dec.decode(frame.data))
}

/** Concatenates frames into one body. */
export function concatFrames(frames: Uint8Array[]): Uint8Array {
  let n = 0
  for (const f of frames) n += f.length
  const out = new Uint8Array(n)
  let o = 0
  for (const f of frames) {
    out.set(f, o)
    o += f.length
  }
  return out
}

export const EMPTY = new Uint8Array(0)

export class FrameError extends Error {}

/** Incremental decoder: feed it chunks as they arrive, get whole frames back. */
export class FrameDecoder {
  private buf: Uint8Array = EMPTY
  private off = 0

  push(chunk: Uint8Array): Frame[] {
    if (this.off < this.buf.length) {
      const rest = this.buf.subarray(this.off)
      const merged = new Uint8Array(rest.length + chunk.length)
      merged.set(rest)
      merged.set(chunk, rest.length)
      this.buf = merged
    } else {
      this.buf = chunk
    }
    this.off = 0
    const out: Frame[] = []
    while (this.buf.length - this.off >= FRAME_HEADER) {
      const view = new DataView(this.buf.buffer, this.buf.byteOffset + this.off, FRAME_HEADER)
      const len = view.getUint32(9)
      if (len > MAX_FRAME) throw new FrameError(`frame of ${len} bytes exceeds the ${MAX_FRAME}-byte limit`)
      if (this.buf.length - this.off < FRAME_HEADER + len) break
      const start = this.off + FRAME_HEADER
      out.push({
        kind: view.getUint8(0),
        seq: Number(view.getBigUint64(1)),
        // A view, not a copy: no buffer is ever written to once pushed (a partial frame is merged into a new
        // one), so a payload the caller keeps stays as it was; copying it cost a full pass over the bytes.
        data: this.buf.subarray(start, start + len),
      })
      this.off = start + len
    }
    return out
  }

  /** Bytes of an incomplete frame still buffered (non-zero at end of stream means truncation). */
  get pending(): number {
    return this.buf.length - this.off
  }
}

/** Decodes a complete body; throws on a truncated or oversized frame. */
export function decodeFrames(body: Uint8Array): Frame[] {
  const d = new FrameDecoder()
  const frames = d.push(body)
  if (d.pending) throw new FrameError("truncated frame")
  return frames
}

/** Reads frames from a byte stream as they arrive. */
export async function* readFrames(stream: ReadableStream<Uint8Array>): AsyncGenerator<Frame> {
  const d = new FrameDecoder()
  for await (const chunk of stream) yield* d.push(chunk)
  if (d.pending) throw new FrameError("stream ended inside a frame")
}
