#!/usr/bin/env bun
import { basename } from "node:path"
import { Env } from "./shared/config/env.ts"

// Dispatch on the name we were called by, before any parsing: through a symlink named ffmpeg or
// ffprobe this binary is a drop-in proxy and must not interpret a single argument.
const name = basename(process.argv0).replace(/\.exe$/i, "")
const tool = name === "ffmpeg" || name === "ffprobe" ? name : Env.proxy()

if (tool) {
  const { runProxy } = await import("./proxy/index.ts")
  process.exit(await runProxy(tool, process.argv.slice(2)))
} else {
  const { runCli } = await import("./cli/run.ts")
  process.exit(await runCli(process.argv.slice(2)))
}
