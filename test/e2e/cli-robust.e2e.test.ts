import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { BIN } from "../helpers/bin.ts"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"

/**
 * The CLI never crashes on what an operator types (issue 16): `client submit` hands an ffprobe command
 * through untouched, and every start-up problem is one `dffmpeg:` line and its exit code, never a stack.
 */
let c: Cluster
let media: string
/** A directory of this test's own, with no config in it (HOME points here too, so no search finds one). */
let dir: string
beforeAll(async () => {
  c = await Cluster.start({})
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
  media = join(c.clientMedia, "av.mkv")
  dir = mkdtempSync(join(c.dir, "robust-"))
}, 30_000)
afterAll(async () => {
  await c?.stop()
})

/** The compiled binary in `dir`, with HOME there too. */
const dffmpeg = (args: string[], env: Record<string, string> = {}) =>
  c.exec([BIN, ...args], { cwd: dir, env: { HOME: dir, ...env }, timeoutMs: 20_000 })

/** A failure as the brief wants it: exactly one `dffmpeg:` line, no stack frame, no "unexpected error". */
function expectOneLine(r: RunResult, code: number, says: RegExp) {
  const lines = r.err.split("\n").filter((l) => l.startsWith("dffmpeg:"))
  expect({
    code: r.code,
    lines: lines.length,
    stack: /^\s+at /m.test(r.err),
    unexpected: r.err.includes("unexpected error"),
  }).toEqual({
    code,
    lines: 1,
    stack: false,
    unexpected: false,
  })
  expect(lines[0]).toMatch(says)
}

/** A coordinator config in its own folder under `dir`, its database beside it. */
function coordinatorConfig(extra: Record<string, unknown> = {}): string {
  const d = mkdtempSync(join(dir, "coord-"))
  const file = join(d, "coordinator.yaml")
  writeFileSync(file, JSON.stringify({ host: "127.0.0.1", port: 0, ...extra }))
  return file
}

describe("client submit passes the ffprobe command through untouched", () => {
  const cases: [string, () => string[]][] = [
    [
      "-v error -show_entries format=duration -of csv=p=0 FILE",
      () => ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", media],
    ],
    ["-hide_banner -show_format -show_streams FILE", () => ["-hide_banner", "-show_format", "-show_streams", media]],
    ["-h (ffprobe's help, not dffmpeg's)", () => ["-h"]],
  ]
  for (const [name, args] of cases)
    test(name, async () => {
      const remote = await c.client("submit", ["-b", "ffprobe", ...args()])
      const local = await c.local("ffprobe", args())
      expect(remote.code).toBe(local.code)
      expect(remote.code).toBe(0)
      expect(Buffer.from(remote.stdout).equals(Buffer.from(local.stdout))).toBe(true)
      expect(remote.out.length).toBeGreaterThan(0)
    })

  test("with -- too, and --help among its own options is dffmpeg's help", async () => {
    const args = ["-v", "error", "-show_entries", "format=nb_streams", "-of", "csv=p=0", media]
    const remote = await c.client("submit", ["--binary=ffprobe", "--", ...args])
    expect([remote.code, remote.out]).toEqual([0, "2\n"])
    const help = await dffmpeg(["client", "submit", "--help"])
    expect(help.code).toBe(0)
    expect(help.out).toContain("dffmpeg client submit")
    expect(help.out).toContain("--binary")
  })

  test("a typo of one of its own long options is a usage error, not an argument for ffmpeg", async () => {
    expectOneLine(
      await c.client("submit", ["--detatch", "-i", media]),
      2,
      /unknown option --detatch; did you mean --detach\?/,
    )
  })
})

describe("start-up problems are one line and an exit code", () => {
  test("the port is in use (exit 3)", async () => {
    const busy = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") })
    try {
      const r = await dffmpeg(["coordinator", "--config", coordinatorConfig(), "--port", String(busy.port)])
      expectOneLine(r, 3, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy.port}: the port is already in use`))
    } finally {
      busy.stop(true)
    }
  })

  for (const host of ["999.1.1.1", "nosuch.invalid"])
    test(`--host ${host} (exit 3)`, async () => {
      const r = await dffmpeg(["coordinator", "--config", coordinatorConfig(), "--host", host])
      expectOneLine(
        r,
        3,
        new RegExp(`cannot listen on ${host.replace(/\./g, "\\.")}:0: not an address or a name of this host`),
      )
    })

  test("--port 99999 is a usage error about the flag, not the config file (exit 2)", async () => {
    const r = await dffmpeg(["coordinator", "--config", coordinatorConfig(), "--port", "99999"])
    expectOneLine(r, 2, /^dffmpeg: --port must be a number from 0 to 65535/)
    expect(r.err).not.toContain("config")
  })

  test("--log-level nonsense is a usage error (exit 2), for the worker too", async () => {
    expectOneLine(
      await dffmpeg(["coordinator", "--log-level", "loud"]),
      2,
      /--log-level must be one of debug, info, warn, error/,
    )
    expectOneLine(await dffmpeg(["worker", "--log-level", "loud"]), 2, /--log-level must be one of/)
  })

  test("a config file that is a folder (exit 3), for every role", async () => {
    const folder = mkdtempSync(join(dir, "folder-"))
    for (const args of [
      ["coordinator", "--config", folder],
      ["worker", "--config", folder],
      ["client", "jobs", "--config", folder],
      ["admin", "users", "ls", "--local", "--config", folder],
    ])
      expectOneLine(await dffmpeg(args), 3, /is a directory, not a YAML file/)
    // The proxy-like submit ends as the proxy does (1), still with one line.
    expectOneLine(await dffmpeg(["client", "submit", "--config", folder, "-version"]), 1, /is a directory/)
  })

  test("a database folder under a file (exit 3)", async () => {
    const file = join(dir, "plain-file")
    writeFileSync(file, "")
    const r = await dffmpeg([
      "coordinator",
      "--config",
      coordinatorConfig({ database: { engine: "sqlite", path: join(file, "d.db") } }),
    ])
    expectOneLine(r, 3, /cannot be created: ENOTDIR/)
  })
})

describe("mistyped commands and flags", () => {
  const cases: [string[], RegExp][] = [
    [["cordinator"], /unknown command "cordinator" for dffmpeg; did you mean "coordinator"\?/],
    [["admin", "usrs", "ls"], /unknown command "usrs" for dffmpeg admin; did you mean "users"\?/],
    [["client", "sbumit"], /unknown command "sbumit" for dffmpeg client; did you mean "submit"\?/],
    [["admin", "--lcoal", "users", "ls"], /unknown option --lcoal; did you mean --local\?/],
    [["admin", "users", "ls", "--jsno"], /unknown option --jsno; did you mean --json\?/],
    [["coordinator", "--prot", "0"], /unknown option --prot; did you mean --port\?/],
    [["frobnicate"], /^dffmpeg: unknown command "frobnicate" for dffmpeg$/],
  ]
  for (const [args, says] of cases)
    test(args.join(" "), async () => {
      expectOneLine(await dffmpeg(args), 2, says)
    })
})

describe("read-only verbs on a missing database create nothing", () => {
  test("users ls/show, jobs ls/show/logs, workers ls/show: exit 3, the folder untouched", async () => {
    const state = mkdtempSync(join(dir, "state-"))
    const file = join(state, "coordinator.yaml")
    writeFileSync(file, JSON.stringify({ database: { engine: "sqlite", path: join(state, "db", "dffmpeg.db") } }))
    const id = "01M8Y12TS6J9SBFQ11AV78PA86"
    for (const verb of [
      ["users", "ls"],
      ["users", "show", "ops"],
      ["jobs", "ls"],
      ["jobs", "show", id],
      ["jobs", "logs", id],
      ["workers", "ls"],
      ["workers", "show", "worker1"],
    ]) {
      const r = await dffmpeg(["admin", "--config", file, ...verb])
      expectOneLine(r, 3, /database .*dffmpeg\.db does not exist .*nothing was created/)
      expect(readdirSync(state)).toEqual(["coordinator.yaml"])
    }
    // db status says so in its report, and creates nothing either.
    const status = await dffmpeg(["admin", "--config", file, "db", "status"])
    expect(status.code).toBe(0)
    expect(status.out).toContain("not created yet")
    expect(readdirSync(state)).toEqual(["coordinator.yaml"])
    // A verb that writes still bootstraps a new database, as docs/cli.md shows.
    mkdirSync(join(state, "db"))
    const add = await dffmpeg(["admin", "--config", file, "users", "add", "ops", "--role", "admin"])
    expect(add.code).toBe(0)
    expect(readdirSync(join(state, "db")).sort()).toContain("dffmpeg.db")
  })
})
