import * as v from "valibot"
import type { Context } from "hono"
import { stream } from "hono/streaming"
import { InvalidError, NotFoundError } from "../../shared/errors.ts"
import { FRAMES_MEDIA_TYPE, encodeFrame, type Frame } from "../../shared/protocol/frames.ts"
import { issueLines } from "../../shared/protocol/schemas.ts"
import { isName, isUlid } from "../../shared/ids.ts"
import { parseInstant } from "../../shared/time.ts"
import { requireRole, type AuthEnv } from "./middleware/hmac.ts"
import { streamSealer } from "./middleware/sign-response.ts"

/** Parses the verified raw body as JSON against `schema`; 400 with every issue otherwise. */
export function jsonBody<S extends v.GenericSchema>(c: Context<AuthEnv>, schema: S): v.InferOutput<S> {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(c.get("body")))
  } catch {
    throw new InvalidError("request body is not valid JSON")
  }
  const res = v.safeParse(schema, value)
  if (!res.success) throw new InvalidError("invalid request body", issueLines(res.issues))
  return res.output
}

/** A job id from a path: 404 (not 400) when it is not a ULID, as for a job that does not exist. */
export function jobId(raw: string | undefined): string {
  const id = raw ?? ""
  if (!isUlid(id)) throw new NotFoundError(`no job ${id.slice(0, 40)} (job ids are ULIDs)`)
  return id
}

/** The `:id` path parameter as a job id (see `jobId`). */
export function jobIdParam(c: Context<AuthEnv>): string {
  return jobId(c.req.param("id"))
}

/** A worker or user name from a path: 404 naming `what` when it is not a valid name, as for one that does not exist. */
export function nameParam(raw: string | undefined, what: "worker" | "user"): string {
  const name = raw ?? ""
  if (!isName(name)) throw new NotFoundError(`no ${what} ${name.slice(0, 64)}`)
  return name
}

/** The authenticated identity's name, which must be a worker (403 otherwise). */
export function workerName(c: Context<AuthEnv>): string {
  const p = c.get("principal")
  requireRole(p, "worker")
  return p.name
}

/** A non-negative integer query parameter, `fallback` when absent; 400 when malformed. */
export function intQuery(c: Context<AuthEnv>, name: string, fallback?: number): number {
  const raw = c.req.query(name)
  if (raw === undefined || raw === "") {
    if (fallback === undefined) throw new InvalidError(`query parameter ${name} is required`)
    return fallback
  }
  if (!/^\d{1,15}$/.test(raw)) throw new InvalidError(`query parameter ${name} must be a non-negative integer`)
  return Number(raw)
}

/** `?since=`: ms since the epoch or an ISO 8601 date (`shared/time.ts`); undefined when absent, 400 when malformed. */
export function sinceQuery(c: Context<AuthEnv>): number | undefined {
  const raw = c.req.query("since")
  if (raw === undefined || raw === "") return undefined
  const ms = parseInstant(raw)
  if (ms === undefined)
    throw new InvalidError(
      "query parameter since must be milliseconds since the epoch or an ISO 8601 date (2026-11-27 or 2026-11-27T03:00:00Z)",
    )
  return ms
}

/** `?before=`: a job id cursor for paging newest-first listings; 400 when it is not a ULID. */
export function beforeQuery(c: Context<AuthEnv>): string | undefined {
  const raw = c.req.query("before")
  if (raw === undefined || raw === "") return undefined
  if (!isUlid(raw)) throw new InvalidError("query parameter before must be a job id (ULID)")
  return raw
}

/** A non-negative number of seconds (decimals allowed) from the query, `fallback` when absent; 400 when malformed. */
export function secondsQuery(c: Context<AuthEnv>, name: string, fallback: number): number {
  const raw = c.req.query(name)
  if (raw === undefined || raw === "") return fallback
  if (!/^\d{1,9}(\.\d{1,6})?$/.test(raw))
    throw new InvalidError(`query parameter ${name} must be a non-negative number of seconds`)
  return Number(raw)
}

/**
 * A long-lived binary frame stream. The idle timeout of Bun.serve is lifted for this request only, and
 * proxies are told not to buffer it. Each write (whole frames) is sealed with a MAC frame chained from the
 * request's nonce, and a stream that ends on purpose ends with a sealed `end` frame (docs/protocol.md).
 * A write is encoded frames, or one frame to encode (sealed as it is encoded: a large payload is written
 * as it is, not copied).
 */
export function frameStream(
  c: Context<AuthEnv>,
  body: (write: (b: Uint8Array | Frame) => Promise<void>, signal: AbortSignal) => Promise<void>,
) {
  c.env?.server?.timeout(c.req.raw, 0)
  c.header("Content-Type", FRAMES_MEDIA_TYPE)
  c.header("Cache-Control", "no-store")
  c.header("X-Accel-Buffering", "no")
  const sealer = streamSealer(c, FRAMES_MEDIA_TYPE)
  return stream(c, async (s) => {
    const ac = new AbortController()
    s.onAbort(() => ac.abort())
    await body(async (b) => {
      if (s.aborted) return
      if (b instanceof Uint8Array) await s.write(sealer ? sealer.seal(b) : b)
      else if (!sealer) await s.write(encodeFrame(b.kind, b.seq, b.data))
      else for (const piece of sealer.sealFrame(b.kind, b.seq, b.data, b.digest)) await s.write(piece)
    }, ac.signal)
    if (sealer && !s.aborted) await s.write(sealer.end())
  })
}
