import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, existsSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Cluster, type ClusterOptions, type RunResult } from "../../helpers/cluster.ts"
import { sample, md5 } from "../../helpers/media.ts"
import { apiFor, submitRaw } from "../../helpers/api.ts"
import { signedFetch } from "../../helpers/signed.ts"

/**
 * The walking skeleton's end-to-end checks (byte-exact proxy, exit codes, stdin, signals, written files,
 * each compared with local ffmpeg), run by one small test file per database engine so the engines run
 * in parallel: the same checks, unchanged, whatever store the coordinator has. `options` gives the
 * cluster's options (e.g. the `database:` of a fresh server database); it runs in beforeAll.
 */
export function proxyChecks(engine: string, options: () => Promise<ClusterOptions> = async () => ({})) {
  let c: Cluster
  let media: string // the input as the client sees it
  let storage: string // the same file, seen directly

  beforeAll(async () => {
    c = await Cluster.start({ workers: 1, maxJobs: 4, ...(await options()) })
    copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
    media = join(c.clientMedia, "av.mkv")
    storage = join(c.storage, "av.mkv")
  }, 60_000)

  afterAll(async () => {
    await c?.stop()
  })

  function expectOk(r: RunResult) {
    if (r.code !== 0) throw new Error(`exit ${r.code}; stderr:\n${r.err}\n${c.logs()}`)
  }

  describe(`the ffprobe/ffmpeg proxy (${engine})`, () => {
    test("ffprobe JSON equals local ffprobe's, except the file name", async () => {
      const args = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
      const remote = await c.run("ffprobe", [...args, media])
      const local = await c.local("ffprobe", [...args, storage])
      expectOk(remote)
      expect(remote.stderr.length).toBe(0)
      const a = JSON.parse(remote.out)
      const b = JSON.parse(local.out)
      delete a.format.filename
      delete b.format.filename
      expect(a).toEqual(b)
      expect(a.streams.length).toBe(2)
    })

    test("a transcode writes a file that local ffprobe validates", async () => {
      const out = join(c.clientMedia, "transcoded.mp4")
      const r = await c.run("ffmpeg", [
        "-v",
        "error",
        "-y",
        "-i",
        media,
        "-t",
        "1",
        "-vf",
        "scale=160:120",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        out,
      ])
      expectOk(r)
      const probe = await c.local("ffprobe", [
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_name,width",
        "-of",
        "json",
        join(c.storage, "transcoded.mp4"),
      ])
      const info = JSON.parse(probe.out)
      expect(info.streams.map((s: { codec_name: string }) => s.codec_name).sort()).toEqual(["aac", "h264"])
      expect(info.streams.find((s: { width?: number }) => s.width).width).toBe(160)
      expect(Number(info.format.duration)).toBeGreaterThan(0.9)
      expect(Number(info.format.duration)).toBeLessThan(1.2)
    })

    test("-f wav pipe:1 is byte-identical to local ffmpeg", async () => {
      const remote = await c.run("ffmpeg", ["-v", "error", "-i", media, "-f", "wav", "pipe:1"])
      const local = await c.local("ffmpeg", ["-v", "error", "-i", storage, "-f", "wav", "pipe:1"])
      expectOk(remote)
      expect(remote.stdout.length).toBeGreaterThan(100_000)
      expect(md5(remote.stdout)).toBe(md5(local.stdout))
    })

    test("a 10+ MB rawvideo pipe is byte-identical", async () => {
      const args = ["-v", "error", "-t", "2", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
      const remote = await c.run("ffmpeg", ["-i", media, ...args])
      const local = await c.local("ffmpeg", ["-i", storage, ...args])
      expectOk(remote)
      expect(remote.stdout.length).toBe(320 * 240 * 3 * 50)
      expect(remote.stdout.length).toBe(local.stdout.length)
      expect(md5(remote.stdout)).toBe(md5(local.stdout))
    }, 30_000)

    test("stdout without any newline and a 196 KB stderr line arrive intact", async () => {
      const long = "x".repeat(70_000)
      // volume's bad `precision` value is echoed back on stderr as one line of ~196 KB.
      const args = [
        "-hide_banner",
        "-f",
        "lavfi",
        "-i",
        "sine=d=0.2",
        "-af",
        `volume=1:precision=${long}`,
        "-f",
        "null",
        "-",
      ]
      const remote = await c.run("ffmpeg", args)
      const local = await c.local("ffmpeg", args)
      expect(remote.code).toBe(local.code)
      expect(Math.max(...remote.err.split("\n").map((l) => l.length))).toBeGreaterThan(65_536)
      // Log prefixes carry heap addresses (`[volume @ 0x55…]`) that differ between any two runs.
      const masked = (b: Uint8Array) =>
        Buffer.from(b)
          .toString("latin1")
          .replace(/0x[0-9a-f]+/g, "0x")
      expect(md5(Buffer.from(masked(remote.stderr), "latin1"))).toBe(md5(Buffer.from(masked(local.stderr), "latin1")))
      expect(remote.stderr.length).toBe(local.stderr.length)
      const zeros = await c.run("ffmpeg", [
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=320x240:d=0.4",
        "-f",
        "rawvideo",
        "pipe:1",
      ])
      expectOk(zeros)
      expect(zeros.stdout.includes(10)).toBe(false)
      expect(zeros.stdout.length).toBe(320 * 240 * 1.5 * 10)
    })

    test("non-UTF-8 binary stdout (s16le noise) is byte-identical", async () => {
      const args = ["-v", "error", "-f", "lavfi", "-i", "anoisesrc=d=0.5:seed=42", "-f", "s16le", "pipe:1"]
      const remote = await c.run("ffmpeg", args)
      const local = await c.local("ffmpeg", args)
      expectOk(remote)
      expect(() => new TextDecoder("utf-8", { fatal: true }).decode(remote.stdout)).toThrow()
      expect(md5(remote.stdout)).toBe(md5(local.stdout))
    })

    test("pipe:0 input is forwarded byte for byte", async () => {
      const input = readFileSync(storage)
      const args = ["-v", "error", "-i", "pipe:0", "-f", "md5", "-"]
      const remote = await c.run("ffmpeg", args, { stdin: input })
      const local = await c.local("ffmpeg", args, { stdin: input })
      expectOk(remote)
      expect(remote.out).toMatch(/^MD5=[0-9a-f]{32}\n$/)
      expect(remote.out).toBe(local.out)
    })

    test("callers with /dev/null or an empty closed stdin work", async () => {
      const a = await c.run("ffprobe", ["-v", "error", "-show_entries", "format=nb_streams", "-of", "csv=p=0", media], {
        stdin: "devnull",
      })
      const b = await c.run("ffprobe", ["-v", "error", "-show_entries", "format=nb_streams", "-of", "csv=p=0", media])
      expect([a.code, a.out, b.code, b.out]).toEqual([0, "2\n", 0, "2\n"])
    })

    test("a \\r progress line arrives while the job is still running", async () => {
      const p = Bun.spawn(
        [
          join(c.binDir, "ffmpeg"),
          "-hide_banner",
          "-nostdin",
          "-re",
          "-f",
          "lavfi",
          "-i",
          "testsrc=d=3:s=160x120:r=10",
          "-f",
          "null",
          "-",
        ],
        {
          env: { PATH: process.env.PATH!, HOME: c.dir, DFFMPEG_CLIENT_CONFIG: c.clientConfig },
          stdout: "ignore",
          stderr: "pipe",
        },
      )
      let firstProgressAt = 0
      let sawCR = false
      const reader = (async () => {
        for await (const chunk of p.stderr) {
          if (!firstProgressAt && new TextDecoder().decode(chunk).includes("frame=") && chunk.includes(13)) {
            firstProgressAt = Date.now()
            sawCR = true
          }
        }
      })()
      await p.exited
      const endedAt = Date.now()
      await reader
      expect(p.exitCode).toBe(0)
      expect(sawCR).toBe(true)
      // -re paces 3 s of input in real time: progress that is relayed live shows up well before the end.
      expect(endedAt - firstProgressAt).toBeGreaterThan(1000)
    }, 20_000)

    test("a q on stdin stops the remote ffmpeg gracefully, as it would locally", async () => {
      const out = join(c.clientMedia, "stopped.mkv")
      const p = Bun.spawn(
        [
          join(c.binDir, "ffmpeg"),
          "-hide_banner",
          "-y",
          "-re",
          "-f",
          "lavfi",
          "-i",
          "testsrc=d=30:s=160x120:r=10",
          "-c:v",
          "mjpeg",
          out,
        ],
        {
          env: { PATH: process.env.PATH!, HOME: c.dir, DFFMPEG_CLIENT_CONFIG: c.clientConfig },
          stdin: "pipe",
          stdout: "ignore",
          stderr: "pipe",
        },
      )
      const dec = new TextDecoder()
      let err = ""
      let sent = false
      for await (const chunk of p.stderr) {
        err += dec.decode(chunk)
        if (!sent && /frame=\s*\d+/.test(err)) {
          p.stdin.write("q")
          await p.stdin.flush()
          sent = true
        }
      }
      expect(await p.exited).toBe(0)
      const probe = await c.local("ffprobe", [
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "csv=p=0",
        join(c.storage, "stopped.mkv"),
      ])
      // Finalized (readable) and far shorter than the 30 s it would have run without the q.
      expect(probe.code).toBe(0)
      expect(Number(probe.out)).toBeLessThan(20)
    }, 40_000)

    test("exit codes equal local ffmpeg's for failing commands", async () => {
      const cases: string[][] = [
        ["-hide_banner", "-i", join(c.clientMedia, "missing.mkv")],
        ["-hide_banner", "-nonexistent_option"],
        [],
        ["-hide_banner", "-f", "lavfi", "-i", "nullsrc=d=0.1", "-c:v", "nonexistent_codec", "-f", "null", "-"],
        ["-hide_banner", "-f", "lavfi", "-i", "nullsrc=d=0.1", "-f", "nonexistformat", join(c.clientMedia, "x.out")],
      ]
      for (const args of cases) {
        const remote = await c.run("ffmpeg", args)
        const local = await c.local(
          "ffmpeg",
          args.map((a) => a.replace(c.clientMedia, c.storage)),
        )
        expect({ args, code: remote.code }).toEqual({ args, code: local.code })
        expect(remote.code).not.toBe(0)
      }
      const probe = await c.run("ffprobe", ["-v", "error", join(c.clientMedia, "missing.mkv")])
      expect(probe.code).toBe((await c.local("ffprobe", ["-v", "error", join(c.storage, "missing.mkv")])).code)
    }, 30_000)

    test("stderr bytes equal local ffmpeg's for a deterministic error", async () => {
      const args = [
        "-hide_banner",
        "-f",
        "lavfi",
        "-i",
        "nullsrc=d=0.1",
        "-c:v",
        "nonexistent_codec",
        "-f",
        "null",
        "-",
      ]
      const remote = await c.run("ffmpeg", args)
      const local = await c.local("ffmpeg", args)
      expect(remote.err).toContain("nonexistent_codec")
      expect(Buffer.from(remote.stderr).equals(Buffer.from(local.stderr))).toBe(true)
      expect(remote.stdout).toEqual(local.stdout)
    })

    test("-version output equals local", async () => {
      const remote = await c.run("ffmpeg", ["-version"])
      const local = await c.local("ffmpeg", ["-version"])
      expect(remote.code).toBe(0)
      expect(remote.out).toBe(local.out)
    })

    test("paths relative to a mapped working directory work for inputs and outputs", async () => {
      const remote = await c.run(
        "ffprobe",
        ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", "av.mkv"],
        { cwd: c.clientMedia },
      )
      const local = await c.local(
        "ffprobe",
        ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", "av.mkv"],
        { cwd: c.storage },
      )
      expectOk(remote)
      expect(remote.out).toBe(local.out)
      const w = await c.run(
        "ffmpeg",
        ["-v", "error", "-y", "-i", "av.mkv", "-t", "0.5", "-c", "copy", "relative-out.mkv"],
        { cwd: c.clientMedia },
      )
      expectOk(w)
      expect(existsSync(join(c.storage, "relative-out.mkv"))).toBe(true)
    })

    test("an absolute path under no mapping is refused before submission", async () => {
      const before = (await c.jobs()).length
      const r = await c.run("ffprobe", ["-v", "error", "/etc/hostname"])
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/^dffmpeg: .*not under any configured path mapping/)
      expect(r.err.trim().split("\n").length).toBe(1)
      expect((await c.jobs()).length).toBe(before)
    })

    test("a relative path from an unmapped working directory is refused", async () => {
      writeFileSync(join(c.dir, "local.mkv"), "x")
      const r = await c.run("ffprobe", ["local.mkv"], { cwd: c.dir })
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/^dffmpeg: relative path local\.mkv/)
    })

    test("a symlink in the media tree that points outside is refused by the client", async () => {
      symlinkSync("/etc", join(c.storage, "evil"))
      const r = await c.run("ffprobe", ["-v", "error", join(c.clientMedia, "evil", "hostname")])
      expect(r.code).toBe(1)
      expect(r.err).toStartWith("dffmpeg: ")
    })

    test("the worker refuses paths that escape their variable, even from a hand-made job", async () => {
      const api = apiFor(c, "client1")
      for (const arg of ["$Media/../../../../etc/hostname", "$Media/evil/hostname", "/etc/hostname"]) {
        const r = await submitRaw(api, { binary: "ffprobe", args: ["-v", "error", arg], paths: ["Media"], cwd: null })
        expect(r.status).toBe(200)
        expect(r.outcome).toMatchObject({ status: "failed", code: null })
        expect(r.outcome!.error).toMatch(/worker refused the job/)
        expect(r.stdout).toBe("")
      }
    })

    test("10 concurrent jobs all return local ffprobe's output", async () => {
      const args = ["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"]
      const local = await c.local("ffprobe", [...args, storage])
      const runs = await Promise.all(Array.from({ length: 10 }, () => c.run("ffprobe", [...args, media])))
      for (const r of runs) {
        expectOk(r)
        expect(r.out).toBe(local.out)
      }
      const jobs = await c.jobs()
      expect(new Set(jobs.map((j) => j.id)).size).toBe(jobs.length)
    }, 60_000)

    test("the coordinator unreachable gives one dffmpeg: line and exit 1", async () => {
      const cfg = join(c.dir, "client-down.yaml")
      writeFileSync(
        cfg,
        JSON.stringify({
          client_id: "client1",
          hmac_key_file: "client1.key",
          coordinator: { port: 1 },
          paths: { Media: c.clientMedia },
        }),
      )
      const r = await c.run("ffprobe", ["-version"], { env: { DFFMPEG_CLIENT_CONFIG: cfg } })
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/^dffmpeg: cannot reach the coordinator at http:\/\/127\.0\.0\.1:1: /)
      expect(r.err.trim().split("\n").length).toBe(1)
    })

    test("a user added by admin --local while the coordinator runs signs at once (one secret file, one credential view)", async () => {
      const key = await c.addUser("late-client", "client")
      const r = await signedFetch(c.url, { client: "late-client", key, method: "GET", path: "/api/v1/jobs" })
      expect(r.status).toBe(200)
      const wrong = await signedFetch(c.url, {
        client: "late-client",
        key: c.key("client1"),
        method: "GET",
        path: "/api/v1/jobs",
      })
      expect(wrong.status).toBe(401)
    })

    test("a wrong key gives one dffmpeg: line about credentials and exit 1", async () => {
      const cfg = join(c.dir, "client-badkey.yaml")
      writeFileSync(
        cfg,
        JSON.stringify({
          client_id: "client1",
          hmac_key: Buffer.alloc(32, 7).toString("base64"),
          coordinator: { port: c.port },
        }),
      )
      const r = await c.run("ffprobe", ["-version"], { env: { DFFMPEG_CLIENT_CONFIG: cfg } })
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/^dffmpeg: the coordinator refused our credentials/)
    })
  })
}
