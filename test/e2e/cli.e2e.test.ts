import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { BIN } from "../helpers/bin.ts"
import { Cluster, type RunResult } from "../helpers/cluster.ts"
import { signedFetch } from "../helpers/signed.ts"

/**
 * `dffmpeg admin` users and jobs through the compiled binary against a live cluster, in remote mode (an
 * admin identity over the signed API) and local mode (the coordinator's database), plus how the mode
 * is chosen. Workers, janitor and `dffmpeg client` views are in cli-workers.e2e.test.ts.
 */
let c: Cluster
beforeAll(async () => {
  c = await Cluster.start({})
  await c.enableAdmin()
}, 30_000)
afterAll(async () => {
  await c?.stop()
})

const canList = async (client: string, key: string) =>
  (await signedFetch(c.url, { client, key, method: "GET", path: "/api/v1/jobs" })).status
const parse = <T>(r: RunResult): T => {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.err}`)
  return JSON.parse(r.out) as T
}
const names = async () => parse<{ name: string }[]>(await c.remote(["users", "ls", "--json"])).map((u) => u.name)
/** Local mode as operators type it on the coordinator host. */
const local = (args: string[]) => c.exec([BIN, "admin", "--local", "--config", c.coordinatorConfig, ...args], {})

/** A short real encode writing ffmpeg's usual stderr (banner, `\r` status lines) through the proxy. */
const encode = (seconds: number, extra: string[] = []) => [
  "-hide_banner",
  "-re",
  "-f",
  "lavfi",
  "-i",
  "testsrc=size=160x120:rate=10",
  "-t",
  String(seconds),
  ...extra,
  "-f",
  "null",
  "-",
]

describe("admin users", () => {
  test("add prints only the key, which signs requests at once; ls and show list the user in both modes, never the key", async () => {
    const r = await c.remote(["users", "add", "alice", "--role", "client"])
    expect(r).toMatchObject({ code: 0, err: "" })
    expect(r.out).toMatch(/^[A-Za-z0-9+/]{43}=\n$/)
    const key = r.out.trim()
    expect(await canList("alice", key)).toBe(200)

    const ls = await c.remote(["users", "ls"])
    expect(ls.out).toMatch(/^NAME +ROLE +CREATED\n/)
    expect(ls.out).toMatch(/^alice +client +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/m)
    expect(ls.out).not.toContain(key)
    const remoteJson = parse<{ name: string; role: string; createdAt: number }[]>(
      await c.remote(["users", "ls", "--json"]),
    )
    expect(parse(await local(["users", "ls", "--json"]))).toEqual(remoteJson)
    expect(remoteJson.find((u) => u.name === "alice")).toEqual({
      name: "alice",
      role: "client",
      createdAt: expect.any(Number),
    })

    const show = await c.remote(["users", "show", "alice"])
    expect(show.out).toMatch(/^name +alice\nrole +client\ncreated +\d{4}-/)
    expect(parse(await c.remote(["users", "show", "alice", "--json"]))).toEqual(
      parse(await local(["users", "show", "alice", "--json"])),
    )

    const viaJson = parse<{ user: { name: string; role: string }; key: string }>(
      await local(["users", "add", "bob", "--role", "worker", "--json"]),
    )
    expect(viaJson.user).toMatchObject({ name: "bob", role: "worker" })
    expect(await canList("bob", viaJson.key)).toBe(200)
  })

  test("rotate-key prints a new key: the old one is refused with 401 from then on, the new one works", async () => {
    const old = await c.addUser("carol", "client")
    const r = await c.remote(["users", "rotate-key", "carol"])
    expect(r.code).toBe(0)
    const key = r.out.trim()
    expect(key).not.toBe(old)
    expect(await canList("carol", old)).toBe(401)
    expect(await canList("carol", key)).toBe(200)
    const again = parse<{ name: string; key: string }>(await local(["users", "rotate-key", "carol", "--json"]))
    expect(again.name).toBe("carol")
    expect(await canList("carol", key)).toBe(401)
    expect(await canList("carol", again.key)).toBe(200)
  })

  test("rm refuses the removed identity at once; removing yourself (409) or an unknown user fails and changes nothing", async () => {
    const key = await c.addUser("dave", "client")
    const r = await c.remote(["users", "rm", "dave"])
    expect(r).toMatchObject({ code: 0, out: "removed user dave (client)\n" })
    expect(await canList("dave", key)).toBe(401)

    const before = await names()
    const self = await c.remote(["users", "rm", "admin1"])
    expect(self).toMatchObject({
      code: 1,
      out: "",
      err: "dffmpeg: you cannot remove your own identity (admin1); use another admin identity\n",
    })
    const ghost = await c.remote(["users", "rm", "ghost", "--json"])
    expect(ghost.code).toBe(1)
    expect(JSON.parse(ghost.out)).toEqual({ error: { code: "E_NOT_FOUND", message: "no user ghost" } })
    expect(ghost.err).toBe("dffmpeg: no user ghost\n")
    expect((await local(["users", "show", "ghost"])).err).toBe("dffmpeg: no user ghost\n")
    expect(await names()).toEqual(before)
  })

  test("a bad name or role is a usage error (exit 2) and a duplicate fails (exit 1); nobody is created", async () => {
    const before = await names()
    for (const args of [
      ["add", "bad/name", "--role", "client"],
      ["add", "eve", "--role", "root"],
      ["show", "x.y"],
      ["rotate-key", "a b"],
    ]) {
      const r = await c.remote(["users", ...args])
      expect(r.code).toBe(2)
      expect(r.err).toMatch(/^dffmpeg: (invalid user name|--role must be one of client, worker, admin)/)
    }
    const dup = await c.remote(["users", "add", "client1", "--role", "admin"])
    expect(dup).toMatchObject({ code: 1, out: "", err: "dffmpeg: user client1 already exists\n" })
    expect(await names()).toEqual(before)
  })
})

describe("mode selection", () => {
  test("an admin config found by the search or named by DFFMPEG_ADMIN_CONFIG means remote mode", async () => {
    const ops = join(c.dir, "ops")
    mkdirSync(ops, { recursive: true })
    writeFileSync(
      join(ops, "dffmpeg-admin.yaml"),
      JSON.stringify({ client_id: "admin1", hmac_key_file: join(c.dir, "admin1.key"), coordinator: { port: c.port } }),
    )
    // Only the remote mode can run a janitor pass: it succeeding shows which mode was chosen.
    const found = await c.exec([BIN, "admin", "janitor", "run"], { cwd: ops })
    expect(found).toMatchObject({ code: 0, out: expect.stringMatching(/^janitor pass done/) })
    const env = await c.exec([BIN, "admin", "janitor", "run", "--json"], {
      env: { DFFMPEG_ADMIN_CONFIG: c.adminConfig! },
    })
    expect(parse(env)).toMatchObject({ suppressed: expect.any(Boolean), lost: [] })
  })

  test("without an admin config, the coordinator config is used locally (no key needed)", async () => {
    const r = await c.exec([BIN, "admin", "users", "ls", "--json"], {
      env: { DFFMPEG_COORDINATOR_CONFIG: c.coordinatorConfig },
    })
    expect(parse<{ name: string }[]>(r).map((u) => u.name)).toContain("admin1")
    const jan = await c.exec([BIN, "admin", "janitor", "run"], {
      env: { DFFMPEG_COORDINATOR_CONFIG: c.coordinatorConfig },
    })
    expect(jan.code).toBe(2)
    expect(jan.err).toMatch(/^dffmpeg: janitor run needs the remote mode/)
  })

  test("--local with an identity config is a usage error; no config anywhere is a config error (exit 3)", async () => {
    const r = await c.exec([BIN, "admin", "--local", "--config", c.adminConfig!, "users", "ls"], {})
    expect(r.code).toBe(2)
    expect(r.err).toMatch(
      /^dffmpeg: --local works on the coordinator's own database, but .*admin1\.yaml is an identity config/,
    )
    const empty = join(c.dir, "empty")
    mkdirSync(empty, { recursive: true })
    const none = await c.exec([BIN, "admin", "users", "ls"], { cwd: empty, env: { HOME: empty } })
    expect(none.code).toBe(3)
    expect(none.err).toMatch(
      /^dffmpeg: no admin config and no coordinator config found \(looked in .*dffmpeg-admin\.yaml.*dffmpeg-coordinator\.yaml/,
    )
  })
})

describe("database config", () => {
  test("an unknown engine, or a URL of another engine, is one line and exit 3, for the coordinator and admin --local", async () => {
    for (const [name, database, err] of [
      [
        "oracle",
        { engine: "oracle", path: "x" },
        (cfg: string) =>
          `dffmpeg: invalid configuration in ${cfg}\n  ↳ database.engine: unknown engine "oracle"; available: sqlite, postgres, mysql, mariadb\n`,
      ],
      [
        "scheme",
        { engine: "postgres", url: "mysql://u:hunter2@127.0.0.1/d" },
        () => 'dffmpeg: database.url "mysql:" does not name engine postgres (use postgres:// or postgresql://)\n',
      ],
    ] as const) {
      const cfg = join(c.dir, `engine-${name}.yaml`)
      writeFileSync(cfg, JSON.stringify({ port: 0, database }))
      for (const args of [
        ["coordinator", "--config", cfg],
        ["admin", "--local", "--config", cfg, "users", "ls"],
      ]) {
        const r = await c.exec([BIN, ...args], {})
        expect(r.code).toBe(3)
        expect(
          r.err
            .split("\n")
            .filter((l) => !/^\d{4}-.* INFO /.test(l))
            .join("\n"),
        ).toBe(err(cfg))
      }
    }
  })
})

describe("non-admin identities", () => {
  test("get exit 5 on every admin verb with the reason on stderr (and as JSON with --json); nothing changes", async () => {
    const asClient = (args: string[]) => c.exec([BIN, "admin", "--config", c.clientConfig, ...args], {})
    const before = await names()
    for (const args of [
      ["users", "ls"],
      ["users", "add", "mallory", "--role", "admin"],
      ["jobs", "ls"],
      ["workers", "ls"],
      ["workers", "drain", "worker1"],
      ["janitor", "run"],
    ]) {
      const r = await asClient(args)
      expect(r.code).toBe(5)
      expect(r.err).toContain(
        "dffmpeg: this route is for admin identities; client1 is a client (dffmpeg admin needs an admin identity;",
      )
    }
    const js = await asClient(["users", "ls", "--json"])
    expect(JSON.parse(js.out)).toEqual({
      error: {
        code: "E_FORBIDDEN",
        message: expect.stringMatching(/^this route is for admin identities; client1 is a client/),
      },
    })
    expect(await names()).toEqual(before)
    expect(parse<{ status: string }[]>(await c.remote(["workers", "ls", "--json"]))[0].status).toBe("online")
  })
})

describe("admin jobs", () => {
  let id = ""
  let proxied: RunResult
  beforeAll(async () => {
    proxied = await c.run("ffmpeg", encode(1))
    expect(proxied.code).toBe(0)
    id = parse<{ id: string }[]>(await c.remote(["jobs", "ls", "--json", "--limit", "1"]))[0].id
  }, 20_000)

  test("logs writes exactly the stderr bytes the proxy relayed, in both modes; --stdout gives each stream on its own, stdout once acknowledged gone", async () => {
    expect(proxied.stderr.length).toBeGreaterThan(200)
    expect(new TextDecoder().decode(proxied.stderr)).toContain("\r")
    for (const r of [await c.remote(["jobs", "logs", id]), await local(["jobs", "logs", id])]) {
      expect(r.code).toBe(0)
      expect(Buffer.from(r.stdout).equals(Buffer.from(proxied.stderr))).toBe(true)
    }
    const raw = await c.run("ffmpeg", [
      "-hide_banner",
      "-f",
      "lavfi",
      "-i",
      "testsrc=size=32x32:rate=5:duration=1",
      "-f",
      "rawvideo",
      "-",
    ])
    expect(raw.stdout.length).toBe(32 * 32 * 3 * 5)
    const rawId = parse<{ id: string }[]>(await c.remote(["jobs", "ls", "--json", "--limit", "1"]))[0].id
    const both = await c.remote(["jobs", "logs", rawId, "--stdout"])
    // The proxy acknowledged the stdout it took: the coordinator deleted it, and keeps stderr as its tail.
    expect(both.stdout.length).toBe(0)
    expect(Buffer.from(both.stderr).equals(Buffer.from(raw.stderr))).toBe(true)
    const detached = await c.client("submit", [
      "--detach",
      "--",
      "-hide_banner",
      "-f",
      "lavfi",
      "-i",
      "testsrc=size=32x32:rate=5:duration=1",
      "-f",
      "rawvideo",
      "-",
    ])
    await c.waitFor(async () => (await c.job(detached.out.trim())).status === "completed", { what: "the detached job" })
    const kept = await c.remote(["jobs", "logs", detached.out.trim(), "--stdout"])
    expect(Buffer.from(kept.stdout).equals(Buffer.from(raw.stdout))).toBe(true)
  })

  test("show gives args as submitted, requester, worker, exit, times, timeline and the last stderr lines; --json the same data", async () => {
    const r = await c.remote(["jobs", "show", id])
    expect(r.code).toBe(0)
    for (const line of [
      `id         ${id}`,
      "status     completed",
      "exit       0",
      `args       ${JSON.stringify(encode(1))}`,
      "requester  client1",
      "worker     worker1",
    ])
      expect(r.out).toContain(line + "\n")
    expect(r.out).toMatch(
      /\ntimeline\nTIME +STATUS +ATTEMPT +WORKER +REASON\n.*queued.*\n.*assigned +1 +worker1.*\n.*running.*\n.*completed.*\n/,
    )
    expect(r.out).toMatch(/\nlast \d+ stderr lines\n(  .*\n)+$/)
    const last = new TextDecoder().decode(proxied.stderr).trimEnd().split("\n").at(-1)!
    expect(r.out.trimEnd().endsWith(last)).toBe(true)
    const remote = parse<{ id: string; status: string; events: { status: string }[]; stderrTail: string[] }>(
      await c.remote(["jobs", "show", id, "--json"]),
    )
    expect(remote).toMatchObject({ id, status: "completed", requester: "client1", workerId: "worker1", exitCode: 0 })
    expect(remote.events.map((e) => e.status)).toEqual(["queued", "assigned", "running", "completed"])
    expect(remote.stderrTail.at(-1)).toBe(last)
    expect(parse(await local(["jobs", "show", id, "--json"]))).toEqual(remote)
  })

  test("ls filters by status, worker and --since; --since in the future is empty; bad values are usage errors", async () => {
    const ids = async (args: string[]) =>
      parse<{ id: string }[]>(await c.remote(["jobs", "ls", "--json", ...args])).map((j) => j.id)
    expect(await ids([])).toContain(id)
    expect(await ids(["--status", "completed"])).toContain(id)
    expect(await ids(["--status", "running"])).not.toContain(id)
    expect(await ids(["--worker", "worker1"])).toContain(id)
    expect(await ids(["--worker", "nobody"])).toEqual([])
    expect(await ids(["--since", "1h"])).toContain(id)
    expect(await ids(["--since", "2100-01-01"])).toEqual([])
    expect(await ids(["--before", id])).not.toContain(id)
    expect((await c.remote(["jobs", "ls", "--since", "2100-01-01"])).out).toBe("no jobs\n")
    expect(parse(await local(["jobs", "ls", "--json", "--since", "1h"]))).toEqual(
      parse(await c.remote(["jobs", "ls", "--json", "--since", "1h"])),
    )

    const table = await c.remote(["jobs", "ls", "--status", "completed"])
    expect(table.out).toMatch(/^ID +STATUS +EXIT +PROGRESS +BINARY +REQUESTER +WORKER +CREATED +DURATION +ARGS\n/)
    expect(table.out).toMatch(new RegExp(`^${id} +completed +0 +- +ffmpeg +client1 +worker1 +\\d{4}-`, "m"))

    for (const [args, message] of [
      [["--since", "yesterday"], /^dffmpeg: --since must be a duration such as 90s, 10m, 2h, 7d or 1w, or an ISO date/],
      [["--since", "2026-02-30"], /^dffmpeg: --since must be/],
      [
        ["--status", "bogus"],
        /^dffmpeg: --status must be one of queued, assigned, running, completed, failed, canceled/,
      ],
      [["--limit", "0"], /^dffmpeg: --limit must be a number from 1 to 1000/],
      [["--before", "nope"], /^dffmpeg: nope is not a job id/],
      [["--bogus"], /^dffmpeg: unknown option --bogus/],
    ] as const) {
      const r = await c.remote(["jobs", "ls", ...args])
      expect(r.code).toBe(2)
      expect(r.out).toBe("")
      expect(r.err).toMatch(message)
    }
  })

  test("logs -f follows a running job and ends with exit 0 when the job ends (remote streams, local polls)", async () => {
    const sub = await c.client("submit", ["--detach", "--", ...encode(3)])
    expect(sub.code).toBe(0)
    const job = sub.out.trim()
    const started = parse<{ status: string }>(await c.client("status", [job, "--json"])).status
    expect(["queued", "assigned", "running"]).toContain(started)
    const [remote, polled] = await Promise.all([
      c.remote(["jobs", "logs", "-f", job]),
      local(["jobs", "logs", "--follow", job]),
    ])
    expect(remote.code).toBe(0)
    expect(polled.code).toBe(0)
    const done = parse<{ status: string }>(await c.remote(["jobs", "show", job, "--json"]))
    expect(done.status).toBe("completed")
    const all = await c.remote(["jobs", "logs", job])
    expect(new TextDecoder().decode(all.stdout)).toContain("frame=")
    expect(Buffer.from(remote.stdout).equals(Buffer.from(all.stdout))).toBe(true)
    expect(Buffer.from(polled.stdout).equals(Buffer.from(all.stdout))).toBe(true)
  }, 20_000)

  test("a malformed job id exits 2 and an unknown one exits 1, for every job verb and in both modes", async () => {
    for (const verb of ["show", "logs", "cancel"]) {
      const bad = await c.remote(["jobs", verb, "NOTAULID"])
      expect(bad).toMatchObject({ code: 2, out: "" })
      expect(bad.err).toMatch(/^dffmpeg: NOTAULID is not a job id \(ULID, 26 characters\)\n/)
      for (const run of [c.remote.bind(c), local]) {
        const unknown = await run(["jobs", verb, "01M8DFWF4PCGSZBYEVT8TNJN46"])
        expect(unknown).toMatchObject({ code: 1, out: "", err: "dffmpeg: no job 01M8DFWF4PCGSZBYEVT8TNJN46\n" })
      }
    }
    const ended = await c.remote(["jobs", "cancel", id])
    expect(ended).toMatchObject({ code: 1, err: `dffmpeg: job ${id} already ended: completed\n` })
  })
})
