import {
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs"
import { basename, dirname, join } from "node:path"
import { ConfigError } from "../errors.ts"
import { accessProblem, adoptFd, ownerFor, type Owner } from "../owner.ts"
import { SECRET_BYTES, newSecret, toSecret, type Keyring, type Secret } from "./keyring.ts"

/**
 * The coordinator secret on disk: 32 random bytes as base64 in `secret_key_file`, mode 0600 whatever
 * the umask. A rotation first leaves the new secret beside it as `<file>.next-<id>`, so that both are on
 * disk while the database is re-encrypted (see `rotate` in cli/commands/admin/security.ts).
 */

/** `<file>.next-<id>`: a new secret written before the database is re-encrypted under it. */
export const nextPath = (file: string, id: string) => `${file}.next-${id}`

const mode = (file: string) => statSync(file).mode & 0o777
export const octal = (m: number) => "0" + m.toString(8).padStart(3, "0")

function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r")
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * Writes `data` to a new file `tmp` with `perm` set explicitly (not left to the umask) and the owner
 * `ownerFor` chose (run as root, the service's files stay the service's), then fsyncs it.
 */
function writeNew(tmp: string, data: string, perm: number, owner: Owner | undefined): void {
  const fd = openSync(tmp, "wx", perm)
  try {
    adoptFd(fd, owner)
    fchmodSync(fd, perm)
    writeSync(fd, data)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

const tmpPath = (file: string) =>
  join(dirname(file), `.${basename(file)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`)

/**
 * Replaces `file` atomically: a 0600 temp file, fsync, rename over `file`, fsync of the directory. As root
 * the new file keeps the owner of the one it replaces (or takes its folder's, when it is new).
 */
export function writeFileAtomic(file: string, data: string, perm = 0o600): void {
  const tmp = tmpPath(file)
  try {
    writeNew(tmp, data, perm, ownerFor(file, true))
    renameSync(tmp, file)
  } catch (err) {
    if (existsSync(tmp)) unlinkSync(tmp)
    throw err
  }
  fsyncDir(dirname(file))
}

/** Creates `file` with `data` unless it exists (complete or not at all: temp file, then link). False when it existed. */
export function createFileExclusive(file: string, data: string, perm = 0o600): boolean {
  const tmp = tmpPath(file)
  writeNew(tmp, data, perm, ownerFor(file))
  try {
    linkSync(tmp, file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false
    throw err
  } finally {
    unlinkSync(tmp)
    fsyncDir(dirname(file))
  }
}

const encode = (s: Secret) => Buffer.from(s.bytes).toString("base64") + "\n"

/** Reads a secret file; ConfigError when it is readable by others, unreadable or not 32 base64 bytes. */
export function readSecret(file: string): Secret {
  const problem = accessProblem(file, "secret_key_file", "private")
  if (problem) throw new ConfigError(problem)
  let m: number
  try {
    m = mode(file)
  } catch (err) {
    throw new ConfigError(
      `secret_key_file ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    )
  }
  if (m & 0o077)
    throw new ConfigError(
      `secret_key_file ${file} is accessible by group or others (mode ${octal(m)}); it must be private to the coordinator's user: chmod 600 ${file}`,
    )
  const text = readFileSync(file, "utf8").trim()
  const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, "base64") : Buffer.alloc(0)
  if (bytes.length !== SECRET_BYTES)
    throw new ConfigError(
      `secret_key_file ${file} does not hold ${SECRET_BYTES} base64-encoded bytes; restore it from the backup taken with the database`,
    )
  return toSecret(new Uint8Array(bytes))
}

/** Stores `s` as a pending rotation beside `file` (kept until the rotation completes). */
export function writeNext(file: string, s: Secret): string {
  const p = nextPath(file, s.id)
  writeFileAtomic(p, encode(s))
  return p
}

/** The pending rotations beside `file`: `<file>.next-<id>`. */
export function pendingNext(file: string): string[] {
  const dir = dirname(file)
  const prefix = `${basename(file)}.next-`
  return readdirSync(dir)
    .filter((n) => n.startsWith(prefix))
    .map((n) => join(dir, n))
}

export interface FileKeyring extends Keyring {
  /** True when this process created the secret file. */
  readonly created: boolean
  /** Makes `s` the secret on disk (atomic replace) and drops its pending copy. */
  promote(s: Secret): void
}

/**
 * The keyring of `file`, created with a new random secret (0600) when it does not exist yet. A secret
 * id it does not know makes it look at the file and the pending rotations again, so a coordinator
 * follows a rotation made by `dffmpeg admin security rotate-secret` while it runs.
 */
export function fileKeyring(file: string): FileKeyring {
  let created = false
  try {
    created = !existsSync(file) && createFileExclusive(file, encode(newSecret()))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const folder = code === "ENOENT" ? ` (its folder ${dirname(file)} does not exist: create it, or fix the path)` : ""
    throw new ConfigError(
      accessProblem(file, "secret_key_file", "private") ??
        `secret_key_file ${file} cannot be created: ${code ?? (err as Error).message}${folder}`,
    )
  }
  let current = readSecret(file)
  const known = new Map<string, Secret>([[current.id, current]])
  /** Ids looked for in vain, and when: a database under a lost secret must not make every request read the disk. */
  const missed = new Map<string, number>()
  const reload = () => {
    try {
      current = readSecret(file)
      known.set(current.id, current)
    } catch {
      // Keep serving with the secret already read; the next start reports the file's problem.
    }
    for (const p of pendingNext(file)) {
      try {
        const s = readSecret(p)
        known.set(s.id, s)
      } catch {
        // A half-written or foreign file is not a secret this database can be under.
      }
    }
  }
  return {
    where: file,
    created,
    current: () => current,
    find(id) {
      if (known.has(id)) return known.get(id)
      // A rotation writes its pending file before it commits, so a new id is found at the first look.
      if ((missed.get(id) ?? -Infinity) > Date.now() - 1000) return undefined
      reload()
      if (known.has(id)) return known.get(id)
      if (missed.size > 100) missed.clear()
      missed.set(id, Date.now())
      return undefined
    },
    promote(s) {
      writeFileAtomic(file, encode(s))
      known.set(s.id, s)
      current = s
      const p = nextPath(file, s.id)
      if (existsSync(p)) unlinkSync(p)
      fsyncDir(dirname(file))
    },
  }
}
