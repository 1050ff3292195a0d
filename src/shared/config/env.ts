/** The only module that reads process.env. */
const env = process.env

export const Env = {
  configPath: (role: string): string | undefined => env[`DFFMPEG_${role.toUpperCase()}_CONFIG`] || undefined,
  home: (): string | undefined => env.HOME || undefined,
  clientId: () => env.DFFMPEG_CLIENT_ID || undefined,
  hmacKey: () => env.DFFMPEG_HMAC_KEY || undefined,
  coordinatorUrl: () => env.DFFMPEG_COORDINATOR_URL || undefined,
  /** Where the coordinator's database is (and `dffmpeg admin --local`'s): replaces `database:`'s location. */
  databaseUrl: () => env.DFFMPEG_DATABASE_URL || undefined,
  logLevel: () => env.DFFMPEG_LOG_LEVEL || undefined,
  logFormat: () => env.DFFMPEG_LOG_FORMAT || undefined,
  /** Development override: run as the proxy for this binary name when not invoked through a symlink. */
  proxy: () => env.DFFMPEG_PROXY || undefined,
  /** The width `--help` is wrapped to, when set (else the terminal's, else 80). */
  columns: () => env.COLUMNS || undefined,
  noColor: () => env.NO_COLOR !== undefined && env.NO_COLOR !== "",
} as const
