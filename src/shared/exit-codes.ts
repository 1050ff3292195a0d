/**
 * Process exit codes of dffmpeg's own commands (listed in README.md and docs/cli.md). Proxy mode
 * (ffmpeg/ffprobe symlinks, `client submit`/`attach`) is different: it exits with the remote ffmpeg's
 * exit code, 128+N when the remote died by signal N, and PROXY_FAILURE for dffmpeg's own failures, a job
 * that failed or was canceled without an exit code included (so 6 is not used: no command waits for a
 * job other than the proxy-like ones).
 */
export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  CONFIG: 3,
  UNAVAILABLE: 4,
  AUTH: 5,
  /** stdout or stderr could not be written (EPIPE: the reader went away; disk full): output was lost. */
  OUTPUT: 7,
} as const

/** Exit code of dffmpeg's own failures in proxy mode (a stderr line starting `dffmpeg:` says why). */
export const PROXY_FAILURE = 1
