/**
 * Compiling the `dffmpeg` executable, shared by scripts/build.ts (dist/) and scripts/release.ts
 * (dist/release/<version>/): the target list, one `bun build --compile`, and the smoke test a binary
 * that runs on this machine must pass.
 */
import { mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { bundleOptions } from "./bundle.ts"

export interface Target {
  /** Our name for it: the suffix of the file name (`dffmpeg-linux-x64`, `dffmpeg-0.1.0-linux-x64`). */
  name: string
  bun: Bun.Build.CompileTarget
  /** Windows executables end in `.exe`. */
  exe: boolean
  /** Runs on the linux-x64 machines the project builds on, so the smoke test can run it. */
  runsOnLinuxX64: boolean
}

/** What `bun scripts/build.ts` builds. */
export const TARGETS: readonly Target[] = [
  { name: "linux-x64", bun: "bun-linux-x64", exe: false, runsOnLinuxX64: true },
  { name: "linux-arm64", bun: "bun-linux-arm64", exe: false, runsOnLinuxX64: false },
  { name: "darwin-x64", bun: "bun-darwin-x64", exe: false, runsOnLinuxX64: false },
  { name: "darwin-arm64", bun: "bun-darwin-arm64", exe: false, runsOnLinuxX64: false },
  { name: "windows-x64", bun: "bun-windows-x64", exe: true, runsOnLinuxX64: false },
]

/** linux-x64 without AVX2, for CPUs older than Haswell (2013); releases add it to TARGETS. */
export const BASELINE: Target = {
  name: "linux-x64-baseline",
  bun: "bun-linux-x64-baseline",
  exe: false,
  runsOnLinuxX64: true,
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

/** Runs `bin --version` and the binary in proxy mode (through a symlink named ffprobe, no config). */
export function smoke(bin: string, version: string): void {
  const v = Bun.spawnSync([bin, "--version"])
  const out = v.stdout.toString().trim()
  if (v.exitCode !== 0 || out !== `dffmpeg ${version}`)
    throw new Error(`smoke test failed: ${bin} --version printed ${JSON.stringify(out)}`)
  // Through a symlink named ffprobe the binary is the proxy: with no config it must say so in one line.
  const dir = mkdtempSync(join(tmpdir(), "dffmpeg-smoke-"))
  try {
    symlinkSync(bin, join(dir, "ffprobe"))
    const p = Bun.spawnSync([join(dir, "ffprobe"), "-version"], {
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
