import { afterAll, expect, test } from "bun:test"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { tempDir } from "../test/helpers/fixtures.ts"
import { allowed, bundledDirs, collect, problems, renderNotices, runtime } from "./licenses.ts"

const ROOT = join(import.meta.dir, "..")
const tmp = tempDir("licenses")
afterAll(tmp.remove)

// The gate: a dependency (direct or transitive) under a licence outside ALLOWED, or one added without
// regenerating docs/licenses.md, fails here.
test("every package in the dependency tree has an allowed licence and docs/licenses.md lists exactly them", async () => {
  const deps = collect(ROOT, await bundledDirs(ROOT))
  expect(problems(deps)).toEqual([])
  // The walk found the tree, not only the direct dependencies: pg's own dependencies are in it.
  expect(deps.map((d) => d.name)).toEqual(expect.arrayContaining(["hono", "pg", "pg-protocol", "pg-pool"]))
  expect(deps.find((d) => d.name === "pg-protocol")?.requiredBy).toContain("pg")
  // The bundle check means something: hono is in the binary, type definitions are not.
  expect(deps.find((d) => d.name === "hono")?.bundled).toBe(true)
  expect(deps.find((d) => d.name === "@types/node")?.bundled).toBe(false)
  // devDependencies are not part of the binary.
  expect(deps.map((d) => d.name)).not.toContain("playwright-core")
  const check = Bun.spawnSync(["bun", join(ROOT, "scripts/licenses.ts"), "--check"], { cwd: ROOT, stderr: "pipe" })
  expect(check.stderr.toString()).toBe("")
  expect(check.exitCode).toBe(0)
})

function pkg(root: string, dir: string, manifest: object, files: Record<string, string> = {}) {
  const d = join(root, dir)
  mkdirSync(d, { recursive: true })
  writeFileSync(join(d, "package.json"), JSON.stringify(manifest))
  for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text)
}

test("a package with a copyleft, missing or not-listed licence anywhere in the tree is reported", () => {
  const root = join(tmp.dir, "tree")
  pkg(root, ".", {
    name: "app",
    version: "1.0.0",
    dependencies: { ok: "1", gpl: "1", dual: "1", both: "1" },
    devDependencies: { devonly: "1" },
  })
  pkg(
    root,
    "node_modules/ok",
    { name: "ok", version: "1.0.0", license: "MIT", dependencies: { nolicence: "2" } },
    {
      LICENSE: "MIT text of ok",
    },
  )
  // ok's own copy of nolicence, nested, wins over the hoisted one (Node's lookup).
  pkg(root, "node_modules/ok/node_modules/nolicence", { name: "nolicence", version: "2.0.0" })
  pkg(root, "node_modules/nolicence", { name: "nolicence", version: "1.0.0", license: "MIT" })
  pkg(root, "node_modules/gpl", { name: "gpl", version: "1.0.0", license: "GPL-3.0-only" })
  pkg(root, "node_modules/dual", { name: "dual", version: "1.0.0", license: "(MIT OR GPL-2.0-only)" })
  pkg(root, "node_modules/both", {
    name: "both",
    version: "1.0.0",
    licenses: [{ type: "MIT" }],
    peerDependencies: { "opt-peer": "1", "req-peer": "1" },
    peerDependenciesMeta: { "opt-peer": { optional: true } },
  })
  pkg(root, "node_modules/opt-peer", { name: "opt-peer", version: "1.0.0", license: "AGPL-3.0-only" })
  pkg(root, "node_modules/req-peer", { name: "req-peer", version: "1.0.0", license: "MIT AND SSPL-1.0" })
  pkg(root, "node_modules/devonly", { name: "devonly", version: "1.0.0", license: "GPL-3.0-only" })

  const deps = collect(root)
  expect(deps.map((d) => `${d.name}@${d.version}`)).toEqual([
    "both@1.0.0",
    "dual@1.0.0",
    "gpl@1.0.0",
    "nolicence@2.0.0",
    "ok@1.0.0",
    "req-peer@1.0.0",
  ])
  expect(problems(deps)).toEqual([
    'gpl@1.0.0 (node_modules/gpl): licence "GPL-3.0-only" is not in the allowed list',
    'nolicence@2.0.0 (node_modules/ok/node_modules/nolicence): licence "UNKNOWN" is not in the allowed list',
    'req-peer@1.0.0 (node_modules/req-peer): licence "MIT AND SSPL-1.0" is not in the allowed list',
  ])
  const notices = renderNotices(root, deps, runtime())
  expect(notices).toContain("MIT text of ok")
  expect(notices).toContain("GNU LESSER GENERAL PUBLIC LICENSE\n                       Version 2.1")
  expect(notices).toContain("## nolicence 2.0.0 (UNKNOWN)\n\nThe package ships no licence file")

  // A dependency that is not installed is an error, not a package silently left out.
  pkg(root, "node_modules/ok", { name: "ok", version: "1.0.0", license: "MIT", dependencies: { gone: "1" } })
  expect(() => collect(root)).toThrow("ok needs gone, which is not installed")
})

test("SPDX expressions: OR needs one allowed side, AND needs both, anything malformed is refused", () => {
  expect(allowed("MIT")).toBe(true)
  expect(allowed("(MIT OR Apache-2.0)")).toBe(true)
  expect(allowed("MIT OR GPL-3.0-only")).toBe(true)
  expect(allowed("MIT AND BSD-3-Clause")).toBe(true)
  expect(allowed("MIT AND GPL-3.0-only")).toBe(false)
  expect(allowed("(MIT AND GPL-2.0-only) OR ISC")).toBe(true)
  expect(allowed("GPL-2.0-only WITH Classpath-exception-2.0")).toBe(false)
  expect(allowed("SEE LICENSE IN LICENSE.txt")).toBe(false)
  expect(allowed("UNKNOWN")).toBe(false)
  expect(allowed("(MIT")).toBe(false)
  expect(allowed("")).toBe(false)
})
