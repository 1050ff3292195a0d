import { describe, expect, test } from "bun:test"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConfigError } from "../../shared/errors.ts"
import { ExitCode } from "../../shared/exit-codes.ts"
import { networkFilesystem, refuseNetworkFilesystem } from "./network.ts"

const fsOf = (type: number) => (p: string) => {
  expect(p).toBe("/srv/share")
  return { type }
}

describe("an SQLite file on a network filesystem", () => {
  test("NFS, CIFS, SMB2 and FUSE are named; a local filesystem, :memory: and an unreadable directory are not", () => {
    expect(networkFilesystem("/srv/share/dffmpeg.db", fsOf(0x6969))).toBe("NFS")
    expect(networkFilesystem("/srv/share/dffmpeg.db", fsOf(0xff534d42))).toBe("CIFS")
    // f_type as a signed 32-bit value (some ABIs): still CIFS / SMB2.
    expect(networkFilesystem("/srv/share/dffmpeg.db", fsOf(0xff534d42 | 0))).toBe("CIFS")
    expect(networkFilesystem("/srv/share/dffmpeg.db", fsOf(0xfe534d42 | 0))).toBe("SMB2")
    expect(networkFilesystem("/srv/share/dffmpeg.db", fsOf(0x65735546))).toMatch(/^FUSE/)
    expect(networkFilesystem("/srv/share/dffmpeg.db", fsOf(0xef53))).toBeUndefined()
    expect(networkFilesystem(":memory:", () => ({ type: 0x6969 }))).toBeUndefined()
    const gone = () => {
      throw Object.assign(new Error("ENOENT"), { code: "ENOENT" })
    }
    expect(networkFilesystem("/nowhere/dffmpeg.db", gone)).toBeUndefined()
    // This machine's temporary directory is local.
    expect(networkFilesystem(join(tmpdir(), "dffmpeg.db"))).toBeUndefined()
  })

  test("is refused with one line and exit 3 naming the file, the filesystem and the override; allowed, it opens", () => {
    let err: unknown
    try {
      refuseNetworkFilesystem("/srv/share/dffmpeg.db", false, fsOf(0x6969))
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).exitCode).toBe(ExitCode.CONFIG)
    expect((err as Error).message).toContain("database /srv/share/dffmpeg.db is on a network filesystem (NFS)")
    expect((err as Error).message).toContain("database.allow_network_filesystem: true")
    expect((err as Error).message).not.toContain("\n")
    expect(() => refuseNetworkFilesystem("/srv/share/dffmpeg.db", true, fsOf(0x6969))).not.toThrow()
    expect(() => refuseNetworkFilesystem("/srv/share/dffmpeg.db", false, fsOf(0xef53))).not.toThrow()
  })
})
