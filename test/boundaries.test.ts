import { expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { bundleOptions } from "../scripts/bundle.ts"

const SRC = join(import.meta.dir, "..", "src")

/** Folder of src/ a file belongs to: "shared", "store", "transports", "coordinator", "worker", "client", "proxy", "cli" or "main". */
function area(file: string): string {
  const rel = relative(SRC, file)
  return rel.includes("/") ? rel.split("/")[0] : "main"
}

/** What each area must never import (style.md §2.2). */
const FORBIDDEN: Record<string, string[]> = {
  shared: ["store", "coordinator", "worker", "client", "proxy", "cli", "transports"],
  store: ["coordinator", "worker", "client", "proxy", "cli", "transports"],
  transports: ["store", "coordinator", "worker", "client", "proxy", "cli"],
  coordinator: ["worker", "client", "proxy", "cli"],
  worker: ["store", "coordinator", "client", "proxy", "cli"],
  client: ["store", "coordinator", "worker", "proxy", "cli"],
  proxy: ["store", "coordinator", "worker", "cli", "transports"],
  // The proxy's entry must not statically pull in the CLI: that would double its start-up time.
  main: ["store", "coordinator", "worker", "cli"],
}

/** Relative import specifiers of `text`: static and literal dynamic imports; `types` adds type-only ones. */
function importsOf(text: string, types = false): string[] {
  const statics = types
    ? /^\s*(?:import|export)\s+[^"';]*?from\s+["']([^"']+)["']/gm
    : /^\s*import\s+(?!type\b)[^"']*?from\s+["']([^"']+)["']/gm
  return [...text.matchAll(statics), ...text.matchAll(/(?<!typeof\s)import\(\s*["']([^"']+)["']\s*\)/g)]
    .map((m) => m[1])
    .filter((s) => s.startsWith("."))
}

/** Non-test source files of src/, as paths relative to it. */
async function sources(): Promise<string[]> {
  const out: string[] = []
  for await (const f of new Bun.Glob("**/*.ts").scan(SRC)) if (!f.endsWith(".test.ts")) out.push(f)
  return out
}

test("modules only import what their layer may import", async () => {
  const violations: string[] = []
  for (const f of await sources()) {
    const file = join(SRC, f)
    // Type-only imports are erased and allowed.
    for (const spec of importsOf(readFileSync(file, "utf8"))) {
      const target = area(resolve(dirname(file), spec))
      if (FORBIDDEN[area(file)]?.includes(target)) violations.push(`${f} imports ${spec} (${area(file)} → ${target})`)
    }
  }
  expect(violations).toEqual([])
})

test("only main.ts and cli/run.ts decide the exit status", async () => {
  const offenders: string[] = []
  for await (const f of new Bun.Glob("**/*.ts").scan(SRC)) {
    if (f.endsWith(".test.ts") || f === "main.ts" || f === "cli/run.ts" || f === "cli/lifecycle.ts") continue
    if (/process\.exit\(|process\.exitCode\s*=/.test(readFileSync(join(SRC, f), "utf8"))) offenders.push(f)
  }
  expect(offenders).toEqual([])
})

/**
 * Roles see an adapter only through its seam: a transport through src/transports/{index,types}.ts, a
 * store through src/store/{index,types}.ts. Type-only imports count too: they couple as much.
 */
test.each([
  ["transports", "src/transports/<adapter>/ (e.g. http/)", /^transports\/[^/]+\//],
  ["store", "src/store/sql/", /^store\/sql\//],
])("nothing outside src/%s/ imports %s", async (owner, _what, adapter) => {
  const offenders: string[] = []
  for (const f of await sources()) {
    if (f.startsWith(`${owner}/`)) continue
    for (const spec of importsOf(readFileSync(join(SRC, f), "utf8"), true)) {
      const target = relative(SRC, resolve(dirname(join(SRC, f)), spec))
      if (adapter.test(target)) offenders.push(`${f} imports ${spec}`)
    }
  }
  expect(offenders).toEqual([])
})

/** The worker loop knows no HTTP: status codes and retry rules stay in its transport (src/transports/http/). */
test("nothing in src/worker/ imports the HTTP client", async () => {
  const offenders: string[] = []
  for (const f of await sources()) {
    if (!f.startsWith("worker/")) continue
    for (const spec of importsOf(readFileSync(join(SRC, f), "utf8"), true))
      if (relative(SRC, resolve(dirname(join(SRC, f)), spec)) === "shared/http/client.ts") offenders.push(f)
  }
  expect(offenders).toEqual([])
})

/** Packages and src/ folders the proxy's start-up path must never bundle: each adds to every ffmpeg call. */
const PROXY_FORBIDDEN = [
  ...["hono", "kysely", "kysely-bun-sqlite", "citty", "yaml", "consola", "ulid", "mqtt", "rabbitmq-client"].map(
    (p) => `node_modules/${p}/`,
  ),
  ...["store", "coordinator", "worker", "transports", "cli"].map((d) => `src/${d}/`),
]

/**
 * Bundles the executable exactly as scripts/build.ts does (both entrypoints, minified) and checks every
 * module of the main chunk, the one each proxy call loads and evaluates (type-only imports are erased and
 * do not count): any of the above there makes every ffmpeg call slower to start. Minification matters: it
 * once folded the CLI's lazily imported specifier into a static import and put the whole CLI in this chunk.
 */
test("the proxy's chunk of the real build holds none of the CLI's or the server roles' modules and packages", async () => {
  const ROOT = join(SRC, "..")
  const built = await Bun.build({ ...bundleOptions(ROOT), target: "bun", metafile: true })
  expect(built.success).toBe(true)
  const main = Object.values(built.metafile?.outputs ?? {}).find(
    (o) => o.entryPoint && relative(ROOT, resolve(o.entryPoint)) === "src/main.ts",
  )
  expect(main).toBeDefined()
  const inputs = Object.keys(main?.inputs ?? {}).map((k) => relative(ROOT, resolve(k)))
  // The check means nothing if the paths were not read as the repository's.
  expect(inputs).toContain("src/proxy/index.ts")
  expect(inputs.filter((f) => PROXY_FORBIDDEN.some((p) => f.startsWith(p)))).toEqual([])
  // bun:sqlite is a runtime module, not an input: look for it in the chunk's own code.
  const code = await built.outputs.find((o) => o.path.endsWith("main.js"))?.text()
  expect(code).toBeString()
  expect(code).not.toContain("bun:sqlite")
})
