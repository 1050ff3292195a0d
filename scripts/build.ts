#!/usr/bin/env bun
/**
 * Builds the single `dffmpeg` executable with `bun build --compile`.
 *   bun scripts/build.ts --single   → dist/dffmpeg (host), smoke-tested
 *   bun scripts/build.ts            → dist/dffmpeg-{linux-x64,linux-arm64,darwin-x64,darwin-arm64,windows-x64.exe}
 * Release builds (checksums, licences, linux-x64-baseline): scripts/release.ts.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import pkg from "../package.json"
import { compile, smoke, TARGETS } from "./compile.ts"

const root = join(import.meta.dir, "..")
const dist = join(root, "dist")

mkdirSync(dist, { recursive: true })
if (process.argv.includes("--single")) {
  const bin = join(dist, "dffmpeg")
  await compile(root, bin)
  console.error(`built ${bin}`)
  smoke(bin, pkg.version)
  console.error(`smoke test ok: dffmpeg ${pkg.version}`)
} else {
  for (const t of TARGETS) {
    const out = join(dist, `dffmpeg-${t.name}${t.exe ? ".exe" : ""}`)
    await compile(root, out, t.bun)
    console.error(`built ${out}`)
  }
}
