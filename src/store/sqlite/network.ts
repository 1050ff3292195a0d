import { statfsSync } from "node:fs"
import { dirname } from "node:path"
import { ConfigError } from "../../shared/errors.ts"

/**
 * Filesystems SQLite must not run on (statfs `f_type` magic numbers, linux/magic.h and the filesystems'
 * own headers): their locks and shared memory do not work across machines, or not at all, and SQLite's
 * WAL mode needs both (https://www.sqlite.org/wal.html, "WAL does not work over a network filesystem").
 * Every FUSE filesystem (sshfs, rclone, s3fs...) reports FUSE's own magic number, so all are refused.
 */
export const NETWORK_FILESYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x6969, "NFS"],
  [0x517b, "SMB"],
  [0xff534d42, "CIFS"],
  [0xfe534d42, "SMB2"],
  [0x65735546, "FUSE (sshfs, rclone, s3fs...)"],
  [0x73757245, "Coda"],
  [0x5346414f, "AFS"],
  [0x6b414653, "kAFS"],
  [0x01021997, "9P"],
  [0x00c36400, "CephFS"],
  [0x0bd00bd0, "Lustre"],
  [0x01161970, "GFS2"],
  [0x7461636f, "OCFS2"],
])

/**
 * The network filesystem the SQLite file `path` would live on, if it would: the filesystem of its
 * directory (the file may not exist yet). `statfs` is injectable for tests; a directory it cannot read
 * is left for the open to report.
 */
export function networkFilesystem(
  path: string,
  statfs: (p: string) => { type: number | bigint } = statfsSync,
): string | undefined {
  if (path === ":memory:") return undefined
  let type: number
  try {
    type = Number(statfs(dirname(path)).type)
  } catch {
    return undefined
  }
  // f_type is a signed long in some ABIs: a magic number above 2^31 may come back negative.
  return NETWORK_FILESYSTEMS.get(type >>> 0)
}

/** Refuses (ConfigError: one line, exit 3) an SQLite file on a network filesystem, unless `allowed`. */
export function refuseNetworkFilesystem(
  path: string,
  allowed: boolean,
  statfs?: Parameters<typeof networkFilesystem>[1],
) {
  if (allowed) return
  const fs = networkFilesystem(path, statfs)
  if (!fs) return
  throw new ConfigError(
    `database ${path} is on a network filesystem (${fs}): SQLite's locking and WAL do not work there and the database would be corrupted; put it on a local disk, or use a server database (PostgreSQL, MariaDB) to share one between hosts (database.allow_network_filesystem: true overrides this)`,
  )
}
