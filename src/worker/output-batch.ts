import { FRAME_HEADER, Kind } from "../shared/protocol/frames.ts"

/**
 * What the runner queues for upload: bytes read from one of the process's pipes (possibly none), the
 * progress report they carried, or the exit report. JSON payloads are already encoded.
 */
export interface OutputPiece {
  kind: typeof Kind.stdout | typeof Kind.stderr | typeof Kind.exit
  data: Uint8Array
  /** A progress report (JSON) read with these bytes: it goes in the same request. */
  progress?: Uint8Array
}

/**
 * Largest frame consecutive reads of one pipe are merged into. Every frame becomes a row on the
 * coordinator, a sealed chunk of the caller's stream and a write on the caller's side, so a pipe read in
 * 32–64 KiB pieces costs per piece at every hop; stdout goes in 1 MiB frames. Stderr stays in 64 KiB
 * ones: the coordinator keeps a stderr tail of whole rows (`relay.stderr_tail_kb`), which a row larger
 * than the tail would empty.
 */
export const MERGE_BYTES = { [Kind.stdout]: 1024 * 1024, [Kind.stderr]: 64 * 1024 } as const

/** Bytes a piece counts for in a batch and in the uploader's backlog. */
export const pieceSize = (p: OutputPiece) => FRAME_HEADER + p.data.length + (p.progress?.length ?? 0)

/**
 * The upload body encoder of one attempt: each batch's output in frames numbered on from the previous
 * batch's (1, 2, 3…), consecutive bytes of one stream merged up to `MERGE_BYTES`, then the batch's latest
 * progress report (the coordinator keeps only that one), then the exit frame if the batch ends the run.
 * Every payload is copied once, straight into the body. Call it once per batch: the uploader retries a
 * failed send with the same body, so a re-sent frame keeps its number.
 */
export function createBatchEncoder(): (pieces: OutputPiece[]) => Uint8Array {
  let seq = 0
  return (pieces) => {
    const frames: { kind: number; seq: number; parts: Uint8Array[]; length: number }[] = []
    let progress: Uint8Array | undefined
    let exit: Uint8Array | undefined
    for (const p of pieces) {
      if (p.progress) progress = p.progress
      if (p.kind === Kind.exit) exit = p.data
      else if (p.data.length) {
        const last = frames.at(-1)
        if (last && last.kind === p.kind && last.length + p.data.length <= MERGE_BYTES[p.kind]) {
          last.parts.push(p.data)
          last.length += p.data.length
        } else frames.push({ kind: p.kind, seq: ++seq, parts: [p.data], length: p.data.length })
      }
    }
    if (progress) frames.push({ kind: Kind.progress, seq: 0, parts: [progress], length: progress.length })
    if (exit) frames.push({ kind: Kind.exit, seq: 0, parts: [exit], length: exit.length })
    const out = new Uint8Array(frames.reduce((n, f) => n + FRAME_HEADER + f.length, 0))
    const view = new DataView(out.buffer)
    let at = 0
    for (const f of frames) {
      view.setUint8(at, f.kind)
      view.setBigUint64(at + 1, BigInt(f.seq))
      view.setUint32(at + 9, f.length)
      at += FRAME_HEADER
      for (const part of f.parts) {
        out.set(part, at)
        at += part.length
      }
    }
    return out
  }
}
