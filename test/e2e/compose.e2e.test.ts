import { afterAll, beforeAll, expect, test } from "bun:test"
import {
  chmodSync,
  chownSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs"
import { tmpdir } from "node:os"
import { join, posix, relative } from "node:path"
import { parse, stringify } from "yaml"
import { BIN, ROOT, requireBinary } from "../helpers/bin.ts"
import { adminRuns, BINARY, DEPLOY, defaults, mounts, type Service, svc } from "../helpers/compose.ts"
import { FILM_SUBTITLE, film } from "../helpers/media.ts"
import { Proc } from "../helpers/proc.ts"

/**
 * deploy/compose.yaml run on this machine without Docker: each service is a process in a bubblewrap view
 * of its own holding exactly the compose file's mounts (a tmpfs root with /usr, and the binary where the
 * image has it), all of them in one private network namespace where `coordinator` resolves to loopback,
 * each as the uid the compose file gives it. The example configs are used as they are, except that the
 * worker runs Debian's ffmpeg (there is no jellyfin-ffmpeg here). The steps are the compose file's own:
 * the two `admin users add` runs, the coordinator (and the image's HEALTHCHECK command against it), the
 * shim copier, the worker, then ffprobe, an HLS transcode, trickplay frames and a subtitle extraction run
 * by "Jellyfin" through JELLYFIN_FFMPEG, each written where Jellyfin reads it, owned by its uid.
 */

let T: string
let net: ReturnType<typeof Bun.spawn>
let hosts: string
const procs: Proc[] = []

/** The ids the compose file runs Jellyfin as, and builds the dffmpeg image with. */
const [UID, GID] = defaults(svc("jellyfin").user!).split(":").map(Number)
/** Where a service's mount source lives here: deploy/'s folders under T, named volumes in T/volumes. */
const hostPath = (m: { source: string; named: boolean }) =>
  m.named ? join(T, "volumes", m.source) : join(T, relative(DEPLOY, m.source))

/** bwrap arguments for a service's filesystem view (its mounts, parents first as Docker sorts them). */
function view(s: Service, image: boolean): string[] {
  // /tmp as in a Debian image (1777): SQLite needs a temporary folder it can write.
  // /proc unmasked, as the worker's `systempaths=unconfined` gives it (bwrap's own --proc covers /proc/sys
  // and others read-only, as Docker does, and a sandbox inside could not mount its /proc: test/deploy.test.ts).
  const a = ["--die-with-parent", "--ro-bind", "/usr", "/usr", "--bind", "/proc", "/proc", "--dev", "/dev"]
  a.push("--perms", "1777", "--tmpfs", "/tmp")
  for (const [l, t] of [
    ["usr/bin", "/bin"],
    ["usr/sbin", "/sbin"],
    ["usr/lib", "/lib"],
    ["usr/lib64", "/lib64"],
  ])
    a.push("--symlink", l, t)
  a.push("--perms", "0755", "--tmpfs", "/usr/local", "--perms", "0755", "--dir", "/etc")
  for (const f of ["ld.so.cache", "alternatives", "fonts", "nsswitch.conf", "passwd", "group", "localtime", "ssl"])
    a.push("--ro-bind-try", `/etc/${f}`, `/etc/${f}`)
  a.push("--ro-bind", hosts, "/etc/hosts")
  if (image) a.push("--perms", "0755", "--dir", posix.dirname(BINARY), "--ro-bind", BIN, BINARY)
  for (const [target, m] of [...mounts(s)].sort(([x], [y]) => x.length - y.length)) {
    const parents = target.split("/").slice(1, -1)
    for (let i = 1; i <= parents.length; i++) {
      const dir = `/${parents.slice(0, i).join("/")}`
      if (dir !== "/usr" && dir !== "/usr/local" && dir !== "/etc") a.push("--perms", "0755", "--dir", dir)
    }
    a.push(m.ro ? "--ro-bind" : "--bind", hostPath(m), target)
  }
  return a
}

/** A service's process: in the shared network namespace, in its view, as `user` (uid:gid), with its environment. */
function spawn(s: Service, argv: string[], o: { image?: boolean; user?: string; env?: Record<string, string> } = {}) {
  const [uid, gid] = (o.user ?? `${UID}:${GID}`).split(":")
  const cmd = ["nsenter", `--net=/proc/${net.pid}/ns/net`, "bwrap", ...view(s, o.image ?? true), "--chdir", "/", "--"]
  if (uid !== "0") cmd.push("setpriv", "--reuid", uid, "--regid", gid, "--clear-groups")
  return Bun.spawn([...cmd, ...argv], {
    env: { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/tmp", ...s.environment, ...o.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  })
}
async function run(s: Service, argv: string[], o: Parameters<typeof spawn>[2] = {}) {
  const p = spawn(s, argv, o)
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
  return { out, err, code }
}
function start(name: string, s: Service, argv: string[]) {
  const p = new Proc(name, spawn(s, argv) as ConstructorParameters<typeof Proc>[1])
  procs.push(p)
  return p
}

/** chown -R UID:GID, as the compose file's set-up says. */
const own = (p: string) => {
  chownSync(p, UID, GID)
  if (statSync(p).isDirectory()) for (const e of readdirSync(p)) own(join(p, e))
}

beforeAll(async () => {
  requireBinary()
  T = mkdtempSync(join(tmpdir(), "dffmpeg-compose-"))
  chmodSync(T, 0o755)
  // deploy/'s folders as the compose file's set-up makes them (mkdir -p …, chown -R MEDIA_UID:MEDIA_GID).
  mkdirSync(join(T, "config", "keys"), { recursive: true })
  for (const f of ["coordinator.yaml", "worker.yaml", "client.yaml"])
    cpSync(join(DEPLOY, "config", f), join(T, "config", f))
  // The one change: Debian's ffmpeg stands in for jellyfin-ffmpeg.
  const worker = parse(readFileSync(join(T, "config", "worker.yaml"), "utf8"))
  worker.binaries = { ffmpeg: "/usr/bin/ffmpeg", ffprobe: "/usr/bin/ffprobe" }
  writeFileSync(join(T, "config", "worker.yaml"), stringify(worker))
  for (const s of ["coordinator", "worker", "shim", "jellyfin"])
    for (const m of mounts(svc(s)).values())
      if (!m.source.endsWith(".yaml") && !m.source.endsWith(".key")) mkdirSync(hostPath(m), { recursive: true })
  await film(join(T, "media", "film.mkv"))
  for (const d of ["config/keys", "media", "cache", "jellyfin", "volumes/dffmpeg-state"]) own(join(T, d))
  hosts = join(T, "hosts")
  writeFileSync(hosts, "127.0.0.1 localhost coordinator\n")
  chmodSync(hosts, 0o644)
  // A network namespace of its own: port 8000 is free there whatever runs on this machine.
  net = Bun.spawn(["unshare", "-n", "sh", "-c", "ip link set lo up && exec cat"], { stdin: "pipe" })
  for (const deadline = Date.now() + 5000; ; await Bun.sleep(20)) {
    const links = Bun.spawnSync(["nsenter", `--net=/proc/${net.pid}/ns/net`, "ip", "-o", "link", "show", "lo"])
    if (links.stdout.toString().includes("UP")) break
    if (Date.now() > deadline) throw new Error("the network namespace did not come up")
  }
}, 60_000)

afterAll(async () => {
  for (const p of procs.reverse()) await p.stop()
  // Stopping bwrap does not always end the service under it (setpriv's change of uid clears the parent-death
  // signal --die-with-parent set): whatever still runs in the services' network namespace goes too.
  if (net) {
    const ns = readlinkSync(`/proc/${net.pid}/ns/net`)
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d) && Number(d) !== net.pid)) {
      try {
        if (readlinkSync(`/proc/${pid}/ns/net`) === ns) process.kill(Number(pid), "SIGKILL")
      } catch {
        // Gone already, or not ours to read.
      }
    }
  }
  net?.kill()
  if (T) rmSync(T, { recursive: true, force: true })
})

test("the compose file's steps give Jellyfin a working proxy: probe, transcode, trickplay, subtitles", async () => {
  const co = svc("coordinator")
  // 1. The identities, by the compose file's own commands (the coordinator's container, not running yet).
  const runs = adminRuns()
  expect(runs).toHaveLength(2)
  for (const argv of runs) {
    const r = await run(co, [BINARY, ...argv])
    expect(r.out + r.err).toContain("wrote the key of")
    expect(r.code).toBe(0)
  }
  for (const id of ["worker1", "jellyfin"]) {
    const st = statSync(join(T, "config", "keys", `${id}.key`))
    expect([st.uid, st.mode & 0o777]).toEqual([UID, 0o600])
  }

  // 2. The coordinator, then the image's HEALTHCHECK command in its container.
  const coordinator = start("coordinator", co, [BINARY, ...co.command!])
  await coordinator.waitForLine(/listening on http:\/\/0\.0\.0\.0:8000/, 20_000)
  const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8").replace(/\\\n\s*/g, " ")
  const check = dockerfile.match(/^HEALTHCHECK .*? CMD (.+)$/m)![1]
  const url = dockerfile.match(/^ENV DFFMPEG_HEALTH_URL=(\S+)$/m)![1]
  const health = await run(co, ["sh", "-c", check], { env: { DFFMPEG_HEALTH_URL: url } })
  expect(health.err).toBe("")
  expect(health.code).toBe(0)

  // 3. The shim copier (as root, its compose user), then the worker.
  const shim = svc("shim")
  const copied = await run(shim, [...shim.entrypoint!, ...shim.command!], { user: shim.user })
  expect(copied.err).toBe("")
  expect(copied.code).toBe(0)
  const wk = svc("worker")
  const worker = start("worker", wk, [BINARY, ...wk.command!])
  await worker.waitForLine(/worker registered/, 30_000)

  // 4. Jellyfin: its ffmpeg is JELLYFIN_FFMPEG, its ffprobe the one beside it; no dffmpeg binary of its own.
  const jf = svc("jellyfin")
  const ffmpeg = jf.environment!.JELLYFIN_FFMPEG
  const ffprobe = posix.join(posix.dirname(ffmpeg), "ffprobe")
  const jellyfin = (argv: string[]) => run(jf, argv, { image: false })
  const probeArgs = [
    "-v",
    "error",
    "-show_entries",
    "format=duration:stream=codec_type",
    "-of",
    "json",
    "/media/film.mkv",
  ]
  const remote = await jellyfin([ffprobe, ...probeArgs])
  expect(remote.err).toBe("")
  expect(remote.code).toBe(0)
  expect(remote.out).toBe((await jellyfin(["/usr/bin/ffprobe", ...probeArgs])).out)

  // An HLS transcode into the transcode folder (which Jellyfin creates at start): written by the worker's
  // job, owned by Jellyfin's uid.
  const transcodes = join(T, "cache", "transcodes")
  mkdirSync(transcodes)
  own(transcodes)
  const hls = await jellyfin([
    ffmpeg,
    ...["-hide_banner", "-loglevel", "error", "-i", "file:/media/film.mkv", "-map", "0:0", "-map", "0:1"],
    ...["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "hls", "-hls_time", "1"],
    ...["-hls_segment_filename", "/cache/transcodes/abc%d.ts", "/cache/transcodes/abc.m3u8"],
  ])
  expect(hls.err).toBe("")
  expect(hls.code).toBe(0)
  expect(readFileSync(join(transcodes, "abc.m3u8"), "utf8")).toContain("abc0.ts")
  expect(statSync(join(transcodes, "abc0.ts")).uid).toBe(UID)

  // Trickplay frames under $TMPDIR/jellyfin (TMPDIR on the shared cache).
  const tmp = join(T, "cache", relative("/cache", jf.environment!.TMPDIR))
  const frames = join(tmp, "jellyfin", "g1")
  mkdirSync(frames, { recursive: true }) // Jellyfin creates it before running ffmpeg
  own(tmp)
  const trick = await jellyfin([
    ffmpeg,
    ...["-loglevel", "error", "-an", "-sn", "-i", "file:/media/film.mkv", "-vf", "fps=2,scale=w=160:h=-2"],
    ...["-c:v", "mjpeg", "-f", "image2", posix.join(jf.environment!.TMPDIR, "jellyfin", "g1", "%08d.jpg")],
  ])
  expect(trick.err).toBe("")
  expect(trick.code).toBe(0)
  expect(readdirSync(frames).length).toBeGreaterThanOrEqual(3)

  // A subtitle stream extracted into /config/subtitles, its own mount inside Jellyfin's /config.
  const sub = await jellyfin([
    ffmpeg,
    "-loglevel",
    "error",
    "-i",
    "file:/media/film.mkv",
    "-map",
    "0:2",
    "-c:s",
    "srt",
    "/config/subtitles/film.srt",
  ])
  expect(sub.err).toBe("")
  expect(sub.code).toBe(0)
  expect(readFileSync(join(T, "jellyfin", "subtitles", "film.srt"), "utf8")).toContain(FILM_SUBTITLE)
}, 120_000)
