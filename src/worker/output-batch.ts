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

/** The sequence numbers of the output frames (stdout, stderr) in a body: the first and the last, or none. */
export function outputSeqs(body: Uint8Array): { first: number; last: number } | undefined {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let first = 0
  let last = 0
  for (let at = 0; at + FRAME_HEADER <= body.length; at += FRAME_HEADER + view.getUint32(at + 9)) {
    const kind = view.getUint8(at)
    if (kind !== Kind.stdout && kind !== Kind.stderr) continue
    const seq = Number(view.getBigUint64(at + 1))
    first ||= seq
    last = seq
  }
  return first ? { first, last } : undefined
}

/** The coordinator asked for output this worker no longer has (docs/protocol.md, "Held output"). */
export class LostOutputError extends Error {}

/**
 * The sending side of held output (docs/protocol.md, "Held output"): every body sent is kept until an
 * answer's `durable` covers its last frame, so a coordinator that held it in memory and restarted can ask
 * for it again (`resend`: from that sequence): the kept bodies from there go again, in order, then the
 * body at hand. What is kept is bounded by the coordinator's window (it holds only what its caller has
 * not acknowledged) plus one upload.
 */
export function createRetainingSender(upload: (body: Uint8Array) => Promise<{ durable?: number; resend?: number }>): {
  send(body: Uint8Array): Promise<void>
  readonly keptBytes: number
} {
  let kept: { first: number; last: number; body: Uint8Array }[] = []
  // An answer without `durable` comes from a coordinator that holds nothing (an older one): all is durable.
  const settle = (durable: number | undefined) => {
    kept = durable === undefined ? [] : kept.filter((k) => k.last > durable)
  }
  return {
    async send(body) {
      // A resend that does not move past what it asked for means the coordinator cannot take it back.
      let asked = 0
      for (;;) {
        const answer = await upload(body)
        if (answer.resend === undefined) {
          const seqs = outputSeqs(body)
          if (seqs && !kept.some((k) => k.last >= seqs.last)) kept.push({ ...seqs, body })
          return settle(answer.durable)
        }
        const from = answer.resend
        const at = kept.findIndex((k) => k.last >= from)
        if (from <= asked || at < 0 || kept[at]!.first > from)
          throw new LostOutputError(`the coordinator lost the job's output from sequence ${from}, which was not kept`)
        asked = from
        // Answers to these say nothing new (a `resend` for a later one is answered by the next body).
        for (const k of kept.slice(at)) await upload(k.body)
      }
    },
    get keptBytes() {
      return kept.reduce((n, k) => n + k.body.length, 0)
    },
  }
}
