import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { join } from "node:path"
import { apiFor } from "../helpers/api.ts"
import { BIN } from "../helpers/bin.ts"
import { Cluster } from "../helpers/cluster.ts"

/**
 * The CLI never exits before its output is drained (F9): a 100 MB+ job log read by a deliberately slow
 * reader arrives whole (a job's log, and a multi-megabyte `admin jobs ls --json`, which the old binary cut
 * to 128 KiB-4 MB with exit 0), and a reader that goes away early makes the command exit 7 (ExitCode.OUTPUT)
 * with one `dffmpeg:` line instead of 0. The proxy's relay of the same bytes stays exact.
 */
let c: Cluster
let id = ""
let expected = { bytes: 0, sha256: "" }

/** A real ffmpeg job writing 160 raw 640×360 RGB frames (110,592,000 bytes) to stdout. */
const RAW = [
  "-hide_banner",
  "-nostats",
  "-f",
  "lavfi",
  "-i",
  "testsrc=size=640x360:rate=25",
  "-frames:v",
  "160",
  "-pix_fmt",
  "rgb24",
  "-f",
  "rawvideo",
  "-",
]
const RAW_BYTES = 640 * 360 * 3 * 160

/**
 * Reads a stream slower than a program can write it: after every 256 KiB it yields for a millisecond
 * (a throttle, not a wait for any state), so most of the output is still queued in the writer when its
 * command has finished; before the fix, that queue was dropped at exit.
 */
async function slowRead(stream: ReadableStream<Uint8Array>): Promise<{ bytes: number; sha256: string }> {
  const hash = new Bun.CryptoHasher("sha256")
  let bytes = 0
  let next = 256 * 1024
  for await (const chunk of stream) {
    hash.update(chunk)
    bytes += chunk.length
    if (bytes >= next) {
      next += 256 * 1024
      await Bun.sleep(1)
    }
  }
  return { bytes, sha256: hash.digest("hex") }
}

beforeAll(async () => {
  // A detached job keeps relay.detached_output_mb of output (64 MiB by default): room for all of this one.
  c = await Cluster.start({ workers: 1, coordinatorConfig: { relay: { detached_output_mb: 256 } } })
  await c.enableAdmin()
  const local = Bun.spawn(["ffmpeg", ...RAW], { stdin: "ignore", stdout: "pipe", stderr: "ignore" })
  const sub = await c.client("submit", ["--detach", "--", ...RAW])
  expect(sub.code).toBe(0)
  id = sub.out.trim()
  const h = new Bun.CryptoHasher("sha256")
  let bytes = 0
  for await (const chunk of local.stdout) {
    h.update(chunk)
    bytes += chunk.length
  }
  expect(await local.exited).toBe(0)
  expected = { bytes, sha256: h.digest("hex") }
  await c.waitFor(async () => ["completed", "failed", "canceled"].includes((await c.job(id)).status), {
    timeoutMs: 120_000,
    intervalMs: 200,
    what: "the raw video job",
  })
  expect((await c.job(id)).status).toBe("completed")
}, 180_000)
afterAll(async () => {
  await c?.stop()
})

describe("CLI output", () => {
  test("the raw job wrote 100 MB+", () => {
    expect(expected.bytes).toBe(RAW_BYTES)
  })

  test.each([
    ["remote mode", () => ["--config", c.adminConfig!]],
    ["local mode", () => ["--local", "--config", c.coordinatorConfig]],
  ])(
    "admin jobs logs --stdout (%s) through a slow reader: every byte, then exit 0",
    async (_mode, mode) => {
      const p = Bun.spawn([BIN, "admin", ...mode(), "jobs", "logs", id, "--stdout"], {
        cwd: c.dir,
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      })
      const [got, err, code] = await Promise.all([slowRead(p.stdout), new Response(p.stderr).text(), p.exited])
      expect({ code, ...got }).toEqual({ code: 0, ...expected })
      expect(err).not.toContain("dffmpeg:")
    },
    120_000,
  )

  test("a reader that closes early (head -c 10): exit 7 and one dffmpeg: line, no hang", async () => {
    const script = `"$@" | head -c 10 | wc -c; echo "exit=\${PIPESTATUS[0]}"`
    const p = Bun.spawn(
      ["bash", "-c", script, "_", BIN, "admin", "--config", c.adminConfig!, "jobs", "logs", id, "--stdout"],
      { cwd: c.dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    )
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
    expect(code).toBe(0)
    expect(out).toBe("10\nexit=7\n")
    const ours = err.split("\n").filter((l) => l.startsWith("dffmpeg:"))
    expect(ours).toEqual([
      "dffmpeg: could not write all output to standard output (EPIPE: its reader closed it); the output is incomplete",
    ])
  }, 60_000)

  test("the proxy relays the same 100 MB+ byte for byte to a slow reader, with ffmpeg's exit code", async () => {
    const p = c.spawnProxy("ffmpeg", RAW)
    p.stdin.end()
    const [got, , code] = await Promise.all([slowRead(p.stdout), new Response(p.stderr).text(), p.exited])
    expect({ code, ...got }).toEqual({ code: 0, ...expected })
  }, 120_000)
})

describe("proxy mode when its reader goes away", () => {
  /** Runs `script` in bash with the ffmpeg symlink as $1 and the client config in the environment. */
  const bash = async (script: string, args: string[]) => {
    const p = Bun.spawn(["bash", "-c", script, "_", join(c.binDir, "ffmpeg"), ...args], {
      cwd: c.dir,
      env: { ...process.env, DFFMPEG_CLIENT_CONFIG: c.clientConfig },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    })
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
    return { out, err, code }
  }

  test("a closed stdout (head -c 10): exit 1 with one dffmpeg: line that names the canceled job", async () => {
    const res = await bash(`"$@" | head -c 10 | wc -c; echo "exit=\${PIPESTATUS[0]}"`, RAW)
    expect(res.out).toBe("10\nexit=1\n")
    const ours = res.err.split("\n").filter((l) => l.startsWith("dffmpeg:"))
    expect(ours).toHaveLength(1)
    expect(ours[0]).toMatch(/^dffmpeg: the reader closed our standard output; canceled job \w{26}$/)
  }, 60_000)

  test("a closed stderr alone keeps the remote exit code: a finished job is not turned into a failure", async () => {
    // showinfo writes a line per frame: about 640 KB of stderr, far more than a pipe holds.
    const args = [
      "-hide_banner",
      "-nostats",
      "-f",
      "lavfi",
      "-i",
      "testsrc=size=32x32:rate=100",
      "-frames:v",
      "2000",
      "-vf",
      "showinfo",
      "-f",
      "null",
      "-",
    ]
    const res = await bash(`"$@" 2> >(head -c 10 >/dev/null); echo "exit=$?"`, args)
    expect(res.out).toBe("exit=0\n")
  }, 60_000)
})

describe("a multi-megabyte listing", () => {
  let d: Cluster
  // Listings carry bounded summaries (at most 2048 characters of arguments per job) and pages of at
  // most limits.max_page_size: 1,000 jobs (the CLI's largest --limit) are over 2 MB in 5 pages, about
  // 35 times what a pipe buffers (the old binary cut such a listing to 128 KiB).
  const JOBS = 1000
  beforeAll(async () => {
    // No worker: the jobs stay in the database, queued (the quotas are raised for this).
    d = await Cluster.start({
      workers: 0,
      coordinatorConfig: { limits: { max_queued_per_client: JOBS, max_active_per_client: JOBS } },
    })
    await d.enableAdmin()
    const api = apiFor(d, "client1")
    const big = "x".repeat(1000)
    const submit = () =>
      api.json("POST", "/api/v1/jobs", {
        json: {
          binary: "ffmpeg",
          args: ["-i", big, "-metadata", big, "-f", "null", "-"],
          paths: [],
          cwd: null,
          stdin: false,
        },
      })
    for (let i = 0; i < JOBS; i += 8) await Promise.all(Array.from({ length: 8 }, submit))
  }, 120_000)
  afterAll(async () => {
    await d?.stop()
  })

  test.each([
    ["remote mode", () => ["--config", d.adminConfig!]],
    ["local mode", () => ["--local", "--config", d.coordinatorConfig]],
  ])(
    "admin jobs ls --json (%s) through a slow reader is the whole listing",
    async (_mode, mode) => {
      const cmd = [BIN, "admin", ...mode(), "jobs", "ls", "--json", "--limit", String(JOBS)]
      // A file takes every byte at once: the reference.
      const file = join(d.dir, "ls.json")
      expect(
        await Bun.spawn(cmd, { cwd: d.dir, stdin: "ignore", stdout: Bun.file(file), stderr: "ignore" }).exited,
      ).toBe(0)
      const whole = await Bun.file(file).bytes()
      expect(whole.length).toBeGreaterThan(2_000_000)
      expect((JSON.parse(new TextDecoder().decode(whole)) as unknown[]).length).toBe(JOBS)
      const p = Bun.spawn(cmd, { cwd: d.dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" })
      const [got, err, code] = await Promise.all([slowRead(p.stdout), new Response(p.stderr).text(), p.exited])
      expect({ code, err, ...got }).toEqual({
        code: 0,
        err: "",
        bytes: whole.length,
        sha256: new Bun.CryptoHasher("sha256").update(whole).digest("hex"),
      })
    },
    120_000,
  )
})
