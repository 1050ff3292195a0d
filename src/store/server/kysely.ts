import { Kysely, type Dialect, type LogEvent } from "kysely"
import type { Keyring } from "../../shared/auth/keyring.ts"
import type { HeldOutput } from "../held.ts"
import type { Database } from "../sql/schema.ts"
import type { ServerConnection } from "./connection.ts"

/** What the server engines' adapters take. */
export interface ServerStoreOptions {
  connection: ServerConnection
  keys?: Keyring
  onKeyProblem?: (message: string) => void
  held?: HeldOutput
  /** Told the SQL of every statement the store runs (bench:coordinator counts them). */
  onStatement?: (sql: string) => void
}

/** Kysely over a server engine's dialect, telling `onStatement` each query it runs. */
export function serverKysely(dialect: Dialect, onStatement?: (sql: string) => void): Kysely<Database> {
  const log = onStatement
    ? (e: LogEvent) => {
        if (e.level === "query") onStatement(e.query.sql)
      }
    : undefined
  return new Kysely<Database>({ dialect, ...(log ? { log } : {}) })
}
