#!/usr/bin/env bun
import { basename } from "node:path"
import { Env } from "./shared/config/env.ts"
import { ExitCode, PROXY_FAILURE } from "./shared/exit-codes.ts"
import { settleStdio, watchStdio } from "./shared/stdio.ts"
import { loadCli } from "./cli-loader.ts"

// Before anything is written: a reader that goes away must not crash us, and is reported at exit.
watchStdio()

// Dispatch on the name we were called by, before any parsing: through a symlink named ffmpeg or
// ffprobe this binary is a drop-in proxy and must not interpret a single argument.
const name = basename(process.argv0).replace(/\.exe$/i, "")
const tool = name === "ffmpeg" || name === "ffprobe" ? name : Env.proxy()

if (tool) {
  const { runProxy } = await import("./proxy/index.ts")
  const code = await runProxy(tool, process.argv.slice(2), async (text) => (await loadCli()).explainYaml(text))
  // Every byte reaches our reader before the exit code does; the remote code stands unless stdout was lost.
  process.exit(await settleStdio(code, { failure: PROXY_FAILURE, stderr: false }))
} else {
  const { runCli, endedWithRemoteCode } = await loadCli()
  const code = await runCli(process.argv.slice(2))
  // `client submit`/`attach` end as the proxy does; every other command exits 7 when its output was lost.
  process.exit(
    await settleStdio(
      code,
      endedWithRemoteCode() ? { failure: PROXY_FAILURE, stderr: false } : { failure: ExitCode.OUTPUT, stderr: true },
    ),
  )
}
