import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
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

  test("a worker whose scratch folder (TMPDIR) cannot be used (exit 3)", async () => {
    const file = join(dir, "worker.yaml")
    writeFileSync(
      file,
      JSON.stringify({ client_id: "w9", hmac_key: Buffer.alloc(32, 3).toString("base64"), coordinator: { port: 1 } }),
    )
    const r = await dffmpeg(["worker", "--config", file], { TMPDIR: join(dir, "no-such-tmp") })
    expectOneLine(r, 3, /the scratch folder .*no-such-tmp \(TMPDIR, else \/tmp\) cannot be used: ENOENT/)
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

// As an unprivileged user: what root could always read or bind. The suite runs as root (as CI does, and
// scripts/setup.sh installs setpriv with util-linux); run otherwise, setpriv fails and so do these tests.
describe("start-up as an unprivileged user", () => {
  const asNobody = (d: string, args: string[]) =>
    c.exec(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BIN, ...args], {
      cwd: d,
      env: { HOME: d },
    })
  /** A folder nobody can work in, with a coordinator config whose database is in it. */
  const open = () => {
    const d = mkdtempSync(join(tmpdir(), "dffmpeg-nobody-"))
    made.push(d)
    chmodSync(d, 0o777)
    const file = join(d, "coordinator.yaml")
    writeFileSync(
      file,
      JSON.stringify({ host: "127.0.0.1", port: 0, database: { engine: "sqlite", path: join(d, "d.db") } }),
    )
    chmodSync(file, 0o644)
    return { d, file }
  }
  const made: string[] = []
  afterAll(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true })
  })

  test("an unreadable config file, a port below 1024 (exit 3)", async () => {
    const { d, file } = open()
    expectOneLine(
      await asNobody(d, ["coordinator", "--config", file, "--port", "80"]),
      3,
      /cannot listen on 127\.0\.0\.1:80: permission denied/,
    )
    chmodSync(file, 0o000)
    expectOneLine(
      await asNobody(d, ["coordinator", "--config", file]),
      3,
      /cannot read config file .*: permission denied \(EACCES\)/,
    )
  })
})

describe("database paths the coordinator cannot use", () => {
  test("a folder as database.path, a database folder that does not exist (exit 3)", async () => {
    const folder = mkdtempSync(join(dir, "dbdir-"))
    const asDir = await dffmpeg([
      "coordinator",
      "--config",
      coordinatorConfig({ database: { engine: "sqlite", path: folder } }),
    ])
    expectOneLine(asDir, 3, /database\.path .* is a directory; name a file in it/)
    const missing = join(dir, "no-such-folder", "sub", "d.db")
    const r = await dffmpeg([
      "coordinator",
      "--config",
      coordinatorConfig({ database: { engine: "sqlite", path: missing } }),
    ])
    expectOneLine(r, 3, /cannot be created: ENOENT \(its folder .*no-such-folder\/sub does not exist/)
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
    expect(readdirSync(join(state, "db")).sort()).toEqual(["dffmpeg.db", "dffmpeg.db.secret"])
    // A read on a database whose secret file is gone reads it as it is and makes no new secret.
    rmSync(join(state, "db", "dffmpeg.db.secret"))
    const ls = await dffmpeg(["admin", "--config", file, "users", "ls", "--json"])
    expect([ls.code, JSON.parse(ls.out).map((u: { name: string }) => u.name)]).toEqual([0, ["ops"]])
    expect(readdirSync(join(state, "db"))).toEqual(["dffmpeg.db"])
  })
})

describe("config check", () => {
  const KEY = Buffer.alloc(32, 7).toString("base64")
  /** A fresh directory used as cwd and HOME, with `files` written in it. */
  const home = (files: Record<string, unknown>) => {
    const d = mkdtempSync(join(dir, "home-"))
    for (const [name, body] of Object.entries(files)) {
      mkdirSync(join(d, name, ".."), { recursive: true })
      writeFileSync(join(d, name), typeof body === "string" ? body : JSON.stringify(body))
    }
    return d
  }
  const check = (d: string, args: string[], env: Record<string, string> = {}) =>
    c.exec([BIN, "config", "check", ...args], { cwd: d, env: { HOME: d, ...env } })

  test("shows which candidate of the search won, resolved values with secrets masked, and key files readable or not", async () => {
    const d = home({
      "dffmpeg-worker.yaml": {
        client_id: "w1",
        hmac_key: KEY,
        coordinator: { host: "127.0.0.1", port: 1 },
        run_as: "nobody",
      },
      ".config/dffmpeg/worker.yaml": { client_id: "other" },
      "dffmpeg-client.yaml": {
        client_id: "c1",
        hmac_key_file: "c1.key",
        coordinator: { port: 1, ca_file: "nope.pem", scheme: "https" },
      },
      "c1.key": KEY,
      "dffmpeg-coordinator.yaml": { database: { engine: "postgres", url: "postgres://u:hunter2@127.0.0.1/db" } },
    })
    const r = await check(d, ["--json"])
    const report = JSON.parse(r.out) as { valid: boolean; roles: Record<string, any>[] }
    const byRole = Object.fromEntries(report.roles.map((x) => [x.role, x]))
    expect(byRole.worker.file).toBe(join(d, "dffmpeg-worker.yaml"))
    expect(byRole.worker.candidates.map((x: any) => [x.path, x.exists, x.used]).slice(0, 2)).toEqual([
      [join(d, "dffmpeg-worker.yaml"), true, true],
      [join(d, ".config/dffmpeg/worker.yaml"), true, false],
    ])
    expect(byRole.worker.values.hmac_key).toBe("***")
    expect(byRole.worker.values.client_id).toBe("w1")
    expect(byRole.coordinator.values["database.url"]).toBe("postgres://u:***@127.0.0.1/db")
    expect(byRole.client.files).toEqual([
      { key: "hmac_key_file", path: join(d, "c1.key"), readable: true },
      { key: "coordinator.ca_file", path: join(d, "nope.pem"), readable: false, problem: "ENOENT" },
    ])
    // The client's CA file is missing: invalid, exit 3; no secret anywhere in the output.
    expect([byRole.client.valid, byRole.worker.valid, byRole.coordinator.valid, report.valid]).toEqual([
      false,
      true,
      true,
      false,
    ])
    expect(byRole.client.errors).toEqual([`coordinator.ca_file ${join(d, "nope.pem")} cannot be read: ENOENT`])
    expect(r.code).toBe(3)
    for (const secret of [KEY, "hunter2"]) expect(r.out + r.err).not.toContain(secret)
    const text = await check(d, [])
    expect(text.code).toBe(3)
    expect(text.out).toContain(`* ${join(d, "dffmpeg-worker.yaml")}: used`)
    expect(text.out).toContain(`- ${join(d, ".config/dffmpeg/worker.yaml")}: exists, not used`)
    for (const secret of [KEY, "hunter2"]) expect(text.out + text.err).not.toContain(secret)
    expectOneLine(text, 3, /^dffmpeg: invalid configuration: client/)
  })

  test("unknown keys are warnings with a did-you-mean; valid is exit 0; --role picks one role", async () => {
    const d = home({ "dffmpeg-coordinator.yaml": { hots: "0.0.0.0", janitor: { intervl: 5 } } })
    const r = await check(d, ["--role", "coordinator", "--json"])
    expect(r.code).toBe(0)
    const [role] = JSON.parse(r.out).roles
    expect(role.warnings).toEqual([
      `unknown config key hots in ${join(d, "dffmpeg-coordinator.yaml")} (ignored; did you mean host?)`,
      `unknown config key janitor.intervl in ${join(d, "dffmpeg-coordinator.yaml")} (ignored; did you mean interval?)`,
    ])
    const worker = await check(d, ["--role", "worker"])
    expect(worker.code).toBe(3)
    expect(worker.out).toContain("worker: no config file found (INVALID)")
  })

  test("an explicit FILE that is missing is exit 3; the environment variable is shown as the source", async () => {
    const d = home({ "w.yaml": { client_id: "w1", hmac_key: KEY, coordinator: { port: 1 } } })
    const missing = await check(d, ["--role", "worker", join(d, "nope.yaml")])
    expect(missing.code).toBe(3)
    expect(missing.out).toContain(`config file ${join(d, "nope.yaml")} does not exist`)
    const env = await check(d, ["--role", "worker", "--json"], { DFFMPEG_WORKER_CONFIG: join(d, "w.yaml") })
    expect(env.code).toBe(0)
    expect(JSON.parse(env.out).roles[0].candidates).toEqual([
      { path: join(d, "w.yaml"), source: "environment", exists: true, used: true },
    ])
    expectOneLine(await check(d, ["w.yaml"]), 2, /cannot tell which role w\.yaml is for/)
    expectOneLine(await check(d, []), 3, /no config file found for any role/)
  })

  test("the proxy's failure to reach the coordinator points to config check when a warning was hidden", async () => {
    const d = home({
      "typo.yaml": { client_id: "c1", hmac_key: KEY, coordinator: { hots: "10.9.9.9", port: 1 } },
      "clean.yaml": { client_id: "c1", hmac_key: KEY, coordinator: { port: 1 } },
    })
    const probe = (file: string) =>
      c.exec([join(c.binDir, "ffprobe"), "-version"], {
        cwd: d,
        env: { HOME: d, DFFMPEG_CLIENT_CONFIG: join(d, file) },
      })
    const typo = await probe("typo.yaml")
    expectOneLine(
      typo,
      1,
      /cannot reach the coordinator .*\(the config has 1 warning\(s\) not shown here: run dffmpeg config check\)$/,
    )
    expect(typo.err.split("\n").filter(Boolean).length).toBe(1)
    const clean = await probe("clean.yaml")
    expectOneLine(clean, 1, /cannot reach the coordinator/)
    expect(clean.err).not.toContain("config check")
  })
})

describe("help", () => {
  /** Lines longer than `width` that could have been broken (more than one word). */
  const tooWide = (text: string, width: number) =>
    text.split("\n").filter((l) => l.length > width && l.trim().split(" ").length > 1)

  test("is wrapped to 80 columns when stdout is not a terminal, to COLUMNS when set, with examples", async () => {
    const plain = await dffmpeg(["admin", "--help"])
    expect(plain.code).toBe(0)
    expect(tooWide(plain.out, 80)).toEqual([])
    expect(plain.out).toContain("\nExamples:\n  dffmpeg admin ")
    const narrow = await dffmpeg(["coordinator", "--help"], { COLUMNS: "50" })
    expect(tooWide(narrow.out, 50)).toEqual([])
    expect(narrow.out).toContain("--port <port>")
    expect(narrow.out.split("\n").some((l) => l.length > 40)).toBe(true)
  })
})
