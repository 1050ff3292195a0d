import { expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"

const SRC = join(import.meta.dir, "..", "src")

/** Folder of src/ a file belongs to: "shared", "store", "coordinator", "worker", "client", "proxy", "cli" or "main". */
function area(file: string): string {
  const rel = relative(SRC, file)
  return rel.includes("/") ? rel.split("/")[0] : "main"
}

/** What each area must never import (style.md §2.2). */
const FORBIDDEN: Record<string, string[]> = {
  shared: ["store", "coordinator", "worker", "client", "proxy", "cli", "transports"],
  store: ["coordinator", "worker", "client", "proxy", "cli", "transports"],
  coordinator: ["worker", "client", "proxy", "cli"],
  worker: ["store", "coordinator", "client", "proxy", "cli"],
  client: ["store", "coordinator", "worker", "proxy", "cli"],
  proxy: ["store", "coordinator", "worker", "cli"],
  // The proxy's entry must not statically pull in the CLI: that would double its start-up time.
  main: ["store", "coordinator", "worker", "cli"],
}

test("modules only import what their layer may import", async () => {
  const violations: string[] = []
  for await (const f of new Bun.Glob("**/*.ts").scan(SRC)) {
    if (f.endsWith(".test.ts")) continue
    const file = join(SRC, f)
    const text = readFileSync(file, "utf8")
    // Static imports and literal dynamic imports; type-only imports are erased and allowed.
    const specs = [
      ...text.matchAll(/^\s*import\s+(?!type\b)[^"']*?from\s+["']([^"']+)["']/gm),
      ...text.matchAll(/(?<!typeof\s)import\(\s*["']([^"']+)["']\s*\)/g),
    ].map((m) => m[1])
    for (const spec of specs) {
      if (!spec.startsWith(".")) continue
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
