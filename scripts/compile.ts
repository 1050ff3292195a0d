/**
 * Compiling the `dffmpeg` executable, shared by scripts/build.ts (dist/) and scripts/release.ts
 * (dist/release/<version>/): the target list, one `bun build --compile`, and the smoke test a binary
 * that runs on this machine must pass.
 */
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { bundleOptions } from "./bundle.ts"

export interface Target {
  /** Our name for it: the suffix of the file name (`dffmpeg-linux-x64`, `dffmpeg-0.1.0-linux-x64`). */
  name: string
  bun: Bun.Build.CompileTarget
  /** Windows executables end in `.exe`. */
  exe: boolean
}

/** What `bun scripts/build.ts` builds. */
export const TARGETS: readonly Target[] = [
  { name: "linux-x64", bun: "bun-linux-x64", exe: false },
  { name: "linux-arm64", bun: "bun-linux-arm64", exe: false },
  { name: "darwin-x64", bun: "bun-darwin-x64", exe: false },
  { name: "darwin-arm64", bun: "bun-darwin-arm64", exe: false },
  { name: "windows-x64", bun: "bun-windows-x64", exe: true },
]

/** linux-x64 without AVX2, for CPUs older than Haswell (2013); releases add it to TARGETS. */
export const BASELINE: Target = {
  name: "linux-x64-baseline",
  bun: "bun-linux-x64-baseline",
  exe: false,
}

/**
 * How to run a binary of `t` on this machine for the smoke test: `[]` directly, `["qemu-aarch64-static", ...]`
 * for linux-arm64 on linux-x64 when qemu-user-static and libc6-arm64-cross are installed, or undefined when
 * it cannot run here (macOS and Windows binaries on Linux, anything on other hosts).
 */
export function smokeRunner(t: Target): string[] | undefined {
  if (process.platform !== "linux" || process.arch !== "x64") return undefined
  if (t.name === "linux-x64" || t.name === "linux-x64-baseline") return []
  const qemu = Bun.which("qemu-aarch64-static")
  if (t.name === "linux-arm64" && qemu && existsSync("/usr/aarch64-linux-gnu/lib"))
    return [qemu, "-L", "/usr/aarch64-linux-gnu"]
  return undefined
}

/**
 * Compiles the executable to `outfile`. The binary embeds the base name of `outfile`
 * (`/$bunfs/root/<name>`), so two builds are byte-identical only when they use the same file name.
 */
export async function compile(root: string, outfile: string, target?: Bun.Build.CompileTarget): Promise<void> {
  const res = await Bun.build({
    ...bundleOptions(root),
    // Bytecode cuts start-up from ~50 ms to ~15 ms, which the proxy pays on every call; it needs ESM output.
    bytecode: true,
    compile: {
      ...(target ? { target } : {}),
      outfile,
      // The binary must behave the same wherever it runs: never pick up a bunfig.toml or .env there.
      autoloadBunfig: false,
      autoloadDotenv: false,
    },
  })
  if (!res.success) {
    for (const l of res.logs) console.error(l)
    throw new Error(`build failed for ${target ?? "host"}`)
  }
}

/**
 * Runs `bin --version` and the binary in proxy mode (through a symlink named ffprobe, no config), each
 * behind `runner` (an emulator) if given.
 */
export function smoke(bin: string, version: string, runner: string[] = []): void {
  const v = Bun.spawnSync([...runner, bin, "--version"])
  const out = v.stdout.toString().trim()
  if (v.exitCode !== 0 || out !== `dffmpeg ${version}`)
    throw new Error(`smoke test failed: ${bin} --version printed ${JSON.stringify(out)}`)
  // Through a symlink named ffprobe the binary is the proxy: with no config it must say so in one line.
  const dir = mkdtempSync(join(tmpdir(), "dffmpeg-smoke-"))
  try {
    symlinkSync(bin, join(dir, "ffprobe"))
    const p = Bun.spawnSync([...runner, join(dir, "ffprobe"), "-version"], {
      env: { PATH: "/usr/bin:/bin", HOME: dir },
      cwd: dir,
    })
    const err = p.stderr.toString()
    if (p.exitCode !== 1 || !err.startsWith("dffmpeg: "))
      throw new Error(`smoke test failed: ${bin} in proxy mode answered ${p.exitCode}: ${err}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
