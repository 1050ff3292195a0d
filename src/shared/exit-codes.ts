/**
 * Process exit codes of dffmpeg's own commands (listed in README.md).
 * Proxy mode (ffmpeg/ffprobe symlinks, `client submit`) is different: it exits with the remote
 * ffmpeg's exit code, 128+N when the remote died by signal N, and 1 for dffmpeg's own failures.
 */
export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  CONFIG: 3,
  UNAVAILABLE: 4,
  AUTH: 5,
  JOB_FAILED: 6,
  /** stdout or stderr could not be written (EPIPE: the reader went away; disk full): output was lost. */
  OUTPUT: 7,
} as const

/** Exit code of dffmpeg's own failures in proxy mode (a stderr line starting `dffmpeg:` says why). */
export const PROXY_FAILURE = 1
