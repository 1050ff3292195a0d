import { accessSync, constants, fchownSync, fstatSync, readFileSync, statSync, type Stats } from "node:fs"
import { userInfo } from "node:os"
import { dirname, resolve } from "node:path"

/**
 * Who owns the files dffmpeg creates (the database, its -wal/-shm, the coordinator secret, key files), and
 * the one message for a file the process cannot use.
 *
 * The rule: a file is created by whoever runs the command, so `sudo dffmpeg admin users add …` (the
 * documented first step, before the coordinator ever started) would leave root's files in the service
 * user's folders, and the service would die on them. So when the process runs as root, a new file takes
 * the owner and group of the folder it is created in (`/var/lib/dffmpeg` is dffmpeg:dffmpeg, so the
 * database and the secret become dffmpeg's; `/etc/dffmpeg/keys` is root:dffmpeg, so a key file becomes
 * root:dffmpeg), and a file that replaces another (a rotated key or secret) takes the replaced file's
 * owner and group. A process that is not root keeps its own files: it cannot give them away.
 */

export interface Owner {
  uid: number
  gid: number
}

const isRoot = () => process.getuid?.() === 0

/**
 * The owner a new file should get, as root: the file it replaces (`replaces`, when it exists), else the folder
 * it is created in. Undefined when not root (the file stays ours) or when that owner is root itself.
 */
export function ownerFor(file: string, replaces = false): Owner | undefined {
  if (!isRoot()) return undefined
  let st: Stats | undefined
  if (replaces) st = statOrUndefined(file)
  st ??= statSync(dirname(file))
  return st.uid === 0 && st.gid === 0 ? undefined : { uid: st.uid, gid: st.gid }
}

function statOrUndefined(file: string): Stats | undefined {
  try {
    return statSync(file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === "ENOENT" || code === "ENOTDIR") return undefined
    throw err
  }
}

/** Gives the open file `fd` the owner `ownerFor` chose (a no-op when it chose none or the file has it). */
export function adoptFd(fd: number, owner: Owner | undefined): void {
  if (!owner) return
  const st = fstatSync(fd)
  if (st.uid !== owner.uid || st.gid !== owner.gid) fchownSync(fd, owner.uid, owner.gid)
}

/**
 * Mode of a new key file: 0640 when its folder lets its group list it and others not (such a folder,
 * like `/etc/dffmpeg/keys`, root:dffmpeg 0750, is there for its group: the service reads its key through
 * it), 0600 anywhere else (a 0700, 0711 or 0755 folder, /tmp). A key file that is replaced keeps its own
 * group read bit.
 */
export function keyFileMode(file: string): number {
  const old = statOrUndefined(file)
  if (old) return 0o600 | (old.mode & 0o040)
  const dir = statSync(dirname(file)).mode
  return (dir & 0o050) === 0o050 && !(dir & 0o004) ? 0o640 : 0o600
}

/** Names of uids or gids from /etc/passwd or /etc/group; undefined when the id has no entry. */
function nameOf(id: number, table: "/etc/passwd" | "/etc/group"): string | undefined {
  try {
    for (const line of readFileSync(table, "utf8").split("\n")) {
      const [name, , num] = line.split(":")
      if (name && Number(num) === id && num !== "") return name
    }
  } catch {
    // No table to look in: the number is shown instead.
  }
  return undefined
}

/** This process's user as a message names it: `dffmpeg (uid 998)`, or `uid 998` without a passwd entry. */
export function runningAs(): { name?: string; uid: number; gid: number; text: string } {
  const uid = process.getuid?.() ?? -1
  const gid = process.getgid?.() ?? -1
  let name: string | undefined
  try {
    name = userInfo().username
  } catch {
    // No passwd entry (Node throws); Bun answers "unknown" instead.
  }
  if (!name || name === "unknown") name = nameOf(uid, "/etc/passwd")
  return { name, uid, gid, text: name ? `${name} (uid ${uid})` : `uid ${uid}` }
}

const ownerText = (st: Stats) =>
  `${nameOf(st.uid, "/etc/passwd") ?? st.uid}:${nameOf(st.gid, "/etc/group") ?? st.gid} (mode 0${(st.mode & 0o777).toString(8).padStart(3, "0")})`

const can = (path: string, mode: number) => {
  try {
    accessSync(path, mode)
    return true
  } catch {
    return false
  }
}

/**
 * What a file needs: `read` (a key file, which its folder's group may read: fixed with chgrp), `private` (the
 * secret: read, and fixed with chown since it stays 0600), `write` (the database and its -wal/-shm: read
 * and write, and the folder writable too, where SQLite creates and removes its -wal and -shm).
 */
export type Need = "read" | "private" | "write"

/**
 * Why this process cannot use `file` as `need` says, as one line naming the file, the user we run as, who
 * owns it and the command that fixes it; undefined when it can. `what` names the file's role
 * (`database`, `secret_key_file`, `hmac_key_file`). A missing file is a problem only when its folder does
 * not let us create it.
 */
export function accessProblem(file: string, what: string, need: Need): string | undefined {
  const abs = resolve(file)
  const me = runningAs()
  const who = me.name ? `${me.name}:` : `${me.uid}:${me.gid}`
  // A folder on the way that we cannot enter hides everything below it.
  const parents: string[] = []
  for (let d = dirname(abs); ; d = dirname(d)) {
    parents.unshift(d)
    if (d === dirname(d)) break
  }
  for (const d of parents) {
    const st = statOrUndefined(d)
    if (!st) break
    // Not a folder at all: no owner or mode fixes that, and the caller's own message (ENOTDIR) says it.
    if (!st.isDirectory()) return undefined
    if (!can(d, constants.X_OK))
      return `${what} ${abs} cannot be reached by user ${me.text}: folder ${d} belongs to ${ownerText(st)} and does not let it in; fix: chgrp ${groupName(me.gid)} ${d} && chmod g+rx ${d}`
  }
  const dir = dirname(abs)
  const st = statOrUndefined(abs)
  const folderWritable = can(dir, constants.W_OK | constants.X_OK)
  if (!st) {
    // The folder is created when missing (the database's): the nearest one that exists must let us write.
    const near = parents.findLast((d) => statOrUndefined(d)) ?? "/"
    if (can(near, constants.W_OK | constants.X_OK)) return undefined
    return `${what} ${abs} cannot be created by user ${me.text}: folder ${near} belongs to ${ownerText(statSync(near))}; fix: chown ${who} ${near}`
  }
  const mode = need === "write" ? constants.R_OK | constants.W_OK : constants.R_OK
  if (!can(abs, mode)) {
    const fix = need === "read" ? `chgrp ${groupName(me.gid)} ${abs} && chmod 640 ${abs}` : `chown ${who} ${abs}`
    return `${what} ${abs} cannot be ${need === "write" ? "written" : "read"} by user ${me.text}: it belongs to ${ownerText(st)}; fix: ${fix}`
  }
  if (need !== "write" || folderWritable) return undefined
  return `${what} ${abs} is in folder ${dir}, which user ${me.text} cannot write (it belongs to ${ownerText(statSync(dir))}; SQLite creates its -wal and -shm files there); fix: chown ${who} ${dir}`
}

const groupName = (gid: number) => nameOf(gid, "/etc/group") ?? String(gid)
