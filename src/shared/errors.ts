import { ExitCode } from "./exit-codes.ts"

/** Base of every error dffmpeg throws on purpose; mapped once at each edge (HTTP, CLI, proxy). */
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

export class UsageError extends DffmpegError {
  constructor(message: string, details?: unknown) {
    super(message, "E_USAGE", 400, ExitCode.USAGE, details)
  }
}

/** An invalid request body or parameter (HTTP 400). */
export class InvalidError extends DffmpegError {
  constructor(message: string, details?: unknown) {
    super(message, "E_INVALID", 400, ExitCode.USAGE, details)
  }
}

export class ConfigError extends DffmpegError {
  constructor(
    message: string,
    readonly issues: string[] = [],
  ) {
    super(message, "E_CONFIG", 400, ExitCode.CONFIG, issues.length ? issues : undefined)
  }
}

export class AuthError extends DffmpegError {
  constructor(message = "authentication required", status = 401) {
    super(message, status === 403 ? "E_FORBIDDEN" : "E_AUTH", status, ExitCode.AUTH)
  }
}

export class NotFoundError extends DffmpegError {
  constructor(message: string) {
    super(message, "E_NOT_FOUND", 404, ExitCode.FAILURE)
  }
}

export class ConflictError extends DffmpegError {
  constructor(message: string, details?: unknown) {
    super(message, "E_CONFLICT", 409, ExitCode.FAILURE, details)
  }
}

export class TooLargeError extends DffmpegError {
  constructor(message: string) {
    super(message, "E_TOO_LARGE", 413, ExitCode.USAGE)
  }
}

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
export class QuotaError extends DffmpegError {
  constructor(message: string, details?: unknown) {
    super(message, "E_QUOTA", 429, ExitCode.UNAVAILABLE, details)
  }
}

/** Too many open connections (or requests) of one kind: try again once some have closed (HTTP 429). */
export class TooManyError extends DffmpegError {
  constructor(message: string, details?: unknown) {
    super(message, "E_TOO_MANY", 429, ExitCode.UNAVAILABLE, details)
  }
}

export class UnavailableError extends DffmpegError {
  constructor(message: string) {
    super(message, "E_UNAVAILABLE", 503, ExitCode.UNAVAILABLE)
  }
}

/**
 * The coordinator could not be authenticated: its TLS certificate failed verification, or a reply was
 * unsigned or badly signed. Never retried by a client (a man in the middle is not a transient fault).
 */
export class TrustError extends DffmpegError {
  constructor(message: string) {
    super(message, "E_TRUST", 502, ExitCode.AUTH)
  }
}

/** Rebuilds a typed error from a coordinator's `{error:{code,message}}` body. */
export function fromErrorBody(status: number, body: unknown): DffmpegError {
  const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error
  const message = typeof err?.message === "string" ? err.message : `HTTP ${status}`
  if (status === 401 || status === 403) return new AuthError(message, status)
  if (status === 404) return new NotFoundError(message)
  if (status === 409) return new ConflictError(message)
  if (status === 413) return new TooLargeError(message)
  if (status === 429) return err?.code === "E_TOO_MANY" ? new TooManyError(message) : new QuotaError(message)
  if (status >= 500) return new UnavailableError(message)
  return new InvalidError(message)
}
