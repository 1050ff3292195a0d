import { afterAll, describe, expect, test } from "bun:test"
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConfigError } from "../shared/errors.ts"
import { createLogger } from "../shared/log.ts"
import type { WorkerConfig } from "../shared/config/server-schema.ts"
import { attachmentProber, mayRead, readHead, workerPolicy } from "./policy-deps.ts"

const dir = mkdtempSync(join(tmpdir(), "dffmpeg-policy-deps-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("readHead", () => {
  test("reads at most max bytes of a regular file", () => {
    writeFileSync(join(dir, "f"), "0123456789")
    expect(new TextDecoder().decode(readHead(join(dir, "f"), 4))).toBe("0123")
    expect(readHead(join(dir, "missing"), 4)).toBeUndefined()
  })

  test("never reads a FIFO or a directory (which could block or mislead)", () => {
    expect(Bun.spawnSync(["mkfifo", join(dir, "fifo")]).exitCode).toBe(0)
    expect(readHead(join(dir, "fifo"), 4)).toBeUndefined()
    expect(readHead(dir, 4)).toBeUndefined()
  })

  test("with a reader (the job's run_as user): only what that user's owner, group or other bits allow", () => {
    const me = { uid: process.getuid!(), gid: process.getgid!() }
    const other = { uid: me.uid + 4242, gid: me.gid + 4242 }
    const open = join(dir, "open")
    mkdirSync(open, { mode: 0o755 })
    chmodSync(open, 0o755)
    chmodSync(dir, 0o755)
    const f = join(open, "secret")
    writeFileSync(f, "root:SECRET:0:0\n", { mode: 0o600 })
    chmodSync(f, 0o600)
    expect(readHead(f, 64, other)).toBeUndefined()
    expect(readHead(f, 64, me)).toBeDefined()
    expect(readHead(f, 64)).toBeDefined()
    chmodSync(f, 0o644)
    expect(new TextDecoder().decode(readHead(f, 4, other))).toBe("root")
    // A folder above the file that the reader may not search hides it too.
    chmodSync(open, 0o700)
    expect(readHead(f, 4, other)).toBeUndefined()
    chmodSync(open, 0o755)
    chmodSync(dir, 0o700)
  })

  test("mayRead: owner, then group, then other bits; uid 0 reads everything", () => {
    const st = { uid: 10, gid: 20, mode: 0o100640 }
    expect(mayRead(st, { uid: 10, gid: 99 }, 4)).toBe(true)
    expect(mayRead(st, { uid: 11, gid: 20 }, 4)).toBe(true)
    expect(mayRead(st, { uid: 11, gid: 21 }, 4)).toBe(false)
    // The owner's own bits decide for the owner, even when other bits would allow.
    expect(mayRead({ uid: 10, gid: 20, mode: 0o100044 }, { uid: 10, gid: 20 }, 4)).toBe(false)
    expect(mayRead({ uid: 10, gid: 20, mode: 0o040711 }, { uid: 11, gid: 21 }, 1)).toBe(true)
    expect(mayRead({ uid: 10, gid: 20, mode: 0o000 }, { uid: 0, gid: 0 }, 4)).toBe(true)
  })
})

describe("attachmentProber", () => {
  test("lists the filename tags of a file's attachments with the real ffprobe", async () => {
    writeFileSync(join(dir, "a.ttf"), "FONT")
    const out = join(dir, "att.mkv")
    const p = Bun.spawnSync([
      "ffmpeg",
      "-v",
      "error",
      "-y",
      "-f",
      "lavfi",
      "-i",
      "testsrc=d=0.1",
      "-attach",
      join(dir, "a.ttf"),
      "-metadata:s:t",
      "mimetype=font/ttf",
      "-attach",
      join(dir, "a.ttf"),
      "-metadata:s:t:1",
      "mimetype=font/ttf",
      "-metadata:s:t:1",
      "filename=../x",
      out,
    ])
    expect(p.exitCode).toBe(0)
    expect(await attachmentProber(Bun.which("ffprobe")!)(out)).toEqual(["a.ttf", "../x"])
  })

  test("a file ffprobe cannot read is an error, not an empty list", async () => {
    writeFileSync(join(dir, "junk.mkv"), "junk")
    await expect(attachmentProber(Bun.which("ffprobe")!)(join(dir, "junk.mkv"))).rejects.toThrow(
      /ffprobe could not read the attachment names/,
    )
  })
})

describe("workerPolicy", () => {
  const cfg = (o: Partial<WorkerConfig>) =>
    ({ argument_policy: true, allow_network: true, allowed_hosts: [], ...o }) as WorkerConfig
  const log = createLogger({ level: "error" })

  test("an allowed_hosts entry that does not parse stops the worker with every bad entry listed", () => {
    let err: unknown
    try {
      workerPolicy(
        cfg({ allowed_hosts: ["cdn.example:443", "10.0.0.0/8", "[::1]:80", "host:http", "a b", "10.0.0.0/33"] }),
        new Map(),
        log,
      )
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).issues).toEqual([
      'allowed_hosts: "host:http"',
      'allowed_hosts: "a b"',
      'allowed_hosts: "10.0.0.0/33"',
    ])
  })

  test("argument_policy: false gives no policy", () => {
    expect(workerPolicy(cfg({ argument_policy: false }), new Map(), log)).toBeUndefined()
  })
})
