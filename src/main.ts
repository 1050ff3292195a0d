#!/usr/bin/env bun
import { basename } from "node:path"
import { Env } from "./shared/config/env.ts"

// Dispatch on the name we were called by, before any parsing: through a symlink named ffmpeg or
// ffprobe this binary is a drop-in proxy and must not interpret a single argument.
const name = basename(process.argv0).replace(/\.exe$/i, "")
const tool = name === "ffmpeg" || name === "ffprobe" ? name : Env.proxy()

// The CLI (coordinator, worker, admin...) is a second entrypoint embedded in the same executable
// (scripts/build.ts). Importing it through a variable keeps it out of this bundle, so a proxy call
// never loads or evaluates it: that halves the proxy's start-up.
const loadCli = () => {
  const cli = "./cli/run.ts"
  return import(cli) as Promise<typeof import("./cli/run.ts")>
}

if (tool) {
  const { runProxy } = await import("./proxy/index.ts")
  process.exit(await runProxy(tool, process.argv.slice(2), async (text) => (await loadCli()).explainYaml(text)))
} else {
  const { runCli } = await loadCli()
  process.exit(await runCli(process.argv.slice(2)))
}
