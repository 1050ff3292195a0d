import { describe, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, unlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  bwrapArgs,
  containerHint,
  jobEnv,
  parseRunAs,
  rootBinds,
  setprivArgs,
  signalOfExit,
  type SandboxSpec,
} from "./sandbox.ts"

const MERGED = {
  links: [
    ["/bin", "usr/bin"],
    ["/lib", "usr/lib"],
    ["/lib64", "usr/lib64"],
  ] as [string, string][],
  dirs: [],
}

const spec = (over: Partial<SandboxSpec> = {}): SandboxSpec => ({
  bwrap: "/usr/bin/bwrap",
  layout: MERGED,
  ro: [],
  roots: [],
  passthrough: ["/dev/null"],
  devices: [],
  network: false,
  cwd: "/srv/media/in",
  infoFd: 3,
  ...over,
})

/** The argv as [option, ...operands] groups, for readable expectations. */
function groups(argv: string[]): string[][] {
  const arity: Record<string, number> = {
    "--ro-bind": 2,
    "--ro-bind-try": 2,
    "--bind": 2,
    "--bind-try": 2,
    "--dev-bind-try": 2,
    "--symlink": 2,
    "--dev": 1,
    "--proc": 1,
    "--tmpfs": 1,
    "--chdir": 1,
    "--info-fd": 1,
  }
  const out: string[][] = []
  for (let i = 1; i < argv.length; i++) {
    const n = arity[argv[i]] ?? 0
    out.push(argv.slice(i, i + 1 + n))
    i += n
  }
  return out
}

describe("bwrapArgs", () => {
  test("a typical job sees the system read-only, fresh /dev /proc /tmp, then only its roots, with no network", () => {
    const argv = bwrapArgs(spec({ roots: [{ src: "/srv/media", dest: "/srv/media" }] }))
    expect(argv[0]).toBe("/usr/bin/bwrap")
    expect(argv.at(-1)).toBe("--")
    expect(groups(argv)).toEqual([
      ["--unshare-all"],
      ["--die-with-parent"],
      ["--new-session"],
      ["--info-fd", "3"],
      ["--ro-bind", "/usr", "/usr"],
      ["--symlink", "usr/bin", "/bin"],
      ["--symlink", "usr/lib", "/lib"],
      ["--symlink", "usr/lib64", "/lib64"],
      ["--dev", "/dev"],
      ["--proc", "/proc"],
      ["--tmpfs", "/tmp"],
      ["--ro-bind-try", "/etc/alternatives", "/etc/alternatives"],
      ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"],
      ["--ro-bind-try", "/etc/ld.so.conf", "/etc/ld.so.conf"],
      ["--ro-bind-try", "/etc/ld.so.conf.d", "/etc/ld.so.conf.d"],
      ["--ro-bind-try", "/etc/fonts", "/etc/fonts"],
      ["--ro-bind-try", "/etc/localtime", "/etc/localtime"],
      ["--ro-bind-try", "/etc/OpenCL", "/etc/OpenCL"],
      ["--bind", "/srv/media", "/srv/media"],
      ["--ro-bind-try", "/var/cache/fontconfig", "/var/cache/fontconfig"],
      ["--chdir", "/srv/media/in"],
      ["--"],
    ])
    expect(argv).not.toContain("--share-net")
    expect(argv).not.toContain("/etc/resolv.conf")
  })

  test("mounts are ordered parents first: a root and the scratch dir under /tmp come after the sandbox's tmpfs", () => {
    const argv = bwrapArgs(
      spec({
        roots: [
          { src: "/tmp/t/storage", dest: "/tmp/t/w1/mnt" },
          { src: "/tmp/t/storage", dest: "/tmp/t/storage" },
        ],
        scratch: "/tmp/dffmpeg-job-x",
        cwd: "/tmp/dffmpeg-job-x",
      }),
    )
    const at = (...g: string[]) => argv.findIndex((_, i) => g.every((x, j) => argv[i + j] === x))
    expect(at("--tmpfs", "/tmp")).toBeGreaterThan(0)
    expect(at("--bind", "/tmp/dffmpeg-job-x", "/tmp/dffmpeg-job-x")).toBeGreaterThan(at("--tmpfs", "/tmp"))
    expect(at("--bind", "/tmp/t/storage", "/tmp/t/w1/mnt")).toBeGreaterThan(at("--tmpfs", "/tmp"))
    expect(at("--bind", "/tmp/t/storage", "/tmp/t/storage")).toBeGreaterThan(at("--tmpfs", "/tmp"))
  })

  test("devices are dev-bound after /dev; passthrough paths /dev already has are not bound again", () => {
    const argv = bwrapArgs(
      spec({
        devices: ["/dev/dri", "/dev/nvidia0"],
        passthrough: ["/dev/null", "/dev/stdout", "/srv/luts/film.cube", "/dev/video0"],
      }),
    )
    const g = groups(argv)
    const dev = g.findIndex((x) => x[0] === "--dev")
    expect(g.findIndex((x) => x.join(" ") === "--dev-bind-try /dev/dri /dev/dri")).toBeGreaterThan(dev)
    expect(g).toContainEqual(["--dev-bind-try", "/dev/nvidia0", "/dev/nvidia0"])
    expect(g).toContainEqual(["--bind-try", "/srv/luts/film.cube", "/srv/luts/film.cube"])
    expect(g).toContainEqual(["--dev-bind-try", "/dev/video0", "/dev/video0"])
    expect(argv.filter((a) => a === "/dev/null" || a === "/dev/stdout")).toEqual([])
  })

  test("allow_network shares the network and adds name resolution and TLS roots read-only", () => {
    const g = groups(bwrapArgs(spec({ network: true })))
    expect(g).toContainEqual(["--share-net"])
    for (const p of ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl"])
      expect(g).toContainEqual(["--ro-bind-try", p, p])
  })

  test("extra read-only paths outside /usr are bound; ones under /usr are covered already; duplicates once", () => {
    const g = groups(bwrapArgs(spec({ ro: ["/opt/ffmpeg/lib", "/usr/lib/jellyfin-ffmpeg", "/opt/ffmpeg/lib"] })))
    expect(g.filter((x) => x[1] === "/opt/ffmpeg/lib")).toEqual([
      ["--ro-bind-try", "/opt/ffmpeg/lib", "/opt/ffmpeg/lib"],
    ])
    expect(g.flat()).not.toContain("/usr/lib/jellyfin-ffmpeg")
  })

  test("a host without merged /usr gets its /lib and /bin bound instead of linked", () => {
    const g = groups(bwrapArgs(spec({ layout: { links: [], dirs: ["/bin", "/lib"] } })))
    expect(g).toContainEqual(["--ro-bind", "/bin", "/bin"])
    expect(g).toContainEqual(["--ro-bind", "/lib", "/lib"])
    expect(g.some((x) => x[0] === "--symlink")).toBe(false)
  })
})

describe("setprivArgs", () => {
  test("keeps the parent-death kill and drops to run_as: a named user keeps its groups, a bare uid gets none", () => {
    expect(setprivArgs("/usr/bin/setpriv")).toEqual(["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"])
    expect(setprivArgs("/usr/bin/setpriv", { uid: 65534, gid: 65534, name: "nobody" })).toEqual([
      "/usr/bin/setpriv",
      "--pdeathsig",
      "KILL",
      "--reuid",
      "65534",
      "--regid",
      "65534",
      "--init-groups",
      "--",
    ])
    expect(setprivArgs("/usr/bin/setpriv", { uid: 1500, gid: 1600 })).toEqual([
      "/usr/bin/setpriv",
      "--pdeathsig",
      "KILL",
      "--reuid",
      "1500",
      "--regid",
      "1600",
      "--clear-groups",
      "--",
    ])
  })
})

describe("parseRunAs", () => {
  const passwd =
    "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\ndffmpeg:x:998:44::/var/lib/dffmpeg:/usr/sbin/nologin\n"
  test.each([
    ["nobody", { uid: 65534, gid: 65534, name: "nobody" }],
    ["dffmpeg", { uid: 998, gid: 44, name: "dffmpeg" }],
    ["998", { uid: 998, gid: 44 }],
    ["1234", { uid: 1234, gid: 1234 }],
    ["1234:100", { uid: 1234, gid: 100 }],
    ["ghost", undefined],
    ["12ab", undefined],
  ])("%p", (spec, want) => {
    expect(parseRunAs(spec, passwd)).toEqual(want)
  })
})

describe("jobEnv", () => {
  test("keeps locale, time zone, PATH and GPU selection; drops the worker's own variables; HOME on the sandbox's /tmp", () => {
    const env = {
      PATH: "/usr/bin",
      LANG: "C.UTF-8",
      LC_ALL: "C",
      TZ: "UTC",
      LIBVA_DRIVER_NAME: "iHD",
      CUDA_VISIBLE_DEVICES: "0",
      DFFMPEG_HMAC_KEY: "secret",
      HOME: "/root",
      AWS_SECRET_ACCESS_KEY: "x",
      SSH_AUTH_SOCK: "/tmp/agent",
    }
    expect(jobEnv(env)).toEqual({
      PATH: "/usr/bin",
      LANG: "C.UTF-8",
      LC_ALL: "C",
      TZ: "UTC",
      LIBVA_DRIVER_NAME: "iHD",
      CUDA_VISIBLE_DEVICES: "0",
      HOME: "/tmp",
      TMPDIR: "/tmp",
    })
  })
})

describe("signalOfExit", () => {
  test("bwrap's 128+N is read back as signal N; ordinary codes (ffmpeg's 255 included) are not", () => {
    expect([130, 143, 137, 139, 129].map(signalOfExit)).toEqual(["SIGINT", "SIGTERM", "SIGKILL", "SIGSEGV", "SIGHUP"])
    expect([null, 0, 1, 128, 255, 69].map(signalOfExit)).toEqual([null, null, null, null, null, null])
  })
})

describe("rootBinds", () => {
  test("binds a root from where it resolved at start, and refuses the job once a symlink on its path points elsewhere", () => {
    const dir = mkdtempSync(join(tmpdir(), "dffmpeg-binds-"))
    try {
      mkdirSync(join(dir, "media"))
      mkdirSync(join(dir, "other"))
      symlinkSync(join(dir, "media"), join(dir, "link"))
      const root = join(dir, "link")
      const roots = [{ name: "Media", root, real: realpathSync(root) }]
      expect(rootBinds(roots)).toEqual([
        { src: join(dir, "media"), dest: root },
        { src: join(dir, "media"), dest: join(dir, "media") },
      ])
      // Someone who can write the storage points the root's symlink at other files.
      unlinkSync(root)
      symlinkSync(join(dir, "other"), root)
      expect(() => rootBinds(roots)).toThrow(
        /\$Media .* now resolves to .*other, not to .*media as when the worker started/,
      )
      // A root missing now (unmounted) is left to bwrap, which fails the job with its own message.
      unlinkSync(root)
      expect(rootBinds(roots)).toHaveLength(2)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("containerHint", () => {
  test("names the Docker option for what a container's defaults refuse bubblewrap", () => {
    // bwrap 0.8's own lines: a masked /proc, then seccomp's and AppArmor's refusals.
    expect(containerHint("bwrap: Can't mount proc on /newroot/proc: Operation not permitted")).toContain(
      "systempaths=unconfined",
    )
    for (const line of [
      "bwrap: Creating new namespace failed: Operation not permitted",
      "bwrap: setting up uid map: Permission denied",
      "bwrap: Failed to make / slave: Permission denied",
    ])
      expect(containerHint(line)).toContain("seccomp=unconfined and apparmor=unconfined")
    // A host without user namespaces, or a binary that fails, is not a container's doing.
    expect(
      containerHint(
        "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces",
      ),
    ).toBe("")
    expect(containerHint("ffmpeg: error while loading shared libraries: libx.so")).toBe("")
  })
})
