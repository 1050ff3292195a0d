/**
 * The bundle options of the `dffmpeg` executable, shared by scripts/compile.ts (build and release), the
 * licence walk of scripts/licenses.ts (which packages are in the binary), the bundle check in
 * test/boundaries.test.ts and bench/startup.ts, so the check and the benchmark see the very chunks the
 * binary embeds (minified: the minifier is what once folded the CLI into the proxy's chunk).
 */
import { join } from "node:path"
import pkg from "../package.json"

export function bundleOptions(root: string) {
  return {
    // Three entrypoints in one executable: main.ts (dispatch + proxy), the CLI, and the broker transports
    // of a client (a proxy whose config lists a broker), each loaded only when needed.
    entrypoints: [join(root, "src/main.ts"), join(root, "src/cli/run.ts"), join(root, "src/transports/peer.ts")],
    minify: true,
    format: "esm" as const,
    define: { DFFMPEG_VERSION: JSON.stringify(pkg.version) },
  }
}
