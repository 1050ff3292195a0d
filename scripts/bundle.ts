/**
 * The bundle options of the `dffmpeg` executable, shared by scripts/build.ts, the bundle check in
 * test/boundaries.test.ts and bench/startup.ts, so the check and the benchmark see the very chunks the
 * binary embeds (minified: the minifier is what once folded the CLI into the proxy's chunk).
 */
import { join } from "node:path"
import pkg from "../package.json"

export function bundleOptions(root: string) {
  return {
    // Two entrypoints in one executable: main.ts (dispatch + proxy) and the CLI, loaded only when needed.
    entrypoints: [join(root, "src/main.ts"), join(root, "src/cli/run.ts")],
    minify: true,
    format: "esm" as const,
    define: { DFFMPEG_VERSION: JSON.stringify(pkg.version) },
  }
}
