/**
 * Whether `err` says the database cannot be reached (connection refused, dropped, timed out, the server
 * shutting down or refusing connections) rather than that a statement failed: the one place the drivers'
 * connection errors are known. Requests that meet one answer 503 with Retry-After (api/app.ts); the pools
 * reconnect by themselves on a later query once the database is back.
 */
export function databaseUnreachable(err: unknown): boolean {
  for (let e = err as ErrorLike | undefined, depth = 0; e && depth < 5; e = e.cause as ErrorLike, depth++) {
    if (typeof e !== "object") return false
    const code = typeof e.code === "string" ? e.code : ""
    if (SYSTEM.has(code) || PG.has(code) || PG_CLASS.test(code) || MYSQL.has(code)) return true
    // mysql2 marks an error that ended its connection `fatal`.
    if (e.fatal === true) return true
    if (MESSAGES.test(typeof e.message === "string" ? e.message : "")) return true
    // AggregateError: every address of the host refused.
    if (Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every((x) => databaseUnreachable(x))) return true
  }
  return false
}

interface ErrorLike {
  code?: unknown
  message?: unknown
  fatal?: unknown
  cause?: unknown
  errors?: unknown[]
}

/** Socket errors, from either driver. */
const SYSTEM = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
])
/**
 * PostgreSQL SQLSTATEs: admin_shutdown, crash_shutdown, cannot_connect_now (57P01-03),
 * too_many_connections (53300); class 08 (connection exceptions) below.
 */
const PG = new Set(["57P01", "57P02", "57P03", "53300"])
const PG_CLASS = /^08[0-9A-Z]{3}$/
/** mysql2's connection codes and the server's for too many connections or shutting down. */
const MYSQL = new Set([
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_SEQUENCE_TIMEOUT",
  "PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR",
  "PROTOCOL_ENQUEUE_AFTER_QUIT",
  "ER_CON_COUNT_ERROR",
  "ER_TOO_MANY_USER_CONNECTIONS",
  "ER_SERVER_SHUTDOWN",
  "ER_NORMAL_SHUTDOWN",
  "ER_SHUTDOWN_COMPLETE",
  "ER_CONNECTION_KILLED",
])
/** pg's connection errors carry no code, only these messages; mysql2's closed connection too. */
const MESSAGES =
  /^Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly|connection is in closed state|Can't add new command when connection is in closed state/i
