import { defineCommand } from "citty"
import { UsageError } from "../../shared/errors.ts"
import { describe } from "../../proxy/index.ts"
import { PROXY_FAILURE } from "../../shared/exit-codes.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"

/**
 * `submit` parses its own options and stops at the first token it does not know (or at `--`), so
 * `dffmpeg client submit -b ffprobe -i in.mkv` works and ffmpeg flags are never misread.
 */
export function parseSubmit(raw: string[]): { config?: string; binary: string; args: string[] } {
  let config: string | undefined
  let binary = "ffmpeg"
  let i = 0
  const value = (flag: string) => {
    const v = raw[++i]
    if (v === undefined) throw new UsageError(`${flag} needs a value`)
    return v
  }
  for (; i < raw.length; i++) {
    const a = raw[i]
    if (a === "--") {
      i++
      break
    }
    if (a === "--config" || a === "-c") config = value(a)
    else if (a.startsWith("--config=")) config = a.slice(9)
    else if (a === "--binary" || a === "-b") binary = value(a)
    else if (a.startsWith("--binary=")) binary = a.slice(9)
    else break
  }
  return { config, binary, args: raw.slice(i) }
}

const submit = defineCommand({
  meta: {
    name: "submit",
    description: "Run ffmpeg/ffprobe on the cluster exactly as the proxy does. Options come first and end at the first other token or at --: [--config F] [-b|--binary ffmpeg|ffprobe] [--] ARGS...",
  },
  args: {
    config: { type: "string", description: "client YAML config" },
    binary: { type: "string", alias: "b", description: "remote binary (default ffmpeg)" },
  },
  async run({ rawArgs }) {
    const opts = parseSubmit(rawArgs)
    const { runAttached } = await import("../../client/session.ts")
    try {
      return await runAttached({ binary: opts.binary, args: opts.args, configPath: opts.config, explainYaml, warn: (w) => process.stderr.write(`dffmpeg: warning: ${w}\n`) })
    } catch (err) {
      process.stderr.write(`dffmpeg: ${describe(err)}\n`)
      return PROXY_FAILURE
    }
  },
})

export default defineCommand({
  meta: { name: "client", description: "Submit and follow jobs" },
  subCommands: { submit },
})
