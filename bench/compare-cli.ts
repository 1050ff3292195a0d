#!/usr/bin/env bun
/**
 * Behaviour comparison of two builds as a user sees them (written for issue 10, which was to change
 * structure only). Starts one real cluster of this build (dist/dffmpeg: coordinator, one worker, client,
 * client2 and admin identities, a finished, a failed and another user's job), then runs an older binary
 * (`--old`) and this one on the same ~570 cases and prints every case whose exit code, stdout or stderr
 * differ once job ids, ports, paths, times, keys and ffmpeg's progress lines are normalised:
 * every subcommand's `--help`, unknown flags, aliases and `--` on every leaf, missing or malformed
 * arguments, `--json` variants, no, missing, broken or invalid configs, an unreachable coordinator, a wrong
 * key, a wrong role, not found, conflicts, running jobs (attach, cancel, logs -f, watch), pipes that close
 * (EPIPE, /dev/full), forwarded signals, and the proxy (`ffmpeg`/`ffprobe` symlinks to each binary) from
 * a real run to every failure. Stateful cases (a user added) use a per-binary name. Some differences are
 * timing (rotate-secret ids, users listed after the other binary added its own, live worker loads).
 * Run: `bun bench/compare-cli.ts --old /path/to/older/dffmpeg [--only TEXT] [--verbose]` after
 * `bun scripts/build.ts --single`; `--only` keeps the cases whose name contains TEXT, `--verbose` also
 * prints what the cases that agree printed.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BIN } from "../test/helpers/bin.ts"
import { Cluster } from "../test/helpers/cluster.ts"

const flag = (name: string) => {
  const i = process.argv.indexOf(name)
  return i === -1 ? undefined : process.argv[i + 1]
}
const OLD = flag("--old") ?? ""
if (!OLD) throw new Error("usage: bun bench/compare-cli.ts --old PATH/TO/OLDER/dffmpeg [--only TEXT] [--verbose]")
const NEW = BIN
const filter = flag("--only")

const c = await Cluster.start({ workers: 1 })
const admin = await c.enableAdmin()
await c.addUser("client2", "client")
const y = (o: unknown) => JSON.stringify(o, null, 2)
const D = c.dir
const f = (name: string, body: string) => {
  const p = join(D, name)
  writeFileSync(p, body)
  return p
}
// Configs for each failure.
const link = { port: c.port }
const deadPort = 1 // nothing listens there
const cfg = {
  ok: c.clientConfig,
  badYaml: f("bad.yaml", "client_id: [oops\n  : :\n"),
  badSchema: f(
    "schema.yaml",
    y({
      client_id: "client1",
      hmac_key_file: "client1.key",
      coordinator: { port: "x" },
      paths: { "1bad": "/x" },
      bogus: 1,
    }),
  ),
  missingKey: f(
    "nokey.yaml",
    y({ client_id: "client1", hmac_key_file: "missing.key", coordinator: link, paths: { Media: c.clientMedia } }),
  ),
  dead: f(
    "dead.yaml",
    y({
      client_id: "client1",
      hmac_key_file: "client1.key",
      coordinator: { port: deadPort },
      paths: { Media: c.clientMedia },
    }),
  ),
  wrongKey: f(
    "wrongkey.yaml",
    y({
      client_id: "client1",
      hmac_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
      coordinator: link,
      paths: { Media: c.clientMedia },
    }),
  ),
  unknownUser: f(
    "ghost.yaml",
    y({
      client_id: "ghost",
      hmac_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
      coordinator: link,
      paths: { Media: c.clientMedia },
    }),
  ),
  asWorker: f(
    "asworker.yaml",
    y({ client_id: "worker1", hmac_key_file: "worker1.key", coordinator: link, paths: { Media: c.clientMedia } }),
  ),
  client2: f(
    "client2.yaml",
    y({ client_id: "client2", hmac_key_file: "client2.key", coordinator: link, paths: { Media: c.clientMedia } }),
  ),
  adminAsClient: f("adminclient.yaml", y({ client_id: "client1", hmac_key_file: "client1.key", coordinator: link })),
  adminDead: f(
    "admindead.yaml",
    y({ client_id: "admin1", hmac_key_file: "admin1.key", coordinator: { port: deadPort } }),
  ),
  adminWrongKey: f(
    "adminwrong.yaml",
    y({ client_id: "admin1", hmac_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", coordinator: link }),
  ),
  coordBad: f("coordbad.yaml", y({ port: "nope", database: { engine: "postgres", path: "x" } })),
  workerDead: f(
    "workerdead.yaml",
    y({
      client_id: "worker1",
      hmac_key_file: "worker1.key",
      coordinator: { port: deadPort },
      paths: { Media: c.clientMedia },
      sandbox: "none",
    }),
  ),
  workerBad: f("workerbad.yaml", y({ client_id: "worker1", coordinator: { port: deadPort }, max_jobs: -1 })),
}
const empty = mkdtempSync(join(tmpdir(), "revcaller-empty-"))
await Bun.write(join(c.storage, "a.txt"), "hello")

// Jobs to point at: a finished one of client1, one of client2, a failed one, and an id no job has.
const submitted = async (config: string, args: string[]) => {
  const r = await c.exec([NEW, "client", "submit", "--config", config, "-d", "--", ...args], {})
  if (r.code !== 0) throw new Error(r.err)
  return r.out.trim()
}
const done = await submitted(cfg.ok, ["-b", "ffprobe", "-version"])
const other = await submitted(cfg.client2, ["-b", "ffprobe", "--", "-version"])
const failedJob = await submitted(cfg.ok, ["-b", "ffprobe", `${c.clientMedia}/missing.mkv`])
await c.waitFor(async () => (await c.jobs()).every((j) => ["completed", "failed", "canceled"].includes(j.status)))
const MISSING = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

type Case = {
  name: string
  argv: string[]
  shell?: boolean
  setup?: () => Promise<Record<string, string>>
  env?: Record<string, string>
  cwd?: string
  proxy?: "ffmpeg" | "ffprobe"
  stdin?: Uint8Array
  timeoutMs?: number
}
const cases: Case[] = []
const add = (name: string, argv: string[], o: Omit<Case, "name" | "argv"> = {}) => cases.push({ name, argv, ...o })

// Top level and help for every command.
for (const a of [
  [],
  ["--help"],
  ["-h"],
  ["--version"],
  ["-v"],
  ["version"],
  ["version", "--foo"],
  ["version", "x"],
  ["help"],
  ["bogus"],
  ["--bogus"],
  ["--", "x"],
])
  add(`top ${a.join(" ")}`, a)
const helpPaths = [
  ["coordinator"],
  ["worker"],
  ["client"],
  ["admin"],
  ["version"],
  ["client", "submit"],
  ["client", "attach"],
  ["client", "cancel"],
  ["client", "status"],
  ["client", "jobs"],
  ["client", "workers"],
  ["admin", "users"],
  ["admin", "users", "add"],
  ["admin", "users", "ls"],
  ["admin", "users", "show"],
  ["admin", "users", "rm"],
  ["admin", "users", "rotate-key"],
  ["admin", "jobs"],
  ["admin", "jobs", "ls"],
  ["admin", "jobs", "show"],
  ["admin", "jobs", "logs"],
  ["admin", "jobs", "cancel"],
  ["admin", "workers"],
  ["admin", "workers", "ls"],
  ["admin", "workers", "show"],
  ["admin", "workers", "drain"],
  ["admin", "workers", "undrain"],
  ["admin", "janitor"],
  ["admin", "janitor", "run"],
  ["admin", "security"],
  ["admin", "security", "rotate-secret"],
]
for (const p of helpPaths) {
  add(`help ${p.join(" ")} --help`, [...p, "--help"])
  add(`help ${p.join(" ")} -h`, [...p, "-h"])
}
add("help after --", ["client", "submit", "--", "--help"], { env: { DFFMPEG_CLIENT_CONFIG: cfg.dead } })
add("unknown noun", ["admin", "bogus"])
add("unknown client verb", ["client", "bogus"])
add("client no verb", ["client"])
add("admin no noun", ["admin"])
add("admin users no verb", ["admin", "users"])

// Services: bad flags and configs (they must fail before serving).
add("coordinator --bogus", ["coordinator", "--bogus"])
add("coordinator --port abc", ["coordinator", "--port", "abc"])
add("coordinator --config missing", ["coordinator", "--config", "/nonexistent.yaml"])
add("coordinator --config bad yaml", ["coordinator", "--config", cfg.badYaml])
add("coordinator --config bad schema", ["coordinator", "--config", cfg.coordBad])
add("coordinator no config", ["coordinator"], { cwd: empty, env: { HOME: empty }, timeoutMs: 3000 })
add("coordinator --log-level bogus", ["coordinator", "--config", cfg.coordBad, "--log-level", "loud"])
add("worker --bogus", ["worker", "--bogus"])
add("worker --config missing", ["worker", "--config", "/nonexistent.yaml"])
add("worker --config bad yaml", ["worker", "--config", cfg.badYaml])
add("worker --config bad schema", ["worker", "--config", cfg.workerBad])
add("worker no config", ["worker"], { cwd: empty, env: { HOME: empty } })
add("worker unreachable", ["worker", "--config", cfg.workerDead], { timeoutMs: 8000 })

// client submit option parsing.
const sub = (name: string, args: string[], config = cfg.ok, o: Omit<Case, "name" | "argv"> = {}) =>
  add(`submit ${name}`, ["client", "submit", "--config", config, ...args], o)
sub("ffprobe -version attached", ["-b", "ffprobe", "-version"])
sub("--binary=ffprobe", ["--binary=ffprobe", "-version"])
sub("-- -version", ["-b", "ffprobe", "--", "-version"])
sub("ffmpeg remote failure", ["-hide_banner", "-i", `${c.clientMedia}/missing.mkv`])
sub("ffprobe a.txt", ["-b", "ffprobe", "-hide_banner", `${c.clientMedia}/a.txt`])
sub("unmapped path", ["-b", "ffprobe", "/etc/passwd"])
sub("no args", [])
sub("-b missing value", ["-b"])
sub("-b bogus binary", ["-b", "nope", "-version"])
sub("--retries without -d", ["--retries", "2", "-version"])
sub("--retries bad", ["-d", "--retries", "x", "-version"])
sub("--retries=1 -d", ["-d", "--retries=1", "-b", "ffprobe", "-version"], cfg.ok)
sub("-d --json", ["-d", "--json", "-b", "ffprobe", "-version"])
sub("-d issue16", ["--detach", "ffmpeg", "-hide_banner"])
sub("-d unknown first flag", ["-d", "--bogus", "-version"])
sub("--json without -d", ["--json", "-b", "ffprobe", "-version"])
sub("no config", ["-b", "ffprobe", "-version"], "/nonexistent.yaml")
sub("bad yaml", ["-b", "ffprobe", "-version"], cfg.badYaml)
sub("bad schema", ["-b", "ffprobe", "-version"], cfg.badSchema)
sub("missing key file", ["-b", "ffprobe", "-version"], cfg.missingKey)
sub("unreachable", ["-b", "ffprobe", "-version"], cfg.dead)
sub("wrong key", ["-b", "ffprobe", "-version"], cfg.wrongKey)
sub("unknown user", ["-b", "ffprobe", "-version"], cfg.unknownUser)
sub("as worker (forbidden)", ["-b", "ffprobe", "-version"], cfg.asWorker)
sub("-d unreachable", ["-d", "-b", "ffprobe", "-version"], cfg.dead)
sub("-d --json unreachable", ["-d", "--json", "-b", "ffprobe", "-version"], cfg.dead)
sub("-d forbidden --json", ["-d", "--json", "-b", "ffprobe", "-version"], cfg.asWorker)
sub("stdin", ["-hide_banner", "-f", "s16le", "-ar", "8000", "-ac", "1", "-i", "pipe:0", "-f", "null", "-"], cfg.ok, {
  stdin: new Uint8Array(16000),
})
add("submit no config search", ["client", "submit", "-b", "ffprobe", "-version"], { cwd: empty, env: { HOME: empty } })
add("submit env config", ["client", "submit", "-b", "ffprobe", "-version"], { env: { DFFMPEG_CLIENT_CONFIG: cfg.ok } })

// The other client verbs.
const cl = (name: string, verb: string, args: string[], config: string | undefined = cfg.ok) =>
  add(`client ${verb} ${name}`, ["client", verb, ...(config ? ["--config", config] : []), ...args])
for (const verb of ["attach", "cancel", "status"]) {
  cl("missing id", verb, [])
  cl("bad id", verb, ["nope"])
  cl("lowercase id", verb, [done.toLowerCase()])
  cl("unknown id", verb, [MISSING])
  cl("done", verb, [done])
  cl("failed job", verb, [failedJob])
  cl("other user's", verb, [other])
  cl("unknown flag", verb, [done, "--bogus"])
  cl("two ids", verb, [done, done])
  cl("id after --", verb, ["--", done])
  cl("no config", verb, [done], "/nonexistent.yaml")
  cl("bad yaml", verb, [done], cfg.badYaml)
  cl("bad schema", verb, [done], cfg.badSchema)
  cl("unreachable", verb, [done], cfg.dead)
  cl("wrong key", verb, [done], cfg.wrongKey)
  cl("forbidden", verb, [done], cfg.asWorker)
  cl("--json unknown", verb, [MISSING, "--json"])
  cl("--json forbidden", verb, [done, "--json"], cfg.asWorker)
}
cl("--json done", "status", [done, "--json"])
cl("--interval without -w", "status", [done, "--interval", "1"])
cl("-w --interval 0", "status", ["-w", "--interval", "0"])
cl("-w --interval abc", "status", ["-w", "--interval", "abc"])
cl("no id no watch", "status", [])
cl("--no-json", "status", [done, "--no-json"])
cl("--json=false", "status", [done, "--json=false"])
for (const verb of ["jobs", "workers"]) {
  cl("", verb, [])
  cl("--json", verb, ["--json"])
  cl("unknown flag", verb, ["--bogus"])
  cl("extra positional", verb, ["extra"])
  cl("no config", verb, [], "/nonexistent.yaml")
  cl("unreachable", verb, [], cfg.dead)
  cl("unreachable --json", verb, ["--json"], cfg.dead)
  cl("wrong key", verb, [], cfg.wrongKey)
  cl("forbidden", verb, [], cfg.asWorker)
  cl("forbidden --json", verb, ["--json"], cfg.asWorker)
}
cl("--limit 0", "jobs", ["--limit", "0"])
cl("--limit abc", "jobs", ["--limit", "abc"])
cl("--limit 2", "jobs", ["--limit", "2", "--json"])
cl("--status bogus", "jobs", ["--status", "bogus"])
cl("--status completed", "jobs", ["--status", "completed", "--json"])
cl("--since bogus", "jobs", ["--since", "bogus"])
cl("--since 1h", "jobs", ["--since", "1h", "--json"])

// admin, remote and local.
const adm = (name: string, args: string[], config: string | undefined = admin) =>
  add(`admin ${name}`, ["admin", ...(config ? ["--config", config] : []), ...args])
const admLocal = (name: string, args: string[]) =>
  add(`admin --local ${name}`, ["admin", "--local", "--config", c.coordinatorConfig, ...args])
const both = (name: string, args: string[]) => {
  adm(name, args)
  admLocal(name, args)
  adm(`${name} (coordinator config)`, args, c.coordinatorConfig)
}
both("users ls", ["users", "ls"])
both("users ls --json", ["users", "ls", "--json"])
both("users show client1", ["users", "show", "client1"])
both("users show nobody", ["users", "show", "nobody"])
both("users show nobody --json", ["users", "show", "nobody", "--json"])
both("users show bad!", ["users", "show", "bad!"])
both("users add missing name", ["users", "add"])
both("users add missing role", ["users", "add", "zed"])
both("users add bad role", ["users", "add", "zed", "--role", "boss"])
both("users add existing", ["users", "add", "client1", "--role", "client"])
both("users add existing --json", ["users", "add", "client1", "--role", "client", "--json"])
both("users add bad name", ["users", "add", "-x-", "--role", "client"])
both("users rm nobody", ["users", "rm", "nobody"])
both("users rotate-key nobody", ["users", "rotate-key", "nobody"])
both("users add key-file unwritable", ["users", "add", "kf{B}", "--role", "client", "--key-file", "/nonexistent/dir/k"])
both("users add --role=client", ["users", "add", "eq{B}", "--role=client", "--json"])
both("users unknown flag", ["users", "ls", "--bogus"])
both("jobs ls", ["jobs", "ls", "--json", "--limit", "3"])
both("jobs ls --status bogus", ["jobs", "ls", "--status", "bogus"])
both("jobs ls --before bad", ["jobs", "ls", "--before", "bad"])
both("jobs ls --worker worker1", ["jobs", "ls", "--worker", "worker1", "--json", "--limit", "2"])
both("jobs show missing", ["jobs", "show", MISSING])
both("jobs show missing --json", ["jobs", "show", MISSING, "--json"])
both("jobs show bad", ["jobs", "show", "bad"])
both("jobs show done", ["jobs", "show", done, "--json"])
both("jobs logs done", ["jobs", "logs", done])
both("jobs logs done --stdout", ["jobs", "logs", done, "--stdout"])
both("jobs logs done -f", ["jobs", "logs", done, "-f"])
both("jobs logs failed", ["jobs", "logs", failedJob])
both("jobs logs missing", ["jobs", "logs", MISSING])
both("jobs cancel done", ["jobs", "cancel", done])
both("jobs cancel done --json", ["jobs", "cancel", done, "--json"])
both("jobs cancel missing", ["jobs", "cancel", MISSING])
both("workers ls", ["workers", "ls", "--json"])
both("workers show nobody", ["workers", "show", "nobody"])
both("workers show bad!", ["workers", "show", "bad!"])
both("workers drain nobody", ["workers", "drain", "nobody"])
both("janitor run", ["janitor", "run", "--json"])
both("security rotate-secret admin cfg", ["security", "rotate-secret"])
adm("--local with identity config", ["--local", "users", "ls"])
adm("config after noun", ["users", "--config", admin, "ls"], undefined)
adm("config after verb", ["users", "ls", "--config", admin], undefined)
adm("local after verb", ["users", "ls", "--local", "--config", c.coordinatorConfig], undefined)
adm("no config at all", ["users", "ls"], undefined)
adm("missing config", ["users", "ls"], "/nonexistent.yaml")
adm("bad yaml", ["users", "ls"], cfg.badYaml)
adm("client identity (forbidden)", ["users", "ls"], cfg.adminAsClient)
adm("client identity --json", ["users", "ls", "--json"], cfg.adminAsClient)
adm("client identity jobs cancel", ["jobs", "cancel", done], cfg.adminAsClient)
adm("unreachable", ["users", "ls"], cfg.adminDead)
adm("unreachable --json", ["jobs", "ls", "--json"], cfg.adminDead)
adm("wrong key", ["users", "ls"], cfg.adminWrongKey)
adm("wrong key --json", ["users", "ls", "--json"], cfg.adminWrongKey)

// Proxy mode.
const px = (
  name: string,
  tool: "ffmpeg" | "ffprobe",
  args: string[],
  config: string | undefined,
  o: Omit<Case, "name" | "argv" | "proxy"> = {},
) =>
  add(`proxy ${tool} ${name}`, args, {
    proxy: tool,
    ...o,
    env: { ...(config ? { DFFMPEG_CLIENT_CONFIG: config } : {}), ...o.env },
  })
px("-version", "ffprobe", ["-version"], cfg.ok)
px("a.txt", "ffprobe", ["-hide_banner", `${c.clientMedia}/a.txt`], cfg.ok)
px(
  "encode",
  "ffmpeg",
  ["-hide_banner", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5", "-t", "0.4", "-f", "null", "-"],
  cfg.ok,
)
px(
  "encode to stdout",
  "ffmpeg",
  ["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=0.2", "-f", "s16le", "-"],
  cfg.ok,
)
px("remote failure", "ffmpeg", ["-hide_banner", "-i", `${c.clientMedia}/missing.mkv`], cfg.ok)
px("--help passes through", "ffprobe", ["--help"], cfg.dead)
px("--bogus passes through", "ffprobe", ["--bogus"], cfg.dead)
px("unmapped", "ffprobe", ["/etc/passwd"], cfg.ok)
px("no config", "ffprobe", ["-version"], undefined, { cwd: empty, env: { HOME: empty } })
px("missing config", "ffprobe", ["-version"], "/nonexistent.yaml")
px("bad yaml", "ffprobe", ["-version"], cfg.badYaml)
px("bad schema", "ffprobe", ["-version"], cfg.badSchema)
px("missing key", "ffprobe", ["-version"], cfg.missingKey)
px("unreachable", "ffprobe", ["-version"], cfg.dead)
px("wrong key", "ffprobe", ["-version"], cfg.wrongKey)
px("unknown user", "ffprobe", ["-version"], cfg.unknownUser)
px("forbidden", "ffprobe", ["-version"], cfg.asWorker)
px("-version", "ffmpeg", ["-version"], cfg.ok)
add("DFFMPEG_PROXY env", ["-version"], { env: { DFFMPEG_PROXY: "ffprobe", DFFMPEG_CLIENT_CONFIG: cfg.ok } })
add("DFFMPEG_PROXY bogus", ["--help"], { env: { DFFMPEG_PROXY: "bogus" } })

// Running jobs, pipes, signals, refusals with details.
const A = admin
const running = async () => {
  const id = await submitted(cfg.ok, [
    "-hide_banner",
    "-nostats",
    "-re",
    "-f",
    "lavfi",
    "-i",
    "testsrc=size=32x24:rate=5",
    "-t",
    "2.5",
    "-f",
    "null",
    "-",
  ])
  await c.waitFor(async () => (await c.job(id)).status === "running", { timeoutMs: 15_000 })
  return { JOB: id }
}
const sh = (name: string, script: string, o: Omit<Case, "name" | "argv"> = {}) =>
  add(`sh ${name}`, [script], { shell: true, ...o })
add(
  "running: admin --local jobs logs -f",
  ["admin", "--local", "--config", c.coordinatorConfig, "jobs", "logs", "{JOB}", "-f"],
  { setup: running },
)
add("running: admin jobs logs -f --stdout", ["admin", "--config", A, "jobs", "logs", "{JOB}", "-f", "--stdout"], {
  setup: running,
})
add("running: client attach", ["client", "attach", "--config", cfg.ok, "{JOB}"], { setup: running })
add("running: client cancel", ["client", "cancel", "--config", cfg.ok, "{JOB}"], { setup: running })
add("running: admin jobs cancel --json", ["admin", "--config", A, "jobs", "cancel", "{JOB}"], { setup: running })
add(
  "running: admin --local jobs cancel",
  ["admin", "--local", "--config", c.coordinatorConfig, "jobs", "cancel", "{JOB}"],
  { setup: running },
)
add("running: workers show worker1", ["admin", "--config", A, "workers", "show", "worker1"], { setup: running })
sh(
  "attach then admin cancel",
  `{BIN} client attach --config ${cfg.ok} {JOB} & p=$!; sleep 0.5; ${NEW} admin --config ${A} jobs cancel {JOB} >/dev/null; wait $p; echo exit=$?`,
  { setup: running },
)
sh(
  "proxy canceled by admin",
  `{BINDIR}/ffmpeg -hide_banner -nostats -re -f lavfi -i testsrc=size=32x24:rate=5 -t 6 -f null - & p=$!; sleep 2; id=$(${NEW} admin --config ${A} jobs ls --status running --json | jq -r '.[0].id'); ${NEW} admin --config ${A} jobs cancel $id >/dev/null; wait $p; echo exit=$?`,
  { env: { DFFMPEG_CLIENT_CONFIG: cfg.ok } },
)
sh(
  "proxy SIGINT forwarded",
  `{BINDIR}/ffmpeg -hide_banner -nostats -re -f lavfi -i testsrc=size=32x24:rate=5 -t 8 -f null - & p=$!; sleep 2; kill -INT $p; wait $p; echo exit=$?`,
  { env: { DFFMPEG_CLIENT_CONFIG: cfg.ok } },
)
sh(
  "client submit SIGTERM forwarded",
  `{BIN} client submit --config ${cfg.ok} -- -hide_banner -nostats -re -f lavfi -i testsrc=size=32x24:rate=5 -t 8 -f null - & p=$!; sleep 2; kill -TERM $p; wait $p; echo exit=$?`,
)
sh(
  "proxy stdout EPIPE",
  `set -o pipefail; {BINDIR}/ffmpeg -hide_banner -loglevel error -re -f lavfi -i sine=d=20 -f s16le - | head -c 100 >/dev/null; echo exit=$?`,
  { env: { DFFMPEG_CLIENT_CONFIG: cfg.ok } },
)
sh(
  "admin jobs ls EPIPE",
  `set -o pipefail; {BIN} admin --config ${A} jobs ls --limit 200 | head -c 1 >/dev/null; echo exit=$?`,
)
sh("client jobs closed stdout", `{BIN} client jobs --config ${cfg.ok} >&-; echo exit=$?`)
sh("users ls to /dev/full", `{BIN} admin --config ${A} users ls >/dev/full; echo exit=$?`)
sh(
  "submit -d to /dev/full",
  `{BIN} client submit --config ${cfg.ok} -d -b ffprobe -- -version >/dev/full; echo exit=$?`,
)
sh(
  "status -w json SIGINT",
  `timeout -s INT 2.2 {BIN} client status --config ${cfg.ok} -w --json --interval 0.5 {JOB} | head -c 60; echo; echo exit=\${PIPESTATUS[0]}`,
  { setup: running },
)
sh("status -w text SIGINT", `timeout -s INT 1.2 {BIN} client status --config ${cfg.ok} -w ${done}; echo exit=$?`)
sh("status -w overview SIGINT", `timeout -s INT 1.2 {BIN} client status --config ${cfg.ok} -w | head -3; echo exit=$?`)
sh("status -w unreachable SIGINT", `timeout -s INT 1.5 {BIN} client status --config ${cfg.dead} -w; echo exit=$?`)
sub("bad binary name (details)", ["-b", "bad name", "-version"])
sub("-d bad binary name (details)", ["-d", "-b", "bad name", "-version"])
sub("-d --json bad binary name (details)", ["-d", "--json", "-b", "bad name", "-version"])
const big = "x".repeat(100_000)
sub("args too large", ["-b", "ffprobe", big, big, big])
px("args too large", "ffprobe", [big, big, big], cfg.ok)
px("with DFFMPEG_PROXY set too", "ffprobe", ["-version"], cfg.ok, { env: { DFFMPEG_PROXY: "ffprobe" } })

// Unknown flags, aliases and `--` on every leaf.
const leaves = helpPaths.filter(
  (p) =>
    p.length === 3 ||
    (p[0] === "client" && p.length === 2) ||
    (p.length === 1 && ["coordinator", "worker", "version"].includes(p[0]!)),
)
for (const p of leaves) {
  const cfgArgs = p[0] === "client" ? ["--config", cfg.dead] : p[0] === "admin" ? ["--config", cfg.adminDead] : []
  add(`flags ${p.join(" ")} --zzz`, [...p, "--zzz"])
  add(`flags ${p.join(" ")} x --zzz=1`, [...p, ...cfgArgs, "x", "--zzz=1"])
  add(`flags ${p.join(" ")} -z`, [...p, ...cfgArgs, "x", "-z"])
  add(`flags ${p.join(" ")} --no-zzz`, [...p, ...cfgArgs, "x", "--no-zzz"])
  // A service given only `--` starts (on port 8000): cut it short.
  add(`flags ${p.join(" ")} -- --zzz`, [...p, ...cfgArgs, "x", "--", "--zzz"], { timeoutMs: 3000 })
  add(`flags ${p.join(" ")} --json`, [...p, ...cfgArgs, "x", "--json"])
  add(`flags ${p.join(" ")} --no-json`, [...p, ...cfgArgs, "--no-json", "x"])
}
add("flags client status -w alias", ["client", "status", "--config", cfg.dead, "-w", "--interval", "9999"])
add("flags admin jobs logs -f alias", ["admin", "--config", A, "jobs", "logs", "-f", done])
add("flags admin jobs logs --follow=true", ["admin", "--config", A, "jobs", "logs", "--follow=true", done])
add("flags admin jobs logs --no-follow", ["admin", "--config", A, "jobs", "logs", "--no-follow", done])
add("flags admin users add --key-file=", [
  "admin",
  "--config",
  A,
  "users",
  "add",
  "kq{B}",
  "--role",
  "worker",
  "--key-file=" + join(D, "kq{B}.key"),
])
add("flags admin users add keyFile camel", [
  "admin",
  "--config",
  A,
  "users",
  "add",
  "kc{B}",
  "--role",
  "worker",
  "--keyFile",
  join(D, "kc{B}.key"),
])
add("flags admin jobs ls negative limit", ["admin", "--config", A, "jobs", "ls", "--limit", "-1"])
add("flags admin jobs ls -5 positional", ["admin", "--config", A, "jobs", "ls", "-5"])
add("flags admin jobs show - ", ["admin", "--config", A, "jobs", "show", "-"])
add("flags coordinator --port=abc", ["coordinator", "--port=abc"])
add("flags coordinator --host", ["coordinator", "--config", cfg.coordBad, "--host"])
add("flags admin --local=false", ["admin", "--local=false", "--config", A, "users", "ls", "--json"])
add("flags admin users --local ls", ["admin", "users", "--local", "--config", c.coordinatorConfig, "ls", "--json"])
add("flags -V", ["-V"])
add("flags --version extra", ["--version", "x"])

// Each binary's own ffmpeg/ffprobe symlinks.
const oldBin = join(D, "oldbin")
mkdirSync(oldBin)
for (const t of ["ffmpeg", "ffprobe"]) symlinkSync(OLD, join(oldBin, t))
const newBin = join(D, "newbin")
mkdirSync(newBin)
for (const t of ["ffmpeg", "ffprobe"]) symlinkSync(NEW, join(newBin, t))

const norm = (s: string, which: "old" | "new") =>
  s
    .replaceAll(which === "old" ? OLD : NEW, "<BIN>")
    .replaceAll(which === "old" ? oldBin : newBin, "<BINDIR>")
    .replaceAll(D, "<DIR>")
    .replaceAll(empty, "<EMPTY>")
    .replaceAll(which === "old" ? "kfold" : "kfnew", "kf{B}")
    .replaceAll(which === "old" ? "eqold" : "eqnew", "eq{B}")
    .replaceAll(which === "old" ? "kqold" : "kqnew", "kq{B}")
    .replaceAll(which === "old" ? "kcold" : "kcnew", "kc{B}")
    .replace(/[0-9A-HJKMNP-TV-Z]{26}/g, "<ULID>")
    .replace(new RegExp(`127\\.0\\.0\\.1:${c.port}`, "g"), "127.0.0.1:<PORT>")
    .replace(/\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?/g, "<TIME>")
    .replace(
      /"(createdAt|updatedAt|startedAt|finishedAt|lastSeen|at|assignedAt|lastHeartbeat|callerSeenAt|registeredAt|ranAt|heartbeatAt|now)":\d+/g,
      '"$1":<T>',
    )
    .replace(/\b\d+(\.\d+)?(ms|s)\b/g, "<DUR>")
    .replace(/[A-Za-z0-9+/]{43}=/g, "<KEY>")
    .replace(/frame=[^\n\r]*/g, "<FRAME>")
    .replace(/ +(?=\n)/g, "")

async function run(bin: string, k: Case, which: "old" | "new") {
  const vars = (await k.setup?.()) ?? {}
  const sub = (a: string) => Object.entries(vars).reduce((t, [n, v]) => t.replaceAll(`{${n}}`, v), a)
  if (k.shell) {
    const script = sub(k.argv[0]!)
      .replaceAll("{BINDIR}", which === "old" ? oldBin : newBin)
      .replaceAll("{BIN}", bin)
    const r = await c.exec(["bash", "-c", script], {
      cwd: k.cwd,
      env: k.env,
      stdin: k.stdin,
      timeoutMs: k.timeoutMs ?? 30_000,
    })
    return { code: r.code, out: norm(r.out, which), err: norm(r.err, which) }
  }
  k = { ...k, argv: k.argv.map(sub) }
  const argv = k.proxy ? [join(which === "old" ? oldBin : newBin, k.proxy), ...k.argv] : [bin, ...k.argv]
  const resolved = argv.map((a) => a.replace("{B}", which))
  const r = await c.exec(resolved, { cwd: k.cwd, env: k.env, stdin: k.stdin, timeoutMs: k.timeoutMs ?? 15_000 })
  return { code: r.code, out: norm(r.out, which), err: norm(r.err, which) }
}

let diffs = 0
const report: string[] = []
for (const k of cases) {
  if (filter && !k.name.includes(filter)) continue
  const a = await run(OLD, k, "old")
  const b = await run(NEW, k, "new")
  const same = a.code === b.code && a.out === b.out && a.err === b.err
  if (same) {
    report.push(
      `SAME  ${k.name}  [exit ${a.code}]` +
        (process.argv.includes("--verbose")
          ? `\n  stdout: ${JSON.stringify(a.out.slice(0, 600))}\n  stderr: ${JSON.stringify(a.err.slice(-600))}`
          : ""),
    )
    continue
  }
  diffs++
  const lines = [`DIFF  ${k.name}`, `  exit: old ${a.code} new ${b.code}`]
  if (a.out !== b.out)
    lines.push(
      `  stdout old: ${JSON.stringify(a.out.slice(0, 1500))}`,
      `  stdout new: ${JSON.stringify(b.out.slice(0, 1500))}`,
    )
  if (a.err !== b.err)
    lines.push(
      `  stderr old: ${JSON.stringify(a.err.slice(0, 1500))}`,
      `  stderr new: ${JSON.stringify(b.err.slice(0, 1500))}`,
    )
  report.push(lines.join("\n"))
}
console.log(report.join("\n"))
console.log(`\n${diffs} differing of ${cases.filter((k) => !filter || k.name.includes(filter)).length} cases`)
await c.stop()
rmSync(empty, { recursive: true, force: true })
