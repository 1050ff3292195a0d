/**
 * The container files, checked where no Docker daemon runs: deploy/compose.yaml read with the `yaml` package
 * (services, the mounts docs/jellyfin.md names on both sides, the shim paths of the install layout), its
 * example configs validated by the real config schemas, every path the Dockerfile copies or runs, and
 * deploy/image-setup.sh (what the Dockerfile RUNs) run into a scratch root.
 */
import { afterAll, describe, expect, test } from "bun:test"
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from "node:fs"
import { dirname, join, posix, relative } from "node:path"
import { loadConfig } from "../src/shared/config/load.ts"
import { ClientConfig } from "../src/shared/config/schema.ts"
import { CoordinatorConfig, WorkerConfig } from "../src/shared/config/server-schema.ts"
import { BIN, ROOT, requireBinary } from "./helpers/bin.ts"
import { BINARY, CONFIG_DIR, compose, DEPLOY, mounts, SHIM_DIR, type Service, svc } from "./helpers/compose.ts"
import { tempDir } from "./helpers/fixtures.ts"

/** The config file a service mounts at `target`, validated by the role's schema (no unknown keys either). */
async function mountedConfig<S extends Parameters<typeof loadConfig>[1]>(
  s: Service,
  target: string,
  role: "coordinator" | "worker" | "client",
  schema: S,
) {
  const m = mounts(s).get(target)
  expect(m, `a mount at ${target}`).toBeDefined()
  expect(m!.ro).toBe(true)
  const loaded = await loadConfig(role, schema, m!.source)
  expect(loaded.warnings).toEqual([])
  return loaded.config
}

describe("deploy/compose.yaml", () => {
  test("has the coordinator, the worker, Jellyfin and the shim copier", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["coordinator", "jellyfin", "shim", "worker"])
    expect(svc("jellyfin").image).toMatch(/^jellyfin\/jellyfin(:|$)/)
    expect(svc("coordinator").command).toEqual(["coordinator", "--config", `${CONFIG_DIR}/coordinator.yaml`])
    expect(svc("worker").command).toEqual(["worker", "--config", `${CONFIG_DIR}/worker.yaml`])
  })

  test("Jellyfin runs the proxy from the layout's shim folder, which the shim service fills", () => {
    const jf = svc("jellyfin")
    expect(jf.environment?.JELLYFIN_FFMPEG).toBe(`${SHIM_DIR}/ffmpeg`)
    const shim = mounts(jf).get(SHIM_DIR)
    expect(shim).toEqual({ source: "shim", named: true, ro: true })
    expect(compose.volumes).toHaveProperty("shim")
    // The copier mounts the same volume and writes the binary and both names Jellyfin runs into it.
    const copier = svc("shim")
    const [target] = [...mounts(copier)].find(([, m]) => m.source === "shim") ?? []
    expect(target).toBeDefined()
    const script = [...(copier.entrypoint ?? []), ...(copier.command ?? [])].join(" ")
    expect(script).toContain(`cp ${BINARY} ${target}/dffmpeg.new`)
    expect(script).toContain(`mv -f ${target}/dffmpeg.new ${target}/dffmpeg`)
    for (const tool of ["ffmpeg", "ffprobe"]) expect(script).toContain(`ln -sfn dffmpeg ${target}/${tool}`)
    expect(jf.depends_on?.shim?.condition).toBe("service_completed_successfully")
  })

  test("the shim service's command, run twice, leaves a binary whose ffmpeg and ffprobe links are the proxy", () => {
    requireBinary()
    const copier = svc("shim")
    const [target] = [...mounts(copier)].find(([, m]) => m.source === "shim")!
    const tmp = tempDir("shim-volume")
    try {
      // The image's /usr/local/bin (the binary alone) over this machine's, for this process tree only; the
      // volume is a folder here.
      const image = join(tmp.dir, "image-bin")
      const volume = join(tmp.dir, "volume")
      mkdirSync(image)
      mkdirSync(volume)
      cpSync(BIN, join(image, "dffmpeg"))
      const script = copier.command!.join(" ").replaceAll(target, volume)
      for (let run = 1; run <= 2; run++) {
        const r = Bun.spawnSync(
          [
            "unshare",
            "-m",
            "sh",
            "-c",
            `mount --make-rprivate / && mount --bind "$0" ${posix.dirname(BINARY)} && ${script}`,
            image,
          ],
          { stdout: "pipe", stderr: "pipe" },
        )
        expect(r.stderr.toString()).toBe("")
        expect(r.exitCode).toBe(0)
        expect(readdirSync(volume).sort()).toEqual(["dffmpeg", "ffmpeg", "ffprobe"])
      }
      expect(readFileSync(join(volume, "dffmpeg")).equals(readFileSync(BIN))).toBe(true)
      // Jellyfin runs JELLYFIN_FFMPEG and the ffprobe beside it: both are the proxy (no client config here).
      const home = join(tmp.dir, "home")
      mkdirSync(home)
      for (const tool of ["ffmpeg", "ffprobe"]) {
        expect(readlinkSync(join(volume, tool))).toBe("dffmpeg")
        const r = Bun.spawnSync([join(volume, tool), "-version"], {
          env: { PATH: "/usr/bin:/bin", HOME: home },
          cwd: home,
          stderr: "pipe",
        })
        expect(r.stderr.toString()).toContain("client config")
        expect(r.exitCode).toBe(1)
      }
    } finally {
      tmp.remove()
    }
  })

  test("every folder of the client's paths is mounted in Jellyfin and, for the same variable, in the worker", async () => {
    const jf = svc("jellyfin")
    const wk = svc("worker")
    const client = await mountedConfig(jf, jf.environment!.DFFMPEG_CLIENT_CONFIG, "client", ClientConfig)
    const worker = await mountedConfig(wk, `${CONFIG_DIR}/worker.yaml`, "worker", WorkerConfig)
    expect(Object.keys(worker.paths).sort()).toEqual(Object.keys(client.paths).sort())
    for (const [name, root] of Object.entries(client.paths)) {
      // A root of its own in Jellyfin (not a folder inside a bigger mount the workers do not see)...
      const here = mounts(jf).get(root)
      expect(here, `Jellyfin mounts $${name} at ${root}`).toBeDefined()
      // ...and the very same storage where the worker's variable points.
      const there = mounts(wk).get(worker.paths[name])
      expect(there, `the worker mounts $${name} at ${worker.paths[name]}`).toBeDefined()
      expect(there!.source).toBe(here!.source)
      expect(there!.ro).toBe(false)
    }
    // The folders docs/jellyfin.md says Jellyfin's ffmpeg writes, in this image (data /config, cache /cache).
    const mapped = (p: string) => Object.values(client.paths).some((r) => !posix.relative(r, p).startsWith(".."))
    for (const p of ["/cache/transcodes", "/cache/attachments", "/config/subtitles", "/config/attachments"])
      expect(mapped(p), `${p} is under a path variable`).toBe(true)
    // Trickplay and chapter images (10.10+) go to $TMPDIR/jellyfin.
    expect(mapped(join(jf.environment!.TMPDIR, "jellyfin"))).toBe(true)
  })

  test("the client's and the worker's keys are the files the coordinator's admin writes", async () => {
    const jf = svc("jellyfin")
    const wk = svc("worker")
    const co = svc("coordinator")
    const keysDir = mounts(co).get(`${CONFIG_DIR}/keys`)
    expect(keysDir?.ro).toBe(false)
    const client = await mountedConfig(jf, `${CONFIG_DIR}/client.yaml`, "client", ClientConfig)
    const worker = await mountedConfig(wk, `${CONFIG_DIR}/worker.yaml`, "worker", WorkerConfig)
    for (const [s, cfg] of [
      [jf, client],
      [wk, worker],
    ] as const) {
      // hmac_key_file is relative to the config's folder, /etc/dffmpeg; the key is created as keys/<id>.key.
      const keyPath = posix.join(CONFIG_DIR, cfg.hmac_key_file!)
      expect(keyPath).toBe(`${CONFIG_DIR}/keys/${cfg.client_id}.key`)
      const m = mounts(s).get(keyPath)
      expect(m).toEqual({ source: join(keysDir!.source, `${cfg.client_id}.key`), named: false, ro: true })
    }
    // The compose file's own instructions create exactly those identities there.
    const text = readFileSync(join(DEPLOY, "compose.yaml"), "utf8")
    for (const [id, role] of [
      [worker.client_id, "worker"],
      [client.client_id, "client"],
    ])
      expect(text).toContain(`users add ${id} --role ${role} --key-file ${CONFIG_DIR}/keys/${id}.key`)
  })

  test("the coordinator listens where the others and the health check look, its state on the volume", async () => {
    const co = svc("coordinator")
    const cfg = await mountedConfig(co, `${CONFIG_DIR}/coordinator.yaml`, "coordinator", CoordinatorConfig)
    expect(cfg.host).toBe("0.0.0.0")
    expect(co.ports).toContain(`${cfg.port}:${cfg.port}`)
    expect(cfg.database.engine).toBe("sqlite")
    const db = (cfg.database as { path: string }).path
    expect(mounts(co).get(dirname(db))).toEqual({ source: "dffmpeg-state", named: true, ro: false })
    expect(readFileSync(join(ROOT, "Dockerfile"), "utf8")).toContain(
      `DFFMPEG_HEALTH_URL=http://127.0.0.1:${cfg.port}/health`,
    )
    const worker = await mountedConfig(svc("worker"), `${CONFIG_DIR}/worker.yaml`, "worker", WorkerConfig)
    const client = await mountedConfig(svc("jellyfin"), `${CONFIG_DIR}/client.yaml`, "client", ClientConfig)
    for (const link of [worker.coordinator, client.coordinator])
      expect(link).toMatchObject({ host: "coordinator", port: cfg.port })
  })

  test("the worker runs jellyfin-ffmpeg from its image target, with what bubblewrap needs in a container", async () => {
    const wk = svc("worker")
    expect(wk.build?.target).toBe("jellyfin-worker")
    expect(wk.build?.context).toBe("..")
    const worker = await mountedConfig(wk, `${CONFIG_DIR}/worker.yaml`, "worker", WorkerConfig)
    expect(worker.binaries).toEqual({
      ffmpeg: "/usr/lib/jellyfin-ffmpeg/ffmpeg",
      ffprobe: "/usr/lib/jellyfin-ffmpeg/ffprobe",
    })
    expect(worker.sandbox).toBe("bwrap")
    expect(wk.security_opt?.sort()).toEqual([
      "apparmor=unconfined",
      "no-new-privileges:true",
      "seccomp=unconfined",
      "systempaths=unconfined",
    ])
    expect(wk.healthcheck?.disable).toBe(true)
  })

  test("the dffmpeg services build with the same ids Jellyfin runs as", () => {
    const jf = svc("jellyfin")
    for (const name of ["coordinator", "worker", "shim"]) {
      const args = svc(name).build?.args ?? {}
      expect(`${args.DFFMPEG_UID}:${args.DFFMPEG_GID}`).toBe(jf.user!)
    }
  })
})

describe("Dockerfile", () => {
  const tmpBuild = tempDir("docker-build")
  afterAll(() => tmpBuild.remove())
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8").replace(/\\\n/g, " ")
  const lines = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"))
  const stages = lines.flatMap((l) => l.match(/^FROM\s+\S+\s+AS\s+(\S+)/i)?.slice(1) ?? [])
  const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith("#"))

  test("has the build, runtime, jellyfin-worker and default stages; compose targets exist", () => {
    expect(stages).toEqual(["build", "runtime", "jellyfin-worker", "dffmpeg"])
    for (const s of Object.values(compose.services)) if (s.build?.target) expect(stages).toContain(s.build.target)
    // Bun as scripts/setup.sh installs it, and a Debian bookworm-slim runtime.
    const setup = readFileSync(join(ROOT, "scripts/setup.sh"), "utf8")
    const bun = setup.match(/BUN_VERSION=(\S+)/)![1]
    expect(text).toContain(`npm install -g --silent bun@${bun}`)
    expect(text).toContain("ARG DEBIAN_RELEASE=bookworm")
    expect(text).toContain("FROM debian:${DEBIAN_RELEASE}-slim AS runtime")
    expect(text).toMatch(/^USER dffmpeg$/m)
    expect(text).toContain('ENTRYPOINT ["/usr/local/bin/dffmpeg"]')
  })

  test("every path it copies from the repository exists and reaches the build context", () => {
    const copies = lines.filter((l) => /^COPY\s/.test(l) && !/--from=/.test(l))
    expect(copies.length).toBeGreaterThan(0)
    for (const l of copies) {
      const parts = l.trim().split(/\s+/).slice(1)
      for (const src of parts.slice(0, -1)) {
        expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true)
        const top = src.split("/")[0]
        expect(ignored, `${src} is not in .dockerignore`).not.toContain(top)
      }
    }
    for (const l of lines.filter((l) => /^COPY\s+--from=/.test(l))) {
      const from = l.match(/--from=(\S+)/)![1]
      expect(stages).toContain(from)
    }
  })

  test("every script it runs is in the repository (by the path it was copied to)", () => {
    // Where each copied file lands: destination → repository path.
    const landed = new Map<string, string>()
    let workdir = "/"
    for (const l of lines) {
      const w = l.match(/^WORKDIR\s+(\S+)/)
      if (w) workdir = w[1]
      const c = l.match(/^COPY\s+(?!--from)(.+)$/)
      if (!c) continue
      const parts = c[1].trim().split(/\s+/)
      const dest = posix.resolve(workdir, parts.at(-1)!)
      for (const src of parts.slice(0, -1))
        landed.set(parts.length > 2 || dest.endsWith("/") ? posix.join(dest, posix.basename(src)) : dest, src)
    }
    const runs = lines.filter((l) => /^RUN\s/.test(l))
    const scripts: string[] = []
    workdir = "/"
    for (const l of lines) {
      const w = l.match(/^WORKDIR\s+(\S+)/)
      if (w) workdir = w[1]
      if (!/^RUN\s/.test(l)) continue
      for (const m of l.matchAll(/\b(?:sh|bash|bun)\s+((?:\.{0,2}\/)?[\w./-]+\.(?:sh|ts))/g)) {
        const at = posix.resolve(workdir, m[1])
        const src = [...landed].find(([d]) => at === d || at.startsWith(`${d}/`))
        expect(src, `RUN ${m[1]} was copied in`).toBeDefined()
        const repoPath = join(ROOT, src![1], relative(src![0], at))
        expect(existsSync(repoPath), `${repoPath} exists`).toBe(true)
        scripts.push(m[1])
      }
    }
    expect(runs.length).toBeGreaterThan(2)
    expect(scripts).toContain("/usr/local/share/dffmpeg/image-setup.sh")
    expect(scripts).toContain("scripts/build.ts")
  })

  test("its build stage builds the binary from the files it copies, and nothing else", () => {
    // The stage's instructions, run here in an empty folder standing for its WORKDIR: COPY copies from the
    // repository, RUN runs (Bun from npm is this machine's Bun: the same version, checked).
    const stage = lines.slice(
      lines.findIndex((l) => /^FROM\s.*\sAS build$/.test(l)) + 1,
      lines.findIndex((l) => /\sAS runtime$/.test(l)),
    )
    const work = join(tmpBuild.dir, "src")
    mkdirSync(work)
    let ran = 0
    for (const l of stage) {
      const [op, ...rest] = l.trim().split(/\s+/)
      if (op === "WORKDIR") expect(rest[0]).toBe("/src")
      else if (op === "COPY")
        for (const src of rest.slice(0, -1))
          cpSync(join(ROOT, src), join(work, rest.length > 2 ? src : rest.at(-1)!), { recursive: true })
      else if (op === "RUN" && rest[0] === "npm") {
        const want = rest.join(" ").match(/bun@(\S+)/)![1]
        expect(Bun.spawnSync(["bun", "--version"]).stdout.toString().trim()).toBe(want)
      } else if (op === "RUN") {
        const r = Bun.spawnSync(["sh", "-ec", rest.join(" ")], { cwd: work, stdout: "pipe", stderr: "pipe" })
        expect(r.exitCode, `RUN ${rest.join(" ")}: ${r.stderr.toString()}`).toBe(0)
        ran++
      }
    }
    expect(ran).toBe(2) // bun install, the build
    // What the runtime stage copies from it: a working binary.
    const from = text.match(/COPY --from=build (\S+)/)![1]
    const bin = join(work, posix.relative("/src", from))
    const v = Bun.spawnSync([bin, "--version"])
    expect(v.stdout.toString().trim()).toBe(
      `dffmpeg ${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version}`,
    )
  }, 120_000)
})

describe("deploy/image-setup.sh", () => {
  const tmp = tempDir("image-setup")
  afterAll(() => tmp.remove())

  /** A scratch root with the account files of a Debian image (this machine's, copied). */
  function scratchRoot(): string {
    const root = join(tmp.dir, `root-${Math.random().toString(36).slice(2)}`)
    mkdirSync(join(root, "etc"), { recursive: true })
    for (const f of ["passwd", "group", "shadow", "gshadow"]) cpSync(`/etc/${f}`, join(root, "etc", f))
    return root
  }
  const setup = (...args: string[]) =>
    Bun.spawnSync(["sh", join(DEPLOY, "image-setup.sh"), ...args], { stdout: "pipe", stderr: "pipe" })
  /** Every file under root: path, type, mode, owner, link target (what a second run must not change). */
  function listing(root: string): string[] {
    const out: string[] = []
    const walk = (p: string) => {
      const s = lstatSync(p)
      const link = s.isSymbolicLink() ? ` -> ${readlinkSync(p)}` : ""
      out.push(`${relative(root, p) || "."} ${(s.mode & 0o7777).toString(8)} ${s.uid}:${s.gid}${link}`)
      if (s.isDirectory()) for (const e of readdirSync(p).sort()) walk(join(p, e))
    }
    walk(root)
    return out
  }

  test("lays out the binary, the shim links, the user and the folders of the install layout", () => {
    requireBinary()
    const root = scratchRoot()
    const hostPasswd = readFileSync("/etc/passwd", "utf8")
    const r = setup("--root", root, "--binary", BIN, "--uid", "4711", "--gid", "4712")
    expect(r.stderr.toString()).toContain("image-setup: installed /usr/local/bin/dffmpeg")
    expect(r.exitCode).toBe(0)
    // The accounts are written under the root, never on this machine.
    expect(readFileSync(join(root, "etc/passwd"), "utf8")).toContain(
      "dffmpeg:x:4711:4712:dffmpeg service:/var/lib/dffmpeg:/usr/sbin/nologin",
    )
    expect(readFileSync(join(root, "etc/group"), "utf8")).toMatch(/^dffmpeg:x:4712:/m)
    expect(readFileSync("/etc/passwd", "utf8")).toBe(hostPasswd)
    const bin = statSync(join(root, BINARY))
    expect([bin.mode & 0o7777, bin.uid, bin.gid]).toEqual([0o755, 0, 0])
    expect(readFileSync(join(root, BINARY)).equals(readFileSync(BIN))).toBe(true)
    for (const tool of ["ffmpeg", "ffprobe"]) expect(readlinkSync(join(root, SHIM_DIR, tool))).toBe(BINARY)
    const mode = (p: string) => {
      const s = statSync(join(root, p))
      return [(s.mode & 0o7777).toString(8), s.uid, s.gid]
    }
    expect(mode("etc/dffmpeg")).toEqual(["750", 0, 4712])
    expect(mode("etc/dffmpeg/keys")).toEqual(["750", 0, 4712])
    expect(mode("var/lib/dffmpeg")).toEqual(["750", 4711, 4712])

    // Run again: nothing changes.
    const before = listing(root)
    const again = setup("--root", root, "--binary", BIN, "--uid", "4711", "--gid", "4712")
    expect(again.exitCode).toBe(0)
    expect(listing(root)).toEqual(before)
  })

  test("the shim links reach the installed binary as the proxy (in a mount namespace seeing the root)", () => {
    const root = scratchRoot()
    expect(setup("--root", root, "--binary", BIN, "--uid", "4711", "--gid", "4712").exitCode).toBe(0)
    // /usr/local of the scratch root over this machine's, for this one process tree: the absolute links
    // resolve as they do in the image. With no client config the proxy answers in one dffmpeg: line, exit 1.
    const home = join(root, "home")
    mkdirSync(home)
    for (const tool of ["ffmpeg", "ffprobe"]) {
      const r = Bun.spawnSync(
        [
          "unshare",
          "-m",
          "sh",
          "-c",
          `mount --make-rprivate / && mount --bind "$0/usr/local" /usr/local && exec ${SHIM_DIR}/${tool} -version`,
          root,
        ],
        { env: { PATH: "/usr/bin:/bin", HOME: home }, cwd: home, stdout: "pipe", stderr: "pipe" },
      )
      const err = r.stderr.toString()
      expect(err).toStartWith("dffmpeg: ")
      expect(err).toContain("client config") // the proxy speaking, not the CLI
      expect(err.trim().split("\n")).toHaveLength(1)
      expect(r.exitCode).toBe(1)
    }
  })

  test("refuses what it cannot do, with one line and exit 2", () => {
    const root = scratchRoot()
    for (const [args, says] of [
      [["--root", root, "--binary", join(root, "missing")], "is not a file"],
      [["--root", root, "--uid", "x"], "--uid needs a number"],
      [["--root", root, "--packages"], "--root / only"],
      [["--bogus"], "unknown option --bogus"],
      [["--root", join(root, "nowhere")], "is not a directory"],
    ] as const) {
      const r = setup(...args)
      expect(r.stderr.toString()).toContain(says)
      expect(r.exitCode).toBe(2)
    }
    // Ids another account holds (root's) are refused before anything is created.
    const taken = setup("--root", root, "--binary", BIN, "--uid", "4711", "--gid", "0")
    expect(taken.stderr.toString()).toContain("gid 0 belongs to group root already")
    expect(taken.exitCode).toBe(2)
    expect(readFileSync(join(root, "etc/group"), "utf8")).not.toContain("dffmpeg")
    // An existing dffmpeg user with other ids is not silently reused.
    expect(setup("--root", root, "--binary", BIN, "--uid", "4711", "--gid", "4712").exitCode).toBe(0)
    const clash = setup("--root", root, "--binary", BIN, "--uid", "4800", "--gid", "4712")
    expect(clash.stderr.toString()).toContain("user dffmpeg exists with uid 4711, not 4800")
    expect(clash.exitCode).toBe(2)
  })
})

describe("a worker in a container's masked /proc", () => {
  const tmp = tempDir("masked-proc")
  afterAll(() => tmp.remove())

  test("refuses to start, exit 3, naming the Docker option that lets its sandbox mount /proc", () => {
    requireBinary()
    // What Docker does to a container's /proc unless systempaths=unconfined: files hidden under /dev/null,
    // folders under a read-only tmpfs (in a mount namespace of this process only).
    const masks = ["/proc/keys", "/proc/timer_list"].filter(existsSync).map((p) => `mount --bind /dev/null ${p}`)
    if (existsSync("/proc/acpi")) masks.push("mount -t tmpfs -o ro tmpfs /proc/acpi")
    expect(masks.length).toBeGreaterThan(0)
    const config = join(tmp.dir, "worker.yaml")
    writeFileSync(
      config,
      JSON.stringify({
        client_id: "worker1",
        hmac_key: Buffer.alloc(32, 7).toString("base64"),
        coordinator: { port: 1 },
        paths: { Media: tmp.dir },
        run_as: "nobody",
      }),
    )
    const r = Bun.spawnSync(
      [
        "unshare",
        "-m",
        "sh",
        "-c",
        `mount --make-rprivate / && ${masks.join(" && ")} && exec "$0" worker --config "$1"`,
        BIN,
        config,
      ],
      { env: { PATH: "/usr/bin:/bin", HOME: tmp.dir }, cwd: tmp.dir, stdout: "pipe", stderr: "pipe" },
    )
    const own = r.stderr
      .toString()
      .split("\n")
      .filter((l) => l.startsWith("dffmpeg:"))
    expect(own).toHaveLength(1)
    expect(own[0]).toContain("sandbox probe failed")
    expect(own[0]).toContain("Can't mount proc")
    expect(own[0]).toContain("--security-opt systempaths=unconfined (docs/docker.md)")
    expect(r.exitCode).toBe(3)
  })
})
