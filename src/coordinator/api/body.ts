import { InvalidError, TooLargeError, UnavailableError } from "../../shared/errors.ts"
import type { CoordinatorConfig } from "../../shared/config/server-schema.ts"
import { FILES_BYTES_MAX } from "../../shared/paths/contents.ts"

type Limits = CoordinatorConfig["limits"]

/** A route's body cap, and what to tell a client that went over it (which setting decides it). */
export interface BodyCap {
  bytes: number
  /** The config key the cap comes from, named in the 413 message. */
  key: string
}

/**
 * Most bytes of a worker registration. It now carries its binaries' tools (every encoder, decoder,
 * filter and format name: ~35 KB for Debian's ffmpeg and ffprobe together, re-sent every registration
 * interval), which every scheduling pass, submission and janitor pass reads back from the store. Under
 * the 1 MiB JSON cap a worker could register ~1 MB of names and make each of those reads parse it (6 ms
 * apiece); this cap keeps seven times the room of a full build pair and a quarter of that cost.
 */
export const REGISTRATION_BYTES = 256 * 1024

/**
 * Body caps by route. Frame uploads (worker output, caller stdin) get `limits.max_body_bytes`; every
 * other signed route carries JSON, whose largest legitimate body is a submission: twice its argument
 * budget (JSON escaping of quotes and backslashes) plus room for the other fields, at least 1 MiB.
 */
export function bodyCaps(limits: Limits): {
  upload: BodyCap
  json: BodyCap
  of(method: string, path: string): BodyCap
} {
  const upload = { bytes: limits.max_body_bytes, key: "limits.max_body_bytes" }
  const json = { bytes: Math.max(1024 * 1024, 2 * limits.max_args_bytes + 64 * 1024), key: "limits.max_args_bytes" }
  // A submission also carries its concat lists and filter scripts: at most FILES_BYTES_MAX, and a quarter
  // more for their JSON escaping (text lists grow by their line ends' `\n`, a few per cent).
  const submit = { bytes: json.bytes + FILES_BYTES_MAX + FILES_BYTES_MAX / 4, key: json.key }
  const registration = { bytes: REGISTRATION_BYTES, key: "the fixed registration limit (REGISTRATION_BYTES)" }
  return {
    upload,
    json,
    of: (method, path) =>
      method === "POST" && /^\/api\/v1\/jobs\/[^/]+\/(output|stdin)$/.test(path)
        ? upload
        : method === "POST" && path === "/api/v1/jobs"
          ? submit
          : method === "POST" && path === "/api/v1/worker/register"
            ? registration
            : json,
  }
}

function tooLarge(cap: BodyCap, declared?: number): TooLargeError {
  const what = declared === undefined ? "request body is over" : `request body of ${declared} bytes is over`
  return new TooLargeError(`${what} this route's limit of ${cap.bytes} bytes (set by ${cap.key})`)
}

/**
 * 413 when the declared Content-Length is over the cap, before anything is read; 400 when it is not
 * a number. A missing header (a chunked body) is counted while it streams, by `readCapped`.
 */
export function checkDeclaredLength(req: Request, cap: BodyCap): number | undefined {
  const raw = req.headers.get("content-length")
  if (raw === null) return undefined
  if (!/^\d{1,16}$/.test(raw.trim())) throw new InvalidError("Content-Length must be a number of bytes")
  const declared = Number(raw)
  if (declared > cap.bytes) throw tooLarge(cap, declared)
  return declared
}

const busy = () =>
  new UnavailableError(
    "the coordinator is reading too many request bodies at once (limits.max_unverified_body_bytes); retry shortly",
  )

/**
 * Bytes that all requests together may hold while their bodies are read, before anyone knows whether
 * they are signed by the identity they name: per request the route's cap bounds it, this bounds the sum.
 */
export interface BodyBudget {
  /** Takes `n` bytes; false (taking nothing) when that would pass the budget. */
  take(n: number): boolean
  give(n: number): void
  readonly used: number
  /** Nothing left: a new metered body is refused before any of it is read. */
  readonly full: boolean
}

/**
 * Bodies declared this small are never metered: heartbeats, submissions, small output batches. A
 * budget filled by large bodies must not stop the small requests that keep workers and jobs alive.
 */
export const UNMETERED_BYTES = 64 * 1024

export function createBodyBudget(bytes: number): BodyBudget {
  let used = 0
  return {
    take(n) {
      if (used + n > bytes) return false
      used += n
      return true
    },
    give(n) {
      used = Math.max(0, used - n)
    },
    get used() {
      return used
    },
    get full() {
      return used >= bytes
    },
  }
}

/**
 * Reads a request body as it streams, never holding more than `cap.bytes`: past it the stream is
 * canceled and the request refused with 413. `onChunk` sees every chunk in order (to hash the body
 * while it arrives). A body that breaks off (the client went away) is a 400. With a `budget`, a body
 * over UNMETERED_BYTES (or of unknown length) is charged what has arrived while it is read, and gives
 * it back once it has been read or refused: when the budget is spent it is refused with 503, which
 * clients retry.
 */
export async function readCapped(
  req: Request,
  cap: BodyCap,
  onChunk?: (chunk: Uint8Array) => void,
  budget?: BodyBudget,
): Promise<Uint8Array> {
  const declared = checkDeclaredLength(req, cap)
  // Metered: bodies that are large or of unknown length (small ones, which keep workers and jobs alive,
  // never wait on large ones). A declared length is reserved whole before anything is read: Bun holds a
  // body back until it is read, so a refusal here costs no memory. A slow sender can hold its
  // reservation until the idle timeout, which delays large uploads (retried) but nothing small.
  const metered = budget && !(declared !== undefined && declared <= UNMETERED_BYTES) ? budget : undefined
  let taken = 0
  if (metered && declared) {
    if (!metered.take(declared)) throw busy()
    taken = declared
  } else if (metered?.full) throw busy()
  const chunks: Uint8Array[] = []
  let total = 0
  try {
    if (!req.body) return new Uint8Array(0)
    if (declared !== undefined) {
      // HTTP/1.1 framing ends the body at its declared length, within the cap: Bun reads it into one
      // buffer natively (a 4 MiB upload is not gathered from 64 KiB pieces and copied again).
      const whole = await req.bytes().catch(() => {
        throw new InvalidError("the request body ended early (connection closed while it was sent)")
      })
      if (whole.length > cap.bytes) throw tooLarge(cap)
      onChunk?.(whole)
      return whole
    }
    const reader = req.body.getReader()
    try {
      for (;;) {
        let next: Awaited<ReturnType<typeof reader.read>>
        try {
          next = await reader.read()
        } catch {
          throw new InvalidError("the request body ended early (connection closed while it was sent)")
        }
        if (next.done) break
        total += next.value.length
        if (total > cap.bytes) {
          void reader.cancel().catch(() => {})
          throw tooLarge(cap)
        }
        if (metered && total > taken) {
          if (!metered.take(total - taken)) {
            void reader.cancel().catch(() => {})
            throw busy()
          }
          taken = total
        }
        onChunk?.(next.value)
        chunks.push(next.value)
      }
    } finally {
      reader.releaseLock()
    }
  } finally {
    metered?.give(taken)
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total)
}
