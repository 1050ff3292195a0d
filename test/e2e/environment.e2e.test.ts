import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"

/** The caller's environment that ffmpeg reads, through the proxy, against local ffmpeg. */

let c: Cluster

beforeAll(async () => {
  c = await Cluster.start({ workers: 1 })
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
}, 60_000)

afterAll(async () => {
  await c?.stop()
})

function expectOk(r: RunResult) {
  if (r.code !== 0) throw new Error(`exit ${r.code}; stderr:\n${r.err}\n${c.logs()}`)
}

/** A client config like the cluster's with other keys, and the env that makes the proxy use it. */
function clientWith(name: string, keys: Record<string, unknown>): Record<string, string> {
  const file = join(c.dir, `${name}.yaml`)
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(c.clientConfig, "utf8")), ...keys }))
  return { DFFMPEG_CLIENT_CONFIG: file }
}

/** A report's lines that hold neither a time, a path nor a run's speed: what must equal local's. */
const stable = (report: string, paths: string[]) =>
  report
    .split(/[\r\n]+/)
    .filter((l) => !paths.some((p) => l.includes(p)))
    .filter((l) => !/started on|Report written|speed=|fps=|time=|elapsed=/.test(l))

/** An unknown option: ffmpeg's error, coloured when AV_LOG_FORCE_COLOR says so, and no path in it. */
const UNKNOWN = ["-hide_banner", "-nosuchopt"]

describe("the caller's environment for ffmpeg", () => {
  test("FFREPORT=file=<caller path>:level=32 writes the report under the caller's path, as local ffmpeg's", async () => {
    const args = (input: string) => ["-hide_banner", "-nostats", "-i", input, "-t", "0.5", "-f", "null", "-"]
    const remoteLog = join(c.clientMedia, "report.log")
    const localLog = join(c.storage, "local-report.log")
    const remote = await c.run("ffmpeg", args(join(c.clientMedia, "av.mkv")), {
      env: { FFREPORT: `file=${remoteLog}:level=32` },
    })
    const local = await c.local("ffmpeg", args(join(c.storage, "av.mkv")), {
      env: { FFREPORT: `file=${localLog}:level=32` },
    })
    expectOk(remote)
    expect(remote.code).toBe(local.code)
    // Written on the storage the caller sees, at the caller's path.
    expect(existsSync(remoteLog)).toBe(true)
    const got = readFileSync(remoteLog, "utf8")
    const want = readFileSync(localLog, "utf8")
    expect(got).toContain("Log level: 32")
    expect(got).toContain("Input #0, matroska,webm")
    const shown = stable(got, [c.clientMedia, c.storage, "/mnt"])
    expect(shown.length).toBeGreaterThan(10)
    expect(shown).toEqual(stable(want, [c.clientMedia, c.storage]))
  })

  test("FFREPORT naming a file under no mapping is refused with one dffmpeg: line, before any job", async () => {
    const r = await c.run("ffmpeg", UNKNOWN, { env: { FFREPORT: "file=/var/tmp/elsewhere.log:level=32" } })
    expect(r.code).toBe(1)
    expect(r.err).toStartWith("dffmpeg: FFREPORT file=/var/tmp/elsewhere.log: path /var/tmp/elsewhere.log")
    expect(r.err.trimEnd().split("\n")).toHaveLength(1)
    expect(existsSync("/var/tmp/elsewhere.log")).toBe(false)
  })

  test("AV_LOG_FORCE_COLOR=1 gives the same colour escapes in stderr as local ffmpeg; without it, none", async () => {
    const env = { AV_LOG_FORCE_COLOR: "1" }
    const remote = await c.run("ffmpeg", UNKNOWN, { env })
    const local = await c.local("ffmpeg", UNKNOWN, { env })
    expect(local.err).toContain("\x1b[")
    expect([remote.code, remote.err]).toEqual([local.code, local.err])
    const plain = await c.run("ffmpeg", UNKNOWN)
    expect(plain.err).not.toContain("\x1b[")
    expect(plain.err).toBe((await c.local("ffmpeg", UNKNOWN)).err)
  })

  test("a variable not on forward_env never leaves the caller, and one forward_env leaves out does not either", async () => {
    const env = { AV_LOG_FORCE_COLOR: "1", DFFMPEG_SECRET_TEST: "x" }
    const r = await c.run("ffmpeg", UNKNOWN, { env })
    expect(r.err).toContain("\x1b[")
    // The job as the coordinator recorded it: the allow-listed variable and nothing else.
    const [last] = (await c.jobs()) as unknown as { env: Record<string, string> }[]
    expect(last.env).toEqual({ AV_LOG_FORCE_COLOR: "1" })
    const without = await c.run("ffmpeg", UNKNOWN, {
      env: { ...env, ...clientWith("noforward", { forward_env: ["TZ"] }) },
    })
    expect(without.err).not.toContain("\x1b[")
  })
})

describe("a worker's allowed_env", () => {
  let w: Cluster
  beforeAll(async () => {
    w = await Cluster.start({ workers: 1, workerConfig: { allowed_env: ["TZ"] } })
  }, 60_000)
  afterAll(async () => {
    await w?.stop()
  })

  test("drops and logs what it does not list: ffmpeg never sees it", async () => {
    const r = await w.run("ffmpeg", UNKNOWN, { env: { AV_LOG_FORCE_COLOR: "1" } })
    expect(r.err).not.toContain("\x1b[")
    expect(r.err).toBe((await w.local("ffmpeg", UNKNOWN)).err)
    await w.workers[0]!.waitForLine(/caller environment dropped/)
    expect(w.workers[0]!.log()).toContain("AV_LOG_FORCE_COLOR")
  })
})
