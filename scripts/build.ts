#!/usr/bin/env bun
/**
 * Builds the single `dffmpeg` executable with `bun build --compile`.
 *   bun scripts/build.ts --single   → dist/dffmpeg (host), smoke-tested
 *   bun scripts/build.ts            → dist/dffmpeg-{linux-x64,linux-arm64,darwin-x64,darwin-arm64,windows-x64.exe}
 */
import { mkdirSync, rmSync, symlinkSync } from "node:fs"
import { join } from "node:path"
import pkg from "../package.json"
import { bundleOptions } from "./bundle.ts"

const root = join(import.meta.dir, "..")
const dist = join(root, "dist")
const targets = [
  { target: "bun-linux-x64", out: "dffmpeg-linux-x64" },
  { target: "bun-linux-arm64", out: "dffmpeg-linux-arm64" },
  { target: "bun-darwin-x64", out: "dffmpeg-darwin-x64" },
  { target: "bun-darwin-arm64", out: "dffmpeg-darwin-arm64" },
  { target: "bun-windows-x64", out: "dffmpeg-windows-x64.exe" },
] as const

async function build(outfile: string, target?: string) {
  const res = await Bun.build({
    ...bundleOptions(root),
    // Bytecode cuts start-up from ~50 ms to ~15 ms, which the proxy pays on every call; it needs ESM output.
    bytecode: true,
    compile: {
      ...(target ? { target: target as Bun.Build.CompileTarget } : {}),
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
  console.error(`built ${outfile}`)
}

async function smoke(bin: string) {
  const v = Bun.spawnSync([bin, "--version"])
  const out = v.stdout.toString().trim()
  if (v.exitCode !== 0 || out !== `dffmpeg ${pkg.version}`)
    throw new Error(`smoke test failed: ${bin} --version printed ${JSON.stringify(out)}`)
  // Through a symlink named ffprobe the binary is the proxy: with no config it must say so in one line.
  const dir = join(dist, ".smoke")
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  symlinkSync(bin, join(dir, "ffprobe"))
  const p = Bun.spawnSync([join(dir, "ffprobe"), "-version"], { env: { PATH: "/usr/bin:/bin", HOME: dir }, cwd: dir })
  rmSync(dir, { recursive: true, force: true })
  const err = p.stderr.toString()
  if (p.exitCode !== 1 || !err.startsWith("dffmpeg: "))
    throw new Error(`smoke test failed: proxy mode answered ${p.exitCode}: ${err}`)
  console.error(`smoke test ok: ${out}`)
}

mkdirSync(dist, { recursive: true })
if (process.argv.includes("--single")) {
  const bin = join(dist, "dffmpeg")
  await build(bin)
  await smoke(bin)
} else {
  for (const t of targets) await build(join(dist, t.out), t.target)
}
