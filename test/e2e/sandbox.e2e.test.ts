import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs"
import { join } from "node:path"
import { waitFor } from "../helpers/bin.ts"
import { Cluster, SANDBOX_USER, type RunResult } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"

/**
 * The kernel-enforced layer alone: workers run with `argument_policy: false` here (unless a test says
 * otherwise), so only bubblewrap stands between a job and the worker's files and network. Each
 * confinement case has a control run on an unconfined worker (`sandbox: none`) that does leak, so
 * these tests can fail.
 */
const NOBODY = 65534
const CANARY = `canary-${crypto.randomUUID()}`

let c: Cluster
let canary: string
let hits: string[] = []
let http: ReturnType<typeof Bun.serve>

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, maxJobs: 2, workerConfig: { argument_policy: false } })
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
  // Beside the storage, outside every mapping; readable by the job's user if nothing stopped it.
  canary = join(c.dir, "canary")
  writeFileSync(canary, CANARY)
  chmodSync(canary, 0o644)
  mkdirSync(join(c.dir, "outside"))
  chmodSync(join(c.dir, "outside"), 0o777)
  http = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => (hits.push(new URL(req.url).pathname), new Response(CANARY)),
  })
}, 60_000)

afterAll(async () => {
  http?.stop(true)
  await c?.stop()
})

const fail = (r: RunResult) => `exit ${r.code}; stderr:\n${r.err}\n${c.logs()}`
/**
 * Runs the proxy from inside the client's mapped directory, so relative paths start at the root, with a
 * client that sends the canary's path as it is (a passthrough path; the stock client refuses it itself).
 */
const ffmpeg = (args: string[]) =>
  c.run("ffmpeg", args, {
    cwd: c.clientMedia,
    timeoutMs: 30_000,
    env: c.clientWith("canary-client", { passthrough_paths: ["/dev/null", canary] }),
  })
/** ffmpeg's data muxer copies an input's bytes to stdout: the canary's, if it could be opened. */
const dump = (input: string) => ["-v", "error", "-f", "data", "-i", input, "-map", "0", "-c", "copy", "-f", "data", "-"]
/** Reads of the canary in the ways the sandbox must stop. */
const reads = (): [string, string[]][] => [
  ["../canary from the root", dump("../canary")],
  ["file:../canary", dump("file:../canary")],
  ["concat: with the absolute path", dump(`concat:${canary}`)],
]
/** A write beside the storage, into a folder the job's user could write to if it saw it. */
const escape = () => ["-v", "error", "-y", "-i", "av.mkv", "-t", "0.2", "-c", "copy", "../outside/escaped.mkv"]

async function restartWorker(extra: Record<string, unknown>) {
  await c.workers[0]?.stop("SIGTERM")
  return c.startWorker("worker1", extra)
}

describe("a sandboxed job", () => {
  test("reads and writes inside its root, and its output files belong to run_as", async () => {
    const r = await ffmpeg(["-v", "error", "-y", "-i", "av.mkv", "-t", "0.5", "-c", "copy", "owned.mkv"])
    expect(r.code, fail(r)).toBe(0)
    const st = statSync(join(c.storage, "owned.mkv"))
    expect({ uid: st.uid, gid: st.gid }).toEqual({ uid: NOBODY, gid: NOBODY })
    expect(c.workers[0].log()).toMatch(/jobs run sandboxed sandbox=bwrap user="nobody \(65534:65534\)"/)
  })

  test.each(reads())("cannot read a file outside every mapping: %s", async (_name, args) => {
    const r = await ffmpeg(args)
    expect(r.code).not.toBe(0)
    expect(r.out).not.toContain(CANARY)
    expect(r.err).toMatch(/No such file or directory/)
  })

  test("the same reads are also held with the argument policy on (refused, or failing to open)", async () => {
    await restartWorker({ argument_policy: true })
    try {
      for (const [name, args] of reads()) {
        const r = await ffmpeg(args)
        expect({ name, code: r.code === 0 ? 0 : "failed", leaked: r.out.includes(CANARY) }).toEqual({
          name,
          code: "failed",
          leaked: false,
        })
      }
    } finally {
      await restartWorker({})
    }
  }, 30_000)

  test("cannot write outside its roots", async () => {
    const before = readdirSync(c.dir).sort()
    const r = await ffmpeg(escape())
    expect(r.code).not.toBe(0)
    expect(r.err).toMatch(/No such file or directory/)
    expect(readdirSync(join(c.dir, "outside"))).toEqual([])
    expect(readdirSync(c.dir).sort()).toEqual(before)
  })

  test("has no network: a loopback HTTP server gets no request", async () => {
    hits = []
    const r = await ffmpeg(["-v", "error", "-i", `http://127.0.0.1:${http.port}/sandboxed.mkv`, "-f", "null", "-"])
    expect(r.code).not.toBe(0)
    expect(r.err).toMatch(/Connection refused|Network is unreachable|Cannot assign requested address/)
    expect(hits).toEqual([])
  })

  test("allow_network: true gives it the network (the same request now arrives)", async () => {
    await restartWorker({ allow_network: true })
    try {
      hits = []
      await ffmpeg(["-v", "error", "-i", `http://127.0.0.1:${http.port}/allowed.mkv`, "-f", "null", "-"])
      expect(hits).toEqual(["/allowed.mkv"])
    } finally {
      await restartWorker({})
    }
  }, 30_000)

  test("with allow_network, allowed_hosts decides: a host not listed is refused with one line and never reached, a listed one is", async () => {
    const url = `http://127.0.0.1:${http.port}/hosts.mkv`
    await restartWorker({ argument_policy: true, allow_network: true, allowed_hosts: ["192.0.2.1"] })
    try {
      hits = []
      const refused = await ffmpeg(["-v", "error", "-i", url, "-f", "null", "-"])
      if (refused.code !== 1) throw new Error(fail(refused))
      expect(refused.err.trim().split("\n")).toEqual([
        expect.stringMatching(
          new RegExp(
            `^dffmpeg: .*worker refused the job: argument 4 "http://127\\.0\\.0\\.1:${http.port}/hosts\\.mkv": host 127\\.0\\.0\\.1:${http.port} is not in this worker's allowed_hosts`,
          ),
        ),
      ])
      expect(hits).toEqual([])
      await restartWorker({ argument_policy: true, allow_network: true, allowed_hosts: ["127.0.0.1"] })
      await ffmpeg(["-v", "error", "-i", url, "-f", "null", "-"])
      expect(hits).toEqual(["/hosts.mkv"])
    } finally {
      await restartWorker({})
    }
  }, 40_000)

  test("SIGHUP to the shim ends the remote ffmpeg as it ends a local one (same exit code)", async () => {
    const args = [
      "-hide_banner",
      "-nostats",
      "-re",
      "-f",
      "lavfi",
      "-i",
      "testsrc=size=64x64:rate=10",
      "-t",
      "60",
      "-f",
      "null",
      "-",
    ]
    const local = Bun.spawn(["ffmpeg", ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" })
    const shim = c.spawnProxy("ffmpeg", args)
    await waitFor(async () => (await c.jobs()).find((j) => j.status === "running"), {
      timeoutMs: 15_000,
      what: "a running job",
    })
    // Once both have started encoding (ffmpeg's handlers are in place).
    await Bun.sleep(1000)
    local.kill("SIGHUP")
    shim.kill("SIGHUP")
    const [lc, sc] = await Promise.all([local.exited, shim.exited])
    expect(sc).toBe(lc)
    expect(sc).toBe(129)
  }, 30_000)
})

describe("without the sandbox (control)", () => {
  test("sandbox: none warns at start, shows as unconfined, and the same reads and requests do leak", async () => {
    const w = await restartWorker({ sandbox: "none" })
    try {
      expect(w.log()).toMatch(/WARN.*sandbox: none: jobs run UNCONFINED/)
      const ls = await c.admin(["workers", "ls"])
      expect(ls.out).toMatch(/^worker1 +online +0\/2 +(\S+ +){2}ffmpeg,ffprobe +Media +none \(unconfined\) /m)
      const shown = JSON.parse((await c.admin(["workers", "show", "worker1", "--json"])).out)
      expect(shown.capabilities).toMatchObject({ sandbox: "none", runAs: "nobody (65534:65534)" })
      const r = await ffmpeg(reads()[0][1])
      expect(r.out).toContain(CANARY)
      expect((await ffmpeg(escape())).code).toBe(0)
      expect(readdirSync(join(c.dir, "outside"))).toEqual(["escaped.mkv"])
      hits = []
      await ffmpeg(["-v", "error", "-i", `http://127.0.0.1:${http.port}/unconfined.mkv`, "-f", "null", "-"])
      expect(hits).toEqual(["/unconfined.mkv"])
    } finally {
      await restartWorker({})
    }
    const shown = JSON.parse((await c.admin(["workers", "show", "worker1", "--json"])).out)
    expect(shown.capabilities).toMatchObject({ sandbox: "bwrap", runAs: "nobody (65534:65534)" })
  }, 30_000)
})

describe("start-up refusals", () => {
  const refused = async (extra: Record<string, unknown>, env: Record<string, string> = {}) => {
    const p = c.spawnWorker("refused", extra, env)
    const code = await p.exited
    const lines = p
      .log()
      .split("\n")
      .filter((l) => l.startsWith("dffmpeg: "))
    return { code, lines, log: p.log() }
  }

  test("a root worker with no run_as and no allow_root refuses to start, with one line naming the fix", async () => {
    const r = await refused({ run_as: undefined })
    expect(r.code).toBe(3)
    expect(r.lines).toEqual([
      expect.stringMatching(
        /^dffmpeg: the worker runs as root and would run ffmpeg as root: set run_as .* or allow_root: true/,
      ),
    ])
  })

  test("a key file others can read is warned about at start, naming the chmod", async () => {
    await c.addUser("openkey", "worker")
    const file = join(c.dir, "openkey.key")
    chmodSync(file, 0o644)
    const p = c.spawnWorker("openkey")
    try {
      await p.waitForLine(
        new RegExp(
          `WARN .*hmac_key_file ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is accessible by others \\(mode 0644\\); make it private: chmod 600`,
        ),
      )
      await p.waitForLine(/worker registered/)
    } finally {
      await p.stop("SIGTERM")
    }
  })

  test("allow_root: true lets it start, and says so to operators", async () => {
    await c.addUser("rootok", "worker")
    const p = c.spawnWorker("rootok", { run_as: undefined, allow_root: true })
    try {
      await p.waitForLine(/worker registered/)
      const shown = JSON.parse((await c.admin(["workers", "show", "rootok", "--json"])).out)
      expect(shown.capabilities).toMatchObject({ sandbox: "bwrap", runAs: "root (0:0)" })
    } finally {
      await p.stop("SIGTERM")
    }
  })

  test("without bwrap on PATH it refuses to start, naming the bubblewrap package and sandbox: none", async () => {
    const bin = join(c.dir, "no-bwrap-bin")
    mkdirSync(bin, { recursive: true })
    if (!existsSync(join(bin, "setpriv"))) symlinkSync(Bun.which("setpriv")!, join(bin, "setpriv"))
    const r = await refused({ binaries: { ffmpeg: "/usr/bin/ffmpeg" } }, { PATH: bin })
    expect(r.code).toBe(3)
    expect(r.lines).toEqual([
      expect.stringMatching(
        /^dffmpeg: sandbox: bwrap, but bwrap is not installed: install the bubblewrap package .*sandbox: none/,
      ),
    ])
  })

  test("a binary that cannot run in the sandbox fails the probe; sandbox_ro_paths with what it needs fixes it", async () => {
    // A shell whose interpreter lives outside every path the sandbox shows.
    const hidden = join(c.dir, "hidden")
    const tools = join(c.dir, "tools")
    mkdirSync(hidden, { recursive: true })
    mkdirSync(tools, { recursive: true })
    chmodSync(hidden, 0o755)
    chmodSync(tools, 0o755)
    copyFileSync("/bin/sh", join(hidden, "sh"))
    writeFileSync(join(tools, "ffmpeg"), `#!${join(hidden, "sh")}\necho "ffmpeg version fake"\n`, { mode: 0o755 })
    const r = await refused({ binaries: { ffmpeg: join(tools, "ffmpeg") } })
    expect(r.code).toBe(3)
    expect(r.lines).toEqual([
      expect.stringMatching(
        /^dffmpeg: sandbox probe failed: ffmpeg \(.*tools\/ffmpeg\) -version did not run in the sandbox .*sandbox_ro_paths/,
      ),
    ])
    await c.addUser("probed", "worker")
    const ok = c.spawnWorker("probed", { binaries: { ffmpeg: join(tools, "ffmpeg") }, sandbox_ro_paths: [hidden] })
    try {
      await ok.waitForLine(/worker registered/)
    } finally {
      await ok.stop("SIGTERM")
    }
  })
})
