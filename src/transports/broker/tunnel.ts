/**
 * The tunnel's numbers (docs/protocol.md, "Broker transports"). A request is one `req` message; its answer
 * is a `head`, then `data` chunks, then `end` (or `fail`). The sender of the answer keeps at most WINDOW
 * chunks unacknowledged, so a stream costs each side at most WINDOW × CHUNK bytes, however slow the reader.
 * Both ends prove they are alive: the coordinator sends something at least every KEEP_MS (a `keep` when it
 * has nothing else), the requester an `ack` at least every KEEP_MS; silence for STALL_MS (requester) or
 * LEASE_MS (coordinator) ends the stream as a lost connection, which the HTTP client's retry and failover
 * treat as any dropped connection.
 */

/** Largest `data` payload. */
export const CHUNK = 256 * 1024
/** Most unacknowledged chunks of one answer: 1 MiB in flight per stream. */
export const WINDOW = 4
/** How often each side speaks when it has nothing to say. */
export const KEEP_MS = 1000
/** Silence after which a requester gives the answer up (the coordinator or the broker link is gone). */
export const STALL_MS = 3000
/** Silence after which a coordinator ends an answer (the requester is gone). */
export const LEASE_MS = 4000
/**
 * Largest request body carried (one `req` message): above every worker batch (4 MiB) and caller stdin
 * post; `limits.max_body_bytes` above it only matters over HTTP.
 */
export const MAX_REQUEST_BODY = 16 * 1024 * 1024
/** Most answers a coordinator streams at once over a broker, in all and to one identity. */
export const MAX_STREAMS = 4096
export const MAX_STREAMS_PER_IDENTITY = 256
/**
 * Most request-body bytes a coordinator holds at once for requests it is serving over a broker (a body
 * arrives whole with its message): a request past it is answered with `fail`, which its requester takes
 * as a reset connection and retries.
 */
export const MAX_BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024
/** Origin of the URLs the coordinator's app sees for tunneled requests (their path is the real one). */
export const TUNNEL_ORIGIN = "http://broker.invalid"

/** The tunnel's timing, overridable for tests (short waits are cheap to test). */
export interface TunnelTiming {
  keepMs: number
  stallMs: number
  leaseMs: number
}
export const TIMING: TunnelTiming = { keepMs: KEEP_MS, stallMs: STALL_MS, leaseMs: LEASE_MS }
