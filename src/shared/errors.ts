import { ExitCode } from "./exit-codes.ts"

/** Base of every error dffmpeg throws on purpose; mapped once at each edge (HTTP: app.onError, caller: errorExit). */
export class DffmpegError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
    readonly exitCode: number,
    readonly details?: unknown,
  ) {
    super(message)
    this.name = new.target.name
  }
}

/** A class of error with a fixed code, HTTP status and exit code; `details` optional. */
function kind(code: string, status: number, exitCode: number) {
  return class extends DffmpegError {
    constructor(message: string, details?: unknown) {
      super(message, code, status, exitCode, details)
    }
  }
}

/** A bad command line: unknown option, malformed value (exit 2). */
export class UsageError extends kind("E_USAGE", 400, ExitCode.USAGE) {}

/** An invalid request body or parameter (HTTP 400). */
export class InvalidError extends kind("E_INVALID", 400, ExitCode.USAGE) {}

/** An invalid configuration; every problem is one of `issues` (`key.path: reason`). */
export class ConfigError extends DffmpegError {
  constructor(
    message: string,
    readonly issues: string[] = [],
  ) {
    super(message, "E_CONFIG", 400, ExitCode.CONFIG, issues.length ? issues : undefined)
  }
}

/** Unknown identity, bad signature (401), or an identity without the role a route needs (403, `E_FORBIDDEN`). */
export class AuthError extends DffmpegError {
  constructor(message = "authentication required", status = 401) {
    super(message, status === 403 ? "E_FORBIDDEN" : "E_AUTH", status, ExitCode.AUTH)
  }
}

export class NotFoundError extends kind("E_NOT_FOUND", 404, ExitCode.FAILURE) {}

/** The state changed under the request (job already ended, stale epoch, name taken): HTTP 409. */
export class ConflictError extends kind("E_CONFLICT", 409, ExitCode.FAILURE) {}

export class TooLargeError extends kind("E_TOO_LARGE", 413, ExitCode.USAGE) {}

/**
 * A worker identity already served by another live worker process (docs/operations.md, "One identity,
 * one worker"): HTTP 409 with code E_IN_USE; a worker refused this way exits with the config code (3).
 */
export class IdentityInUseError extends kind("E_IN_USE", 409, ExitCode.CONFIG) {}

/** Too many attempts (HTTP 429); `retryAfter` is the wait in whole seconds, sent as Retry-After. */
export class ThrottledError extends DffmpegError {
  constructor(
    message: string,
    readonly retryAfter: number,
  ) {
    super(message, "E_THROTTLED", 429, ExitCode.UNAVAILABLE, { retryAfter })
  }
}

/** A per-identity quota is used up (HTTP 429): the request may succeed once earlier work finished. */
export class QuotaError extends kind("E_QUOTA", 429, ExitCode.UNAVAILABLE) {}

/** Too many open connections (or requests) of one kind: try again once some have closed (HTTP 429). */
export class TooManyError extends kind("E_TOO_MANY", 429, ExitCode.UNAVAILABLE) {}

/** The coordinator cannot be reached or is failing (HTTP 5xx): worth retrying. */
export class UnavailableError extends kind("E_UNAVAILABLE", 503, ExitCode.UNAVAILABLE) {}

/**
 * The coordinator could not be authenticated: its TLS certificate failed verification, or a reply was
 * unsigned or badly signed. Never retried by a client (a man in the middle is not a transient fault).
 */
export class TrustError extends kind("E_TRUST", 502, ExitCode.AUTH) {}

/**
 * A coordinator reply that does not have the shape the protocol says (a 2xx body that is not JSON, a reply
 * its schema refuses): a version mismatch or a bug, not a fault a worker retries at once.
 */
export class ProtocolError extends kind("E_PROTOCOL", 502, ExitCode.FAILURE) {}

/**
 * The coordinator ended a job's stream with an error frame (it is stopping, say). A 5xx, so a follower
 * re-attaches after it as after any other loss of the coordinator.
 */
export class StreamError extends kind("E_STREAM", 502, ExitCode.FAILURE) {}

/** Our standard output could not be written (its reader went away: EPIPE), so the job was canceled. */
export class OutputLostError extends kind("E_EPIPE", 499, ExitCode.OUTPUT) {}

/** A job ended `canceled` without an exit code of its own (by its owner, an administrator, or a lost caller). */
export class CanceledError extends kind("E_CANCELED", 409, ExitCode.FAILURE) {}

/**
 * A job ended `failed` without an exit code: dffmpeg could not run it (no worker able, worker lost, refused);
 * or it ran and its worker failed it anyway (files lost), when `remoteCode` is the exit code the proxy keeps.
 */
export class JobFailedError extends kind("E_JOB_FAILED", 422, ExitCode.FAILURE) {
  constructor(
    message: string,
    readonly remoteCode?: number,
  ) {
    super(message)
  }
}

/** A local file could not be written (a new key, say); the message says what was done and how to recover. */
export class LocalIoError extends kind("E_IO", 500, ExitCode.FAILURE) {}

/**
 * Rebuilds a typed error from a coordinator's `{error:{code,message,details}}` body. The class follows the
 * status (it decides retries and exit codes); the code and details the coordinator sent are kept as sent.
 */
export function fromErrorBody(status: number, body: unknown): DffmpegError {
  const err = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error
  const message = typeof err?.message === "string" ? err.message : `HTTP ${status}`
  const code = typeof err?.code === "string" ? err.code : undefined
  const e = typed(status, code, message, err?.details)
  if (code !== undefined && code !== e.code) Object.defineProperty(e, "code", { value: code })
  return e
}

function typed(status: number, code: string | undefined, message: string, details: unknown): DffmpegError {
  if (status === 401 || status === 403) return new AuthError(message, status)
  if (status === 404) return new NotFoundError(message, details)
  if (status === 409)
    return code === "E_IN_USE" ? new IdentityInUseError(message, details) : new ConflictError(message, details)
  if (status === 413) return new TooLargeError(message, details)
  if (status === 429) {
    if (code === "E_TOO_MANY") return new TooManyError(message, details)
    if (code === "E_THROTTLED") {
      const after = (details as { retryAfter?: unknown } | undefined)?.retryAfter
      return new ThrottledError(message, typeof after === "number" ? after : 1)
    }
    return new QuotaError(message, details)
  }
  if (status >= 500) return new UnavailableError(message, details)
  if (code === "E_CONFIG" && Array.isArray(details)) return new ConfigError(message, details.map(String))
  return new InvalidError(message, details)
}
