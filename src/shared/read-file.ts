import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from "node:fs"

/**
 * Up to `max` bytes of a regular file; undefined when it is missing, unreadable, not a regular file or
 * refused by `allow` (given the open file's status). Opened non-blocking: a FIFO, which ffmpeg itself
 * may be about to read, must never hang the reader here. The client reads the lists and scripts a job
 * names with it, the worker's policy the files it checks. Dependency-free (the proxy imports it).
 */
export function readRegularFile(path: string, max: number, allow?: (st: Stats) => boolean): Uint8Array | undefined {
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch {
    return undefined
  }
  try {
    const st = fstatSync(fd)
    if (!st.isFile() || (allow && !allow(st))) return undefined
    const buf = new Uint8Array(Math.min(max, st.size))
    return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0))
  } catch {
    return undefined
  } finally {
    closeSync(fd)
  }
}
