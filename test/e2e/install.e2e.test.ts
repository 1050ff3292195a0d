import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as v from "valibot"
import { WorkerConfig } from "../../src/shared/config/server-schema.ts"
import { BIN, ROOT, requireBinary } from "../helpers/bin.ts"
import { runCommand, type RunResult } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"
import { Proc } from "../helpers/proc.ts"

/**
 * A fresh machine, as README "Setting up a farm" tells an operator to set it up: scripts/install.sh for each
 * role into a scratch root, with a service user of its own; the identities made as root before the
 * coordinator's first start; the coordinator and the worker started as that user; a job through the
 * installed ffprobe symlink, run by a media server's user, compared with the local ffprobe.
 */

const id = Math.random().toString(36).slice(2, 8)
/** The service user and group (removed at the end). */
const SVC = `dffmpeg-t${id}`
/** The media server's group (`--client-group`): its user here is nobody. */
const MEDIA = `dffmpeg-m${id}`
const SCRIPT = join(ROOT, "scripts", "install.sh")

let root: string
let media: string
const procs: Proc[] = []

const etc = (f = "") => join(root, "etc", "dffmpeg", f)
const state = (f = "") => join(root, "var", "lib", "dffmpeg", f)
const installed = () => join(root, "usr", "local", "bin", "dffmpeg")
const env = (extra: Record<string, string> = {}) => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: state(),
  ...extra,
})
const ids = (name: string, table: "passwd" | "group") =>
  Number(Bun.spawnSync(["getent", table, name]).stdout.toString().split(":")[2])

/** `uid:gid` and mode of a file, with names as ls shows them. */
function owner(p: string): string {
  const r = Bun.spawnSync(["stat", "-c", "%U:%G %a", p])
  if (r.exitCode !== 0) throw new Error(`stat ${p}: ${r.stderr.toString()}`)
  return r.stdout.toString().trim()
}

/** Every file and folder under the scratch root with its owner, mode, size and modification time. */
function snapshot(): string {
  return Bun.spawnSync(["find", root, "-printf", "%p %u:%g %m %s %T@ %l\\n"])
    .stdout.toString()
    .split("\n")
    .sort()
    .join("\n")
}

const install = (role: string, ...more: string[]) =>
  runCommand(["bash", SCRIPT, "--role", role, "--root", root, "--user", SVC, "--binary", BIN, ...more], {
    env: env(),
  })

/** Runs `cmd` as `user` (the service user, with its groups, or nobody with the media server's group). */
const as = (user: "service" | "media", cmd: string[]) =>
  user === "service"
    ? ["setpriv", `--reuid=${SVC}`, `--regid=${SVC}`, "--init-groups", ...cmd]
    : ["setpriv", "--reuid=nobody", `--regid=${MEDIA}`, "--clear-groups", ...cmd]

function start(name: string, cmd: string[]): Proc {
  const p = new Proc(name, Bun.spawn(cmd, { env: env(), stdin: "ignore", stdout: "ignore", stderr: "pipe" }))
  procs.push(p)
  return p
}

/** Replaces a line of an installed config, as an operator's edit would. */
function edit(file: string, from: RegExp, to: string): void {
  const text = readFileSync(file, "utf8")
  if (!from.test(text)) throw new Error(`${file} has no line matching ${from}:\n${text}`)
  writeFileSync(file, text.replace(from, to))
}

const ok = (r: RunResult, what: string) => {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}\n${r.out}\n${r.err}`)
  return r
}

beforeAll(async () => {
  requireBinary()
  root = mkdtempSync(join(tmpdir(), "dffmpeg-install-"))
  // The scratch root stands for /: everyone may pass through it.
  chmodSync(root, 0o755)
  ok(await runCommand(["groupadd", "--system", MEDIA]), "groupadd")
})

afterAll(async () => {
  for (const p of procs) await p.stop("SIGKILL")
  rmSync(root, { recursive: true, force: true })
  Bun.spawnSync(["userdel", SVC])
  Bun.spawnSync(["groupdel", SVC])
  Bun.spawnSync(["groupdel", MEDIA])
})

describe("a fresh machine set up as the README says", () => {
  let port = 0

  test("install.sh installs each role, and a second run changes nothing", async () => {
    const c = ok(await install("coordinator"), "install coordinator")
    expect(c.out).toContain(`install: created user ${SVC} (system, no login shell, home /var/lib/dffmpeg)`)
    expect(ok(await install("worker"), "install worker").out).toContain("dffmpeg-worker.service")
    const cl = ok(await install("client", "--client-group", MEDIA), "install client")
    expect(cl.out).toContain("linked")
    expect(cl.out).toContain("/usr/local/lib/dffmpeg/ffmpeg")

    const pw = Bun.spawnSync(["getent", "passwd", SVC]).stdout.toString().trim().split(":")
    expect([pw[5], pw[6]]).toEqual(["/var/lib/dffmpeg", "/usr/sbin/nologin"])
    expect(ids(SVC, "passwd")).toBeLessThan(1000)
    expect(owner(installed())).toBe("root:root 755")
    expect(owner(etc())).toBe(`root:${SVC} 751`)
    expect(owner(etc("keys"))).toBe(`root:${SVC} 751`)
    expect(owner(state())).toBe(`${SVC}:${SVC} 750`)
    expect(owner(etc("coordinator.yaml"))).toBe(`root:${SVC} 640`)
    expect(owner(etc("worker.yaml"))).toBe(`root:${SVC} 640`)
    expect(owner(etc("client.yaml"))).toBe(`root:${MEDIA} 640`)
    const unit = readFileSync(join(root, "etc/systemd/system/dffmpeg-worker.service"), "utf8")
    expect(unit).toContain(`\nUser=${SVC}\nGroup=${SVC}\n`)
    expect(unit).toContain("\nExecStart=/usr/local/bin/dffmpeg worker --config /etc/dffmpeg/worker.yaml\n")

    const before = snapshot()
    for (const [role, ...more] of [["coordinator"], ["worker"], ["client", "--client-group", MEDIA]]) {
      const again = ok(await install(role, ...more), `install ${role} again`)
      expect(again.out).toContain(`install: nothing to change: ${role} is installed as it should be`)
    }
    expect(snapshot()).toBe(before)
  })

  test("an edited config is never overwritten", async () => {
    edit(etc("coordinator.yaml"), /^port: 8000$/m, "port: 0")
    edit(etc("coordinator.yaml"), /path: \/var\/lib\/dffmpeg\/dffmpeg\.db/, `path: ${state("dffmpeg.db")}`)
    const text = readFileSync(etc("coordinator.yaml"), "utf8")
    ok(await install("coordinator"), "install coordinator after the edit")
    expect(readFileSync(etc("coordinator.yaml"), "utf8")).toBe(text)
  })

  test("identities made as root before the first start are the service's files, with the modes of the layout", async () => {
    const admin = (name: string, role: string) =>
      runCommand(
        [installed(), "admin", "users", "add", name, "--role", role, "--key-file", etc(`keys/${name}.key`)],
        // The admin command finds the coordinator's config by the normal search order (here: the
        // scratch root's, named as the search's second place names it).
        { env: env({ DFFMPEG_COORDINATOR_CONFIG: etc("coordinator.yaml") }) },
      )
    expect(ok(await admin("worker1", "worker"), "users add worker1").out).toBe(
      `wrote the key of worker1 to ${etc("keys/worker1.key")} (mode 0640)\n`,
    )
    ok(await admin("jellyfin", "client"), "users add jellyfin")
    // The client's key goes to the media server's group: what the client role's next steps say.
    const mended = ok(await install("client", "--client-group", MEDIA), "install client once the key is there")
    expect(mended.out).toContain(`gave ${etc("keys/jellyfin.key")} to root:${MEDIA}`)

    expect(owner(state("dffmpeg.db"))).toBe(`${SVC}:${SVC} 600`)
    expect(owner(state("dffmpeg.db.secret"))).toBe(`${SVC}:${SVC} 600`)
    expect(owner(etc("keys/worker1.key"))).toBe(`root:${SVC} 640`)
    expect(owner(etc("keys/jellyfin.key"))).toBe(`root:${MEDIA} 640`)
    for (const f of readdirSync(state())) expect([f, owner(state(f)).split(" ")[0]]).toEqual([f, `${SVC}:${SVC}`])
  })

  test("the coordinator and the worker run as the service user; a job through the ffprobe symlink matches local ffprobe", async () => {
    const coord = start("coordinator", as("service", [installed(), "coordinator", "--config", etc("coordinator.yaml")]))
    port = Number((await coord.waitForLine(/listening on http:\/\/127\.0\.0\.1:(\d+)/, 20_000))[1])

    // The storage: the service user reads and writes it; the media server's user reads it.
    media = join(root, "srv", "media")
    mkdirSync(media, { recursive: true })
    copyFileSync(await sample("av.mkv"), join(media, "a.mkv"))
    chmodSync(join(media, "a.mkv"), 0o644)
    Bun.spawnSync(["chown", "-R", `${SVC}:${SVC}`, join(root, "srv")])

    // The service user can start the sandbox itself (the worker also refuses to start when it cannot).
    const bwrap = await runCommand(
      as("service", [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/bin",
        "/bin",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--",
        "/usr/bin/id",
        "-u",
      ]),
      { env: env() },
    )
    expect({ code: bwrap.code, out: bwrap.out, err: bwrap.err }).toEqual({
      code: 0,
      out: `${ids(SVC, "passwd")}\n`,
      err: "",
    })

    edit(etc("worker.yaml"), /port: 8000/, `port: ${port}`)
    edit(etc("worker.yaml"), /^paths: \{\}$/m, `paths: { Media: ${media} }`)
    const worker = start("worker", as("service", [installed(), "worker", "--config", etc("worker.yaml")]))
    await worker.waitForLine(/worker registered/, 30_000)
    expect(worker.log()).not.toMatch(/hmac_key_file .* is accessible/)

    edit(etc("client.yaml"), /port: 8000/, `port: ${port}`)
    edit(etc("client.yaml"), /^paths: \{\}$/m, `paths: { Media: ${media} }`)
    const shim = join(root, "usr", "local", "lib", "dffmpeg", "ffprobe")
    for (const input of [join(media, "a.mkv"), join(media, "missing.mkv")]) {
      const args = ["-v", "error", "-show_format", "-show_streams", "-of", "json", input]
      const local = await runCommand(["ffprobe", ...args], { env: env() })
      const remote = await runCommand(as("media", [shim, ...args]), {
        env: env({ DFFMPEG_CLIENT_CONFIG: etc("client.yaml") }),
      })
      expect({ input, code: remote.code, out: remote.out }).toEqual({ input, code: local.code, out: local.out })
    }
    expect(
      JSON.parse(
        (await runCommand(["ffprobe", "-v", "error", "-show_format", "-of", "json", join(media, "a.mkv")])).out,
      ).format.format_name,
    ).toContain("matroska")

    expect(await worker.stop("SIGTERM", 30_000)).toBe(0)
    expect(await coord.stop("SIGTERM", 30_000)).toBe(0)
    for (const f of readdirSync(state())) expect([f, owner(state(f)).split(" ")[0]]).toEqual([f, `${SVC}:${SVC}`])
  }, 120_000)

  test("a database or secret the service cannot use stops the coordinator with one line and the fix, exit 3; install.sh mends it", async () => {
    const db = state("dffmpeg.db")
    for (const mode of [0o600, 0o644]) {
      Bun.spawnSync(["chown", "root:root", db])
      chmodSync(db, mode)
      const r = await runCommand(
        [
          "setpriv",
          `--reuid=${SVC}`,
          `--regid=${SVC}`,
          "--clear-groups",
          installed(),
          "coordinator",
          "--config",
          etc("coordinator.yaml"),
        ],
        { env: env(), timeoutMs: 20_000 },
      )
      const lines = r.err.split("\n").filter((l) => l.startsWith("dffmpeg:"))
      expect({ code: r.code, lines }).toEqual({
        code: 3,
        lines: [
          `dffmpeg: database ${db} cannot be written by user ${SVC} (uid ${ids(SVC, "passwd")}): it belongs to root:root (mode 0${mode.toString(8)}); fix: chown ${SVC}: ${db}`,
        ],
      })
      expect(r.err).not.toContain("unexpected error")
      expect(r.err).not.toContain("    at ")
    }
    chmodSync(db, 0o600)
    Bun.spawnSync(["chown", `${SVC}:${SVC}`, db])
    const secret = state("dffmpeg.db.secret")
    Bun.spawnSync(["chown", "root:root", secret])
    const r = await runCommand(as("service", [installed(), "coordinator", "--config", etc("coordinator.yaml")]), {
      env: env(),
      timeoutMs: 20_000,
    })
    expect({ code: r.code, lines: r.err.split("\n").filter((l) => l.startsWith("dffmpeg:")) }).toEqual({
      code: 3,
      lines: [
        `dffmpeg: secret_key_file ${secret} cannot be read by user ${SVC} (uid ${ids(SVC, "passwd")}): it belongs to root:root (mode 0600); fix: chown ${SVC}: ${secret}`,
      ],
    })
    Bun.spawnSync(["chown", "root:root", db])
    const mend = ok(await install("coordinator"), "install coordinator to mend it").out
    expect(mend).toContain(`gave ${db} to ${SVC}:${SVC}`)
    expect(mend).toContain(`gave ${secret} to ${SVC}:${SVC}`)
    const coord = start(
      "coordinator again",
      as("service", [installed(), "coordinator", "--config", etc("coordinator.yaml")]),
    )
    const url = (await coord.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 20_000))[1]
    expect((await fetch(`${url}/health`)).status).toBe(200)
    await coord.stop("SIGTERM", 30_000)
  }, 60_000)

  test("a key file the worker cannot read is one line naming it, exit 3", async () => {
    const key = etc("keys/worker1.key")
    Bun.spawnSync(["chown", "root:root", key])
    const r = await runCommand(as("service", [installed(), "worker", "--config", etc("worker.yaml")]), {
      env: env(),
      timeoutMs: 20_000,
    })
    expect({
      code: r.code,
      err: r.err
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("dffmpeg:")),
    }).toEqual({
      code: 3,
      err: [
        `dffmpeg: hmac_key_file ${key} cannot be read by user ${SVC} (uid ${ids(SVC, "passwd")}): it belongs to root:root (mode 0640); fix: chgrp ${SVC} ${key} && chmod 640 ${key}`,
      ],
    })
  }, 30_000)
})

describe("the systemd units", () => {
  /** Seconds of a systemd time span such as `90`, `1h`, `5min 30s`. */
  function span(text: string): number {
    const unit: Record<string, number> = { "": 1, s: 1, sec: 1, min: 60, m: 60, h: 3600, hr: 3600 }
    let total = 0
    for (const m of text.matchAll(/(\d+)\s*([a-z]*)/g)) {
      const u = unit[m[2] ?? ""]
      if (u === undefined) throw new Error(`unknown time unit in ${text}`)
      total += Number(m[1]) * u
    }
    return total
  }
  const key = (unit: string, name: string) => unit.match(new RegExp(`^${name}=(.*)$`, "m"))?.[1]

  test("systemd-analyze verify passes on the installed units (their ExecStart found in the scratch root)", () => {
    const units = ["dffmpeg-coordinator.service", "dffmpeg-worker.service"].map((u) =>
      join(root, "etc/systemd/system", u),
    )
    for (const u of units) {
      const r = Bun.spawnSync(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", `--root=${root}`, u])
      expect({ u, code: r.exitCode, err: r.stderr.toString() }).toEqual({ u, code: 0, err: "" })
    }
    // And it does look: a unit whose binary is missing fails.
    const gone = join(root, "etc/systemd/system/dffmpeg-nobinary.service")
    writeFileSync(
      gone,
      readFileSync(units[0]!, "utf8").replace("/usr/local/bin/dffmpeg ", "/usr/local/bin/dffmpeg-missing "),
    )
    const r = Bun.spawnSync(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", `--root=${root}`, gone])
    expect(r.exitCode).not.toBe(0)
    expect(r.stderr.toString()).toContain("dffmpeg-missing is not executable")
    rmSync(gone)
  })

  test("they can be enabled, start after the network, and the worker's stop timeout exceeds its drain and cancel grace", () => {
    const dir = join(ROOT, "packaging", "systemd")
    const defaults = v.parse(WorkerConfig, { client_id: "w", hmac_key: "k" })
    const grace =
      defaults.min_drain_time_seconds + defaults.cancel_term_after_seconds + defaults.cancel_kill_after_seconds
    for (const name of ["dffmpeg-coordinator.service", "dffmpeg-worker.service"]) {
      const unit = readFileSync(join(dir, name), "utf8")
      expect({ name, wanted: key(unit, "WantedBy"), after: key(unit, "After"), wants: key(unit, "Wants") }).toEqual({
        name,
        wanted: "multi-user.target",
        after: expect.stringContaining("network-online.target"),
        wants: "network-online.target",
      })
      for (const k of ["NoNewPrivileges", "PrivateTmp"]) expect([name, k, key(unit, k)]).toEqual([name, k, "yes"])
      expect([name, key(unit, "ProtectSystem")]).toEqual([name, "strict"])
      expect(span(key(unit, "TimeoutStopSec") ?? "")).toBeGreaterThan(0)
    }
    const worker = readFileSync(join(dir, "dffmpeg-worker.service"), "utf8")
    expect(span(key(worker, "TimeoutStopSec") ?? "")).toBeGreaterThan(grace)
    expect(key(worker, "KillMode")).toBe("mixed")
    expect(key(worker, "SupplementaryGroups")).toBe("render video")
    // What would break bubblewrap in the worker is left out (the unit says why).
    for (const k of [
      "RestrictNamespaces",
      "PrivateUsers",
      "ProtectKernelTunables",
      "SystemCallFilter",
      "PrivateDevices",
      "ProtectProc",
    ])
      expect([k, key(worker, k)]).toEqual([k, undefined])
    expect(key(readFileSync(join(dir, "dffmpeg-coordinator.service"), "utf8"), "ReadWritePaths")).toBe(
      "/var/lib/dffmpeg",
    )
  })
})

describe("the worker unit on a host without the render or video group", () => {
  test("keeps only the groups the host has, and drops the line when it has none", async () => {
    // A copy of the script beside a unit whose groups this host partly lacks.
    const copy = mkdtempSync(join(tmpdir(), "dffmpeg-install-groups-"))
    try {
      mkdirSync(join(copy, "scripts"))
      mkdirSync(join(copy, "packaging", "systemd", "dffmpeg-worker.service.d"), { recursive: true })
      copyFileSync(SCRIPT, join(copy, "scripts", "install.sh"))
      const src = join(ROOT, "packaging", "systemd")
      copyFileSync(
        join(src, "dffmpeg-worker.service.d", "media.conf"),
        join(copy, "packaging/systemd/dffmpeg-worker.service.d/media.conf"),
      )
      const unit = readFileSync(join(src, "dffmpeg-worker.service"), "utf8")
      const installedUnit = async (groups: string) => {
        writeFileSync(
          join(copy, "packaging/systemd/dffmpeg-worker.service"),
          unit.replace(/^SupplementaryGroups=.*$/m, `SupplementaryGroups=${groups}`),
        )
        const target = mkdtempSync(join(copy, "root-"))
        const r = await runCommand(
          [
            "bash",
            join(copy, "scripts", "install.sh"),
            "--role",
            "worker",
            "--root",
            target,
            "--user",
            SVC,
            "--binary",
            BIN,
          ],
          { env: env() },
        )
        ok(r, "install worker")
        return readFileSync(join(target, "etc/systemd/system/dffmpeg-worker.service"), "utf8")
      }
      const some = await installedUnit(`${MEDIA}-absent ${MEDIA}`)
      expect(some.match(/^SupplementaryGroups=.*$/m)?.[0]).toBe(`SupplementaryGroups=${MEDIA}`)
      const none = await installedUnit(`${MEDIA}-absent`)
      expect(none).not.toMatch(/^SupplementaryGroups=/m)
    } finally {
      rmSync(copy, { recursive: true, force: true })
    }
  })
})

describe("install.sh refuses what it cannot do", () => {
  test("a missing role or an unknown argument is a usage error, exit 2", async () => {
    const r = await runCommand(["bash", SCRIPT], { env: env() })
    expect({ code: r.code, err: r.err }).toEqual({
      code: 2,
      err: "install: --role is required: coordinator, worker or client (--help for usage)\n",
    })
    expect((await runCommand(["bash", SCRIPT, "--role", "worker", "--bogus"], { env: env() })).code).toBe(2)
    expect(statSync(SCRIPT).mode & 0o111).not.toBe(0)
  })
})
