#!/usr/bin/env bun
/**
 * Builds a release: every target of scripts/build.ts plus linux-x64-baseline, with checksums, a manifest
 * and the licence texts, into dist/release/<version>/ (docs/releasing.md).
 *
 *   bun run release [--verify] [--allow-dirty] [--target NAME]... [--out DIR]
 *
 *   --verify       build everything a second time into a temporary folder and compare every file
 *                  (exit 1 if any differs)
 *   --allow-dirty  build from a working tree with uncommitted changes (the manifest says so)
 *   --target NAME  only this target (repeatable): linux-x64, linux-x64-baseline, linux-arm64, darwin-x64,
 *                  darwin-arm64, windows-x64
 *   --out DIR      write here instead of dist/release/<version>/ (emptied first)
 *
 * Exit codes: 0 built (and identical with --verify), 1 failure (dirty tree, build or smoke test failed,
 * a licence not allowed, --verify found a difference), 2 usage.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative, resolve, sep } from "node:path"
import { parseArgs } from "node:util"
import pkg from "../package.json"
import { BASELINE, compile, smoke, smokeRunner, TARGETS, type Target } from "./compile.ts"
import { bundledDirs, collect, docIsCurrent, problems, renderNotices, runtime } from "./licenses.ts"

export const RELEASE_TARGETS: readonly Target[] = [...TARGETS, BASELINE]

export function binaryName(version: string, t: Target): string {
  return `dffmpeg-${version}-${t.name}${t.exe ? ".exe" : ""}`
}

export interface TreeState {
  commit: string
  /** Seconds since the epoch of the commit (committer date): the release's SOURCE_DATE_EPOCH by default. */
  commitTime: number
  /** `git status --porcelain` lines: modified, staged and untracked (not ignored) files. */
  changes: string[]
}

function git(root: string, args: string[]): string {
  const r = Bun.spawnSync(["git", ...args], { cwd: root, stderr: "pipe" })
  if (r.exitCode !== 0) throw new ReleaseError(`git ${args.join(" ")} failed: ${r.stderr.toString().trim()}`)
  return r.stdout.toString()
}

export function treeState(root: string): TreeState {
  return {
    commit: git(root, ["rev-parse", "HEAD"]).trim(),
    commitTime: Number(git(root, ["log", "-1", "--format=%ct"]).trim()),
    changes: git(root, ["status", "--porcelain", "--untracked-files=normal"]).split("\n").filter(Boolean),
  }
}

export class ReleaseError extends Error {}

/**
 * The build time a release states: SOURCE_DATE_EPOCH when set (reproducible-builds.org convention),
 * otherwise the commit's time, so two builds of one commit say the same. Nothing in the binaries depends on
 * it (Bun embeds no time); it goes into the manifest and the files' modification times.
 */
export function sourceDateEpoch(env: Record<string, string | undefined>, tree: TreeState) {
  const raw = env.SOURCE_DATE_EPOCH
  if (raw === undefined || raw === "") return { epoch: tree.commitTime, source: "commit" as const }
  if (!/^\d{1,12}$/.test(raw))
    throw new ReleaseError(`SOURCE_DATE_EPOCH must be whole seconds, got ${JSON.stringify(raw)}`)
  return { epoch: Number(raw), source: "SOURCE_DATE_EPOCH" as const }
}

export interface Built {
  target: string
  file: string
  bytes: number
  sha256: string
  /** Wall-clock seconds of the compile (not in the manifest: it differs between runs). */
  seconds: number
  smoke: "ok" | "ok (qemu)" | "not run here"
}

async function sha256File(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256")
  const reader = Bun.file(path).stream().getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    h.update(value)
  }
  return h.digest("hex")
}

interface BuildOptions {
  root: string
  out: string
  targets: readonly Target[]
  tree: TreeState
  epoch: { epoch: number; source: "commit" | "SOURCE_DATE_EPOCH" }
  dirty: boolean
  log: (line: string) => void
}

/** Empties `out` for a new build, refusing anything that is not a folder of an earlier release. */
function emptyOut(out: string, root: string) {
  if (existsSync(out)) {
    const inside = readdirSync(out)
    if (
      root === out ||
      root.startsWith(out + sep) ||
      (inside.length && !inside.includes("manifest.json") && !inside.includes("SHA256SUMS"))
    )
      throw new ReleaseError(`${out} is not empty and holds no earlier release (manifest.json): not touching it`)
  }
  rmSync(out, { recursive: true, force: true })
  mkdirSync(out, { recursive: true })
}

/** Builds the binaries and the files beside them into `out` (emptied first) and writes SHA256SUMS last. */
export async function buildRelease(o: BuildOptions): Promise<{ built: Built[]; files: string[] }> {
  const deps = collect(o.root, await bundledDirs(o.root))
  const bad = problems(deps)
  if (bad.length) throw new ReleaseError(`licences not allowed (docs/licenses.md):\n  ${bad.join("\n  ")}`)
  if (!docIsCurrent(o.root, deps))
    throw new ReleaseError("docs/licenses.md does not match the installed dependencies: run `bun run licenses`")

  emptyOut(o.out, o.root)
  const built: Built[] = []
  for (const t of o.targets) {
    const file = binaryName(pkg.version, t)
    const path = join(o.out, file)
    const t0 = performance.now()
    await compile(o.root, path, t.bun)
    const seconds = (performance.now() - t0) / 1000
    let smoked: Built["smoke"] = "not run here"
    const runner = smokeRunner(t)
    if (runner) {
      smoke(path, pkg.version, runner)
      smoked = runner.length ? "ok (qemu)" : "ok"
    }
    const b = {
      target: t.name,
      file,
      bytes: statSync(path).size,
      sha256: await sha256File(path),
      seconds,
      smoke: smoked,
    }
    built.push(b)
    o.log(`built ${file}: ${(b.bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s, smoke test ${smoked}`)
  }

  await Bun.write(join(o.out, "THIRD_PARTY_NOTICES.md"), renderNotices(o.root, deps, runtime()))
  copyFileSync(join(o.root, "LICENSE"), join(o.out, "LICENSE"))
  copyFileSync(join(o.root, "README.md"), join(o.out, "README.md"))
  if (existsSync(join(o.root, "CHANGELOG.md"))) copyFileSync(join(o.root, "CHANGELOG.md"), join(o.out, "CHANGELOG.md"))
  const rt = runtime()
  const manifest = {
    name: "dffmpeg",
    version: pkg.version,
    commit: o.tree.commit,
    dirty: o.dirty,
    bun: { version: rt.version, revision: rt.revision },
    sourceDateEpoch: o.epoch.epoch,
    buildTime: new Date(o.epoch.epoch * 1000).toISOString(),
    buildTimeSource: o.epoch.source,
    targets: built.map(({ target, file, bytes, sha256 }) => ({ target, file, bytes, sha256 })),
  }
  await Bun.write(join(o.out, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`)

  // The `sha256sum -c` format: "<hex>  <name>" (two spaces: binary and text hash the same on Linux).
  const names = readdirSync(o.out)
    .filter((f) => f !== "SHA256SUMS")
    .sort()
  const sums: string[] = []
  for (const f of names) sums.push(`${await sha256File(join(o.out, f))}  ${f}`)
  await Bun.write(join(o.out, "SHA256SUMS"), `${sums.join("\n")}\n`)
  const files = [...names, "SHA256SUMS"].sort()
  for (const f of files) utimesSync(join(o.out, f), o.epoch.epoch, o.epoch.epoch)
  return { built, files }
}

/** Files whose bytes differ between two release folders (or that only one of them has). */
export async function compareDirs(a: string, b: string): Promise<{ file: string; same: boolean }[]> {
  const names = [...new Set([...readdirSync(a), ...readdirSync(b)])].sort()
  const out: { file: string; same: boolean }[] = []
  for (const f of names) {
    const pa = join(a, f)
    const pb = join(b, f)
    out.push({ file: f, same: existsSync(pa) && existsSync(pb) && (await sha256File(pa)) === (await sha256File(pb)) })
  }
  return out
}

const USAGE = "usage: bun run release [--verify] [--allow-dirty] [--target NAME]... [--out DIR]"

/** The command line; `root` is the checkout to build (tests point it elsewhere). Returns the exit code. */
export async function main(argv: string[], root = resolve(import.meta.dir, "..")): Promise<number> {
  let values: { verify?: boolean; "allow-dirty"?: boolean; target?: string[]; out?: string; help?: boolean }
  try {
    values = parseArgs({
      args: argv,
      options: {
        verify: { type: "boolean" },
        "allow-dirty": { type: "boolean" },
        target: { type: "string", multiple: true },
        out: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (e) {
    console.error(`release: ${(e as Error).message}\n${USAGE}`)
    return 2
  }
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  const targets = values.target?.length
    ? values.target.map((n) => RELEASE_TARGETS.find((t) => t.name === n) ?? n)
    : RELEASE_TARGETS
  const unknown = targets.filter((t) => typeof t === "string")
  if (unknown.length) {
    console.error(
      `release: unknown target ${unknown.join(", ")}; targets: ${RELEASE_TARGETS.map((t) => t.name).join(", ")}`,
    )
    return 2
  }
  const out = resolve(values.out ?? join(root, "dist", "release", pkg.version))
  const tree = treeState(root)
  if (tree.changes.length && !values["allow-dirty"]) {
    console.error(
      `release: the working tree has ${tree.changes.length} uncommitted change(s) (git status); commit them or pass --allow-dirty`,
    )
    return 1
  }
  const epoch = sourceDateEpoch(process.env, tree)
  const log = (l: string) => console.error(`release: ${l}`)
  const opts = {
    root,
    targets: targets as Target[],
    tree,
    epoch,
    dirty: tree.changes.length > 0,
    log,
  }
  log(
    `dffmpeg ${pkg.version} at ${tree.commit.slice(0, 12)}${opts.dirty ? " (dirty)" : ""}, bun ${Bun.version}, ` +
      `build time ${new Date(epoch.epoch * 1000).toISOString()} (from ${epoch.source})`,
  )
  const { built, files } = await buildRelease({ ...opts, out })
  console.log(`wrote ${relative(process.cwd(), out) || "."}/:`)
  for (const f of files) console.log(`  ${f}`)

  if (!values.verify) return 0
  const second = mkdtempSync(join(tmpdir(), "dffmpeg-release-verify-"))
  try {
    log(`verify: building again into ${second}`)
    await buildRelease({ ...opts, out: second, log: () => {} })
    const cmp = await compareDirs(out, second)
    console.log("verify (two builds of this commit, compared file by file):")
    for (const b of built) {
      const same = cmp.find((c) => c.file === b.file)?.same
      console.log(`  ${b.target.padEnd(20)} ${same ? "identical" : "DIFFERENT"}  ${b.sha256}`)
    }
    const others = cmp.filter((c) => !built.some((b) => b.file === c.file))
    console.log(
      `  other files          ${others.every((c) => c.same) ? "identical" : `DIFFERENT: ${others.filter((c) => !c.same).map((c) => c.file)}`}`,
    )
    return cmp.every((c) => c.same) ? 0 : 1
  } finally {
    rmSync(second, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  try {
    process.exitCode = await main(process.argv.slice(2))
  } catch (e) {
    console.error(`release: ${(e as Error).message}`)
    process.exitCode = 1
  }
}
