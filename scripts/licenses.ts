#!/usr/bin/env bun
/**
 * The licences of everything a dffmpeg binary is made of: every package in the dependency tree of
 * package.json's `dependencies` (transitive, as installed in node_modules), and the Bun runtime that
 * `bun build --compile` puts into the binary.
 *
 *   bun scripts/licenses.ts              → writes docs/licenses.md; exit 1 if a licence is not allowed
 *   bun scripts/licenses.ts --check      → exit 1 if docs/licenses.md is out of date or a licence is not allowed
 *   bun scripts/licenses.ts --notices F  → writes F: the table and every package's own licence text (releases)
 *
 * A new licence is allowed only by adding it to ALLOWED after checking it lets dffmpeg stay MIT (docs/licenses.md).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve, sep } from "node:path"
import { parseArgs } from "node:util"
import { bundleOptions } from "./bundle.ts"

/**
 * Licences that let an MIT-licensed program include the package and ship it in one binary: all are
 * permissive and ask only that their notice goes along (THIRD_PARTY_NOTICES.md in a release).
 */
export const ALLOWED = new Set([
  "MIT",
  "ISC",
  "0BSD",
  "BSD-2-Clause",
  "BSD-3-Clause",
  "Apache-2.0",
  "Zlib",
  "BlueOak-1.0.0",
  "CC0-1.0",
  "Unlicense",
])

export interface Dep {
  name: string
  version: string
  /** The SPDX expression of package.json's `license` (or the old `licenses` array, joined with OR). */
  license: string
  /** The package's folder, relative to the project root (node_modules/a or node_modules/b/node_modules/a). */
  dir: string
  /** Who needs it: "(direct)" or the names of the packages that depend on it. */
  requiredBy: string[]
  /** Its licence file (LICENSE, LICENSE.md, COPYING...), relative to `dir`, if it ships one. */
  licenseFile?: string
  author?: string
  /** Whether any of its files is in the executable's bundle (type-only packages such as @types/* are not). */
  bundled: boolean
}

interface Manifest {
  name: string
  version: string
  license?: unknown
  licenses?: unknown
  author?: unknown
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
  peerDependenciesMeta?: Record<string, { optional?: boolean }>
}

function readManifest(file: string): Manifest {
  return JSON.parse(readFileSync(file, "utf8")) as Manifest
}

/** Node's lookup: `<dir>/node_modules/<name>`, then each parent package's node_modules up to the root. */
function resolvePackage(root: string, fromDir: string, name: string): string | undefined {
  let d = fromDir
  for (;;) {
    const dir = join(d, "node_modules", name)
    if (existsSync(join(dir, "package.json"))) return dir
    if (d === root || !d.startsWith(root)) return undefined
    d = dirname(d)
    // From node_modules/a/node_modules/b go to node_modules/a, never into a node_modules folder itself.
    while (d.endsWith(`${sep}node_modules`) || /[\\/]node_modules[\\/]@[^\\/]+$/.test(d)) d = dirname(d)
  }
}

function licenseOf(m: Manifest): string {
  if (typeof m.license === "string" && m.license.trim()) return m.license.trim()
  if (m.license && typeof m.license === "object" && typeof (m.license as { type?: unknown }).type === "string")
    return (m.license as { type: string }).type
  if (Array.isArray(m.licenses)) {
    const types = m.licenses.map((l) => (typeof l === "string" ? l : (l as { type?: string })?.type)).filter(Boolean)
    if (types.length) return types.length === 1 ? String(types[0]) : `(${types.join(" OR ")})`
  }
  return "UNKNOWN"
}

function authorOf(m: Manifest): string | undefined {
  if (typeof m.author === "string") return m.author
  if (m.author && typeof m.author === "object" && typeof (m.author as { name?: unknown }).name === "string")
    return (m.author as { name: string }).name
  return undefined
}

function licenseFileOf(dir: string): string | undefined {
  const files = readdirSync(dir).sort()
  return files.find((f) => /^(licen[cs]e|copying)(\.|-|$)/i.test(f))
}

/** The packages whose files `bun build` puts into the executable, as folders relative to root. */
export async function bundledDirs(root: string): Promise<Set<string>> {
  const built = await Bun.build({ ...bundleOptions(root), target: "bun", metafile: true })
  if (!built.success || !built.metafile) throw new Error("licenses: bundling the executable failed")
  const dirs = new Set<string>()
  for (const input of Object.keys(built.metafile.inputs)) {
    const rel = relative(root, resolve(root, input)).split(sep).join("/")
    const m = rel.match(/^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//)
    if (m) dirs.add(m[1])
  }
  return dirs
}

/**
 * Walks the installed tree of the root's `dependencies` (their `dependencies`, installed
 * `optionalDependencies` and non-optional `peerDependencies`, transitively). devDependencies are not
 * part of a binary and are left out. A package that must be there and is not installed is an error.
 */
export function collect(root: string, bundled: Set<string> = new Set()): Dep[] {
  const deps = new Map<string, Dep>()
  const visit = (dir: string, by: string) => {
    const rel = relative(root, dir).split(sep).join("/")
    const seen = deps.get(rel)
    if (seen) {
      if (!seen.requiredBy.includes(by)) seen.requiredBy.push(by)
      return
    }
    const m = readManifest(join(dir, "package.json"))
    const dep: Dep = {
      name: m.name,
      version: m.version,
      license: licenseOf(m),
      dir: rel,
      requiredBy: [by],
      licenseFile: licenseFileOf(dir),
      author: authorOf(m),
      bundled: bundled.has(rel),
    }
    deps.set(rel, dep)
    const optionalPeer = (n: string) => m.peerDependenciesMeta?.[n]?.optional === true
    const wanted: [string, boolean][] = [
      ...Object.keys(m.dependencies ?? {}).map((n): [string, boolean] => [n, true]),
      ...Object.keys(m.optionalDependencies ?? {}).map((n): [string, boolean] => [n, false]),
      // An optional peer is used only when the program installs it itself, and then it is counted there.
      ...Object.keys(m.peerDependencies ?? {})
        .filter((n) => !optionalPeer(n))
        .map((n): [string, boolean] => [n, true]),
    ]
    for (const [name, required] of wanted) {
      const found = resolvePackage(root, dir, name)
      if (found) visit(found, m.name)
      else if (required && !(m.optionalDependencies && name in m.optionalDependencies))
        throw new Error(`licenses: ${m.name} needs ${name}, which is not installed (run bun install)`)
    }
  }
  const top = readManifest(join(root, "package.json"))
  for (const name of Object.keys(top.dependencies ?? {})) {
    const found = resolvePackage(root, root, name)
    if (!found) throw new Error(`licenses: dependency ${name} is not installed (run bun install)`)
    visit(found, "(direct)")
  }
  return [...deps.values()].sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version))
}

/**
 * Whether an SPDX expression is allowed: `A OR B` when either side is, `A AND B` when both are,
 * parentheses as usual; `WITH` exceptions and `+` are not accepted (none of the tree uses them).
 */
export function allowed(expr: string): boolean {
  const tokens = expr.match(/\(|\)|[^\s()]+/g) ?? []
  let i = 0
  const primary = (): boolean => {
    const t = tokens[i++]
    if (t === "(") {
      const v = or()
      if (tokens[i++] !== ")") throw new Error("unbalanced")
      return v
    }
    if (t === undefined || t === ")" || /^(AND|OR|WITH)$/i.test(t)) throw new Error("unexpected token")
    return ALLOWED.has(t)
  }
  const and = (): boolean => {
    let v = primary()
    while (tokens[i]?.toUpperCase() === "AND") {
      i++
      v = primary() && v
    }
    return v
  }
  const or = (): boolean => {
    let v = and()
    while (tokens[i]?.toUpperCase() === "OR") {
      i++
      v = and() || v
    }
    return v
  }
  try {
    const v = or()
    return i === tokens.length && v
  } catch {
    return false
  }
}

/** One line per package whose licence is missing, unknown or not in ALLOWED. */
export function problems(deps: Dep[]): string[] {
  return deps
    .filter((d) => !allowed(d.license))
    .map((d) => `${d.name}@${d.version} (${d.dir}): licence ${JSON.stringify(d.license)} is not in the allowed list`)
}

export interface Runtime {
  version: string
  revision: string
}

const cell = (s: string) => s.replaceAll("|", "\\|")

function table(deps: Dep[]): string {
  const rows = deps.map(
    (d) =>
      `| ${cell(d.name)} | ${d.version} | ${cell(d.license)} | ${d.bundled ? "yes" : "no"} | ${cell(d.requiredBy.join(", "))} |`,
  )
  return [
    "| package | version | licence | in the binary | required by |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n")
}

function runtimeSection(rt: Runtime): string {
  return `## The Bun runtime inside the binary

\`bun build --compile\` copies the Bun ${rt.version} executable (revision ${rt.revision.slice(0, 9)}) into every dffmpeg
binary and appends the bundled program to it. Bun's terms are in its LICENSE.md:
<https://github.com/oven-sh/bun/blob/bun-v${rt.version}/LICENSE.md>. In short:

- Bun itself is MIT.
- Bun statically links JavaScriptCore and parts of WebKit (LGPL-2.0) and tinycc (LGPL-2.1), plus a list of
  permissively licensed C/C++ libraries (BoringSSL, zlib-ng, zstd, mimalloc, c-ares, ICU, uSockets...;
  the full list with their licences is in Bun's LICENSE.md).
- The LGPL lets a program under any licence be combined with the library, provided whoever
  distributes the combined binary (a) passes on the LGPL notice and text (THIRD_PARTY_NOTICES.md of a
  release ends with both LGPL texts, from packaging/licenses/), (b) makes the library's source
  available (Bun publishes its patched WebKit at <https://github.com/oven-sh/WebKit>, at the commit
  named in Bun's sources for each release), and (c) lets the user relink the program with a modified
  library. For a dffmpeg binary (c) holds: dffmpeg's source and build script are public, so a user can
  build a modified Bun and run \`bun scripts/release.ts\` with it to get the same program on their runtime.
  Distributors who want to meet (b) without relying on Bun's and GitHub's hosting should mirror
  the WebKit source of the Bun version they ship.
`
}

const HEADER = `# Licences

Generated by \`bun scripts/licenses.ts\` from node_modules; do not edit by hand (\`--check\` fails when
this file is stale; scripts/licenses.test.ts runs it).

## dffmpeg's own licence: MIT

dffmpeg is MIT-licensed (LICENSE). Every package below is under a permissive licence (MIT, ISC, BSD,
Apache-2.0, 0BSD) that allows being combined into an MIT program and shipped in one binary, as long as
each package's notice goes along: every release carries THIRD_PARTY_NOTICES.md with their licence texts.
MIT was chosen because it is what nearly all of the tree and Bun itself use, and it puts no condition on
users beyond keeping the notice. Apache-2.0 packages keep their own licence inside the MIT program (the
Apache licence allows that; it asks for its text and any NOTICE file to go along, which
THIRD_PARTY_NOTICES.md does). The one copyleft part, Bun's LGPL JavaScriptCore, does not reach dffmpeg's
own code; what it asks of whoever ships a binary is below.

Allowed licences (scripts/licenses.ts \`ALLOWED\`; a package under any other licence fails the check):
`

/** docs/licenses.md. */
export function renderDoc(deps: Dep[], rt: Runtime): string {
  const counts = new Map<string, number>()
  for (const d of deps) counts.set(d.license, (counts.get(d.license) ?? 0) + 1)
  const summary = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
  return `${HEADER}${[...ALLOWED].join(", ")}.

## Packages (${deps.length}: the whole installed tree of package.json \`dependencies\`)

${summary.map(([l, n]) => `${l}: ${n}`).join(", ")}. "in the binary": whether any file of the package is in
the executable's bundle (the others are type definitions or code paths the bundler leaves out).

${table(deps)}

${runtimeSection(rt)}`
}

function noticeFiles(root: string, d: Dep): string[] {
  const dir = join(root, d.dir)
  return readdirSync(dir)
    .sort()
    .filter((f) => f !== d.licenseFile && /^notice(\.|$)/i.test(f))
}

/** THIRD_PARTY_NOTICES.md of a release: the table, then each package's licence text and NOTICE files. */
export function renderNotices(root: string, deps: Dep[], rt: Runtime): string {
  const parts = [
    "# Third-party notices\n\nA dffmpeg binary contains the Bun runtime and the packages below (the ones marked yes in ",
    '"in the binary"; all are listed). Their licence texts follow the table, then the LGPL texts.\n\n',
    table(deps),
    "\n\n",
    runtimeSection(rt),
  ]
  for (const d of deps) {
    parts.push(`\n---\n\n## ${d.name} ${d.version} (${d.license})\n\n`)
    if (d.licenseFile) parts.push("```\n", readFileSync(join(root, d.dir, d.licenseFile), "utf8").trimEnd(), "\n```\n")
    else
      parts.push(
        `The package ships no licence file; its package.json says ${d.license}` +
          (d.author ? `, author ${d.author}` : "") +
          ".\n",
      )
    for (const n of noticeFiles(root, d))
      parts.push(`\n${n}:\n\n\`\`\`\n`, readFileSync(join(root, d.dir, n), "utf8").trimEnd(), "\n```\n")
  }
  // The LGPL asks for its own text to go with the binary; Debian's copies (/usr/share/common-licenses), vendored.
  for (const [title, file] of LGPL_TEXTS)
    parts.push(
      `\n---\n\n## ${title}\n\n\`\`\`\n`,
      readFileSync(join(import.meta.dir, "..", file), "utf8").trimEnd(),
      "\n```\n",
    )
  return parts.join("")
}

const LGPL_TEXTS = [
  ["GNU Library General Public License 2.0 (Bun's JavaScriptCore and WebKit)", "packaging/licenses/LGPL-2.0.txt"],
  ["GNU Lesser General Public License 2.1 (Bun's tinycc)", "packaging/licenses/LGPL-2.1.txt"],
] as const

/** Whether docs/licenses.md is what renderDoc gives for `deps` now. */
export function docIsCurrent(root: string, deps: Dep[]): boolean {
  const path = join(root, "docs", "licenses.md")
  return existsSync(path) && readFileSync(path, "utf8") === renderDoc(deps, runtime())
}

export function runtime(): Runtime {
  return { version: Bun.version, revision: Bun.revision }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { check: { type: "boolean" }, notices: { type: "string" } },
    strict: true,
    allowPositionals: false,
  })
  const root = join(import.meta.dir, "..")
  const deps = collect(root, await bundledDirs(root))
  const bad = problems(deps)
  for (const p of bad) console.error(`licenses: ${p}`)
  const docPath = join(root, "docs", "licenses.md")
  if (values.check) {
    if (!docIsCurrent(root, deps)) {
      console.error("licenses: docs/licenses.md is out of date: run `bun scripts/licenses.ts`")
      process.exit(1)
    }
  } else if (values.notices) {
    writeFileSync(values.notices, renderNotices(root, deps, runtime()))
  } else {
    writeFileSync(docPath, renderDoc(deps, runtime()))
    console.error(`licenses: wrote ${docPath} (${deps.length} packages)`)
  }
  if (bad.length) process.exit(1)
}
