import { afterAll, expect, test } from "bun:test"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import pkg from "../package.json"
import { tempDir } from "../test/helpers/fixtures.ts"
import { binaryName, compareDirs, main, RELEASE_TARGETS, sourceDateEpoch, treeState } from "./release.ts"

const ROOT = join(import.meta.dir, "..")
const tmp = tempDir("release")
afterAll(tmp.remove)

function release(args: string[]) {
  const r = Bun.spawnSync(["bun", join(ROOT, "scripts/release.ts"), ...args], { cwd: ROOT, stderr: "pipe" })
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() }
}

function git(cwd: string, ...args: string[]) {
  const r = Bun.spawnSync(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", ...args], {
    cwd,
    stderr: "pipe",
    env: { ...process.env, GIT_COMMITTER_DATE: "2026-01-02T03:04:05Z", GIT_AUTHOR_DATE: "2026-01-02T03:04:05Z" },
  })
  if (r.exitCode !== 0) throw new Error(r.stderr.toString())
  return r.stdout.toString().trim()
}

// Two independent processes build linux-x64 from this checkout into two folders; the second also runs
// --verify (a third build). Bun 1.4.5 was found deterministic for every target (docs/releasing.md), so the
// checksums must match exactly. One target keeps the test short (each build is a few seconds).
test("two release builds of one commit are byte-identical and SHA256SUMS checks with sha256sum -c", async () => {
  const a = join(tmp.dir, "a")
  const b = join(tmp.dir, "b")
  const first = release(["--allow-dirty", "--target", "linux-x64", "--out", a])
  expect(first.stderr).toContain("smoke test ok")
  expect(first.code).toBe(0)
  const second = release(["--allow-dirty", "--target", "linux-x64", "--out", b, "--verify"])
  expect(second.code).toBe(0)
  expect(second.stdout).toMatch(/linux-x64\s+identical\s+[0-9a-f]{64}/)
  expect(second.stdout).toMatch(/other files\s+identical/)

  const file = `dffmpeg-${pkg.version}-linux-x64`
  const sums = readFileSync(join(a, "SHA256SUMS"), "utf8")
  expect(readFileSync(join(b, "SHA256SUMS"), "utf8")).toBe(sums)
  expect(
    sums
      .split("\n")
      .filter(Boolean)
      .map((l) => l.slice(66)),
  ).toEqual(
    ["LICENSE", "README.md", "THIRD_PARTY_NOTICES.md", file, "manifest.json"]
      .concat(existsSync(join(ROOT, "CHANGELOG.md")) ? ["CHANGELOG.md"] : [])
      .sort(),
  )
  const binSum = sums.split("\n").find((l) => l.endsWith(`  ${file}`))
  expect(binSum?.slice(0, 64)).toBe(new Bun.CryptoHasher("sha256").update(readFileSync(join(a, file))).digest("hex"))

  const manifest = JSON.parse(readFileSync(join(a, "manifest.json"), "utf8"))
  expect(manifest).toMatchObject({
    version: pkg.version,
    commit: treeState(ROOT).commit,
    bun: { version: Bun.version, revision: Bun.revision },
    buildTimeSource: "commit",
    sourceDateEpoch: treeState(ROOT).commitTime,
  })
  expect(manifest.targets).toEqual([
    { target: "linux-x64", file, bytes: expect.any(Number), sha256: binSum?.slice(0, 64) },
  ])
  expect(first.stdout).toContain(`  ${file}\n`)

  expect(Bun.spawnSync(["sha256sum", "--quiet", "-c", "SHA256SUMS"], { cwd: a }).exitCode).toBe(0)
  // The check is a real one: a changed file fails it.
  writeFileSync(join(a, "README.md"), `${readFileSync(join(a, "README.md"), "utf8")}changed\n`)
  const bad = Bun.spawnSync(["sha256sum", "--quiet", "-c", "SHA256SUMS"], { cwd: a })
  expect(bad.exitCode).toBe(1)
  expect(bad.stdout.toString()).toContain("README.md: FAILED")
}, 180_000)

test("a dirty tree is refused unless --allow-dirty; the tree state comes from git", async () => {
  const repo = join(tmp.dir, "repo")
  mkdirSync(repo)
  git(repo, "init", "-q")
  writeFileSync(join(repo, "a.txt"), "a\n")
  git(repo, "add", "a.txt")
  git(repo, "commit", "-q", "-m", "one")
  const clean = treeState(repo)
  expect(clean).toEqual({ commit: git(repo, "rev-parse", "HEAD"), commitTime: 1767323045, changes: [] })
  writeFileSync(join(repo, "a.txt"), "b\n")
  writeFileSync(join(repo, "new.txt"), "new\n")
  expect(treeState(repo).changes.sort()).toEqual([" M a.txt", "?? new.txt"])
  // Refused before anything is built or written.
  const out = join(tmp.dir, "dirty-out")
  expect(await main(["--out", out], repo)).toBe(1)
  expect(existsSync(out)).toBe(false)
})

test("SOURCE_DATE_EPOCH overrides the commit time and must be whole seconds", () => {
  const tree = { commit: "c", commitTime: 1767323045, changes: [] }
  expect(sourceDateEpoch({}, tree)).toEqual({ epoch: 1767323045, source: "commit" })
  expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: "1700000000" }, tree)).toEqual({
    epoch: 1700000000,
    source: "SOURCE_DATE_EPOCH",
  })
  expect(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: "2026-01-01" }, tree)).toThrow("whole seconds")
})

test("bad usage exits 2 and a folder that is not a release is never emptied", async () => {
  expect(await main(["--target", "linux-x86"])).toBe(2)
  expect(await main(["--bogus"])).toBe(2)
  const notRelease = join(tmp.dir, "keep")
  mkdirSync(notRelease)
  writeFileSync(join(notRelease, "precious.txt"), "x")
  await expect(main(["--allow-dirty", "--target", "linux-x64", "--out", notRelease])).rejects.toThrow(
    "holds no earlier release",
  )
  expect(readFileSync(join(notRelease, "precious.txt"), "utf8")).toBe("x")
})

test("every release target has its own file name; Windows ends in .exe", () => {
  const names = RELEASE_TARGETS.map((t) => binaryName("1.2.3", t))
  expect(names).toEqual([
    "dffmpeg-1.2.3-linux-x64",
    "dffmpeg-1.2.3-linux-arm64",
    "dffmpeg-1.2.3-darwin-x64",
    "dffmpeg-1.2.3-darwin-arm64",
    "dffmpeg-1.2.3-windows-x64.exe",
    "dffmpeg-1.2.3-linux-x64-baseline",
  ])
})

test("--verify's comparison finds a changed, a missing and an extra file", async () => {
  const a = join(tmp.dir, "cmp-a")
  const b = join(tmp.dir, "cmp-b")
  mkdirSync(a)
  mkdirSync(b)
  for (const d of [a, b]) writeFileSync(join(d, "same"), "1")
  writeFileSync(join(a, "changed"), "1")
  writeFileSync(join(b, "changed"), "2")
  writeFileSync(join(a, "only-a"), "1")
  writeFileSync(join(b, "only-b"), "1")
  expect(await compareDirs(a, b)).toEqual([
    { file: "changed", same: false },
    { file: "only-a", same: false },
    { file: "only-b", same: false },
    { file: "same", same: true },
  ])
})
