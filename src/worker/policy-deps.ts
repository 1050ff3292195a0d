import { realpathSync, statSync } from "node:fs"
import { dirname } from "node:path"
import type { WorkerConfig } from "../shared/config/server-schema.ts"
import { ConfigError } from "../shared/errors.ts"
import type { Logger } from "../shared/log.ts"
import { readRegularFile } from "../shared/read-file.ts"
import { type ArgumentPolicy, createArgumentPolicy, parseHostRule, type PolicyDeps } from "./policy.ts"

const PROBE_TIMEOUT_MS = 20_000

/** The user a job runs as (the worker's run_as, when the worker is root). */
export interface Reader {
  uid: number
  gid: number
}

/**
 * Whether `reader` may read a file with this owner and mode, and search every folder above it: the
 * owner, group or other bits. Conservative: the reader's supplementary groups are not considered
 * (a file only they could read is treated as unreadable), nor ACLs.
 */
export function mayRead(st: { uid: number; gid: number; mode: number }, reader: Reader, bit: 4 | 1): boolean {
  if (reader.uid === 0) return true
  const shift = st.uid === reader.uid ? 6 : st.gid === reader.gid ? 3 : 0
  return ((st.mode >> shift) & bit) !== 0
}

/**
 * Reads at most `max` bytes of a regular file (never a FIFO or device, which could block). With a
 * `reader` (the job's run_as user), a file that user could not read is treated as missing: the
 * worker (root) never reads, on a job's behalf, what the job itself could not.
 */
export function readHead(path: string, max: number, reader?: Reader): Uint8Array | undefined {
  if (reader && !folderSearchable(path, reader)) return undefined
  return readRegularFile(path, max, reader && ((st) => mayRead(st, reader, 4)))
}

/** Every folder above the file (after symlinks) searchable by `reader`. */
function folderSearchable(path: string, reader: Reader): boolean {
  let dir: string
  try {
    dir = dirname(realpathSync(path))
  } catch {
    return false
  }
  for (;;) {
    try {
      if (!mayRead(statSync(dir), reader, 1)) return false
    } catch {
      return false
    }
    const up = dirname(dir)
    if (up === dir) return true
    dir = up
  }
}

/**
 * The attachment `filename` tags of a local media file, read with the worker's ffprobe, started the
 * way the job would be (in its sandbox) since the media is the client's.
 */
export function attachmentProber(ffprobe: string): NonNullable<PolicyDeps["attachmentNames"]> {
  return async (path, confine) => {
    const command = [
      ffprobe,
      "-v",
      "error",
      "-protocol_whitelist",
      "file",
      "-show_entries",
      "stream_tags=filename",
      "-of",
      "json",
      "file:" + path,
    ]
    const run = confine ? confine(command, dirname(path)) : { argv: command, env: undefined, infoFd: false }
    const p = Bun.spawn(run.argv, {
      cwd: dirname(path),
      env: run.env,
      stdio: ["ignore", "pipe", "ignore", ...(run.infoFd ? (["pipe"] as const) : [])],
    })
    run.started?.(p.pid)
    const timer = setTimeout(() => p.kill("SIGKILL"), PROBE_TIMEOUT_MS)
    try {
      const [out, code] = await Promise.all([new Response(p.stdout as ReadableStream<Uint8Array>).text(), p.exited])
      if (code !== 0) throw new Error(`ffprobe could not read the attachment names (exit ${code})`)
      const json = JSON.parse(out) as { streams?: { tags?: { filename?: unknown } }[] }
      return (json.streams ?? []).flatMap((s) => (s.tags?.filename === undefined ? [] : [String(s.tags.filename)]))
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * The worker's policy from its config, or undefined (with a warning) when `argument_policy: false`.
 * `reader` is the user jobs run as (Confinement.owner): the policy reads only what that user could.
 */
export function workerPolicy(
  cfg: WorkerConfig,
  binaries: Map<string, string>,
  log: Logger,
  reader?: Reader,
): ArgumentPolicy | undefined {
  if (!cfg.argument_policy) {
    log.warn("argument policy is off (argument_policy: false): job arguments are not checked before spawning")
    return undefined
  }
  const bad = cfg.allowed_hosts.filter((h) => !parseHostRule(h))
  if (bad.length) {
    throw new ConfigError(
      "allowed_hosts has entries that are not a host name, IP or CIDR with an optional :port",
      bad.map((h) => `allowed_hosts: ${JSON.stringify(h)}`),
    )
  }
  const ffprobe = binaries.get("ffprobe")
  return createArgumentPolicy(
    { allowNetwork: cfg.allow_network, allowedHosts: cfg.allowed_hosts, devices: cfg.devices },
    {
      read: (path, max) => readHead(path, max, reader),
      attachmentNames: ffprobe ? attachmentProber(ffprobe) : undefined,
    },
  )
}
