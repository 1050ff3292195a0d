import { defineCommand } from "citty"
import { UsageError } from "../../shared/errors.ts"
import { describe } from "../../proxy/index.ts"
import { PROXY_FAILURE } from "../../shared/exit-codes.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"
import { isUlid } from "../../shared/ids.ts"
import type { Job } from "../../shared/protocol/schemas.ts"
import { exitWith, rejectUnknownFlags } from "../run.ts"

/**
 * `submit` parses its own options and stops at the first token it does not know (or at `--`), so
 * `dffmpeg client submit -b ffprobe -i in.mkv` works and ffmpeg flags are never misread.
 */
export function parseSubmit(raw: string[]): { config?: string; binary: string; args: string[]; detach: boolean; retries: number; json: boolean } {
  let config: string | undefined
  let binary = "ffmpeg"
  let detach = false
  let json = false
  let retries = 0
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
    else if (a === "--detach" || a === "-d") detach = true
    else if (a === "--json") json = true
    else if (a === "--retries" || a.startsWith("--retries=")) {
      const v = a === "--retries" ? value(a) : a.slice(10)
      if (!/^\d{1,3}$/.test(v) || Number(v) > 100) throw new UsageError("--retries must be a number from 0 to 100")
      retries = Number(v)
    } else break
  }
  if (retries > 0 && !detach) throw new UsageError("--retries needs --detach: a job re-run while you follow it would repeat its output")
  return { config, binary, args: raw.slice(i), detach, retries, json }
}

const submit = defineCommand({
  meta: {
    name: "submit",
    description:
      "Run ffmpeg/ffprobe on the cluster exactly as the proxy does. Options come first and end at the first other token or at --: [--config F] [-b|--binary ffmpeg|ffprobe] [-d|--detach [--retries N] [--json]] [--] ARGS...",
  },
  args: {
    config: { type: "string", description: "client YAML config" },
    binary: { type: "string", alias: "b", description: "remote binary (default ffmpeg)" },
    detach: { type: "boolean", alias: "d", description: "submit and print the job id instead of following it (no stdin)" },
    retries: { type: "string", description: "with --detach: re-run the job up to N times if its worker is lost" },
    json: { type: "boolean", description: "with --detach: print the job as JSON" },
  },
  async run({ rawArgs }) {
    const opts = parseSubmit(rawArgs)
    const { runAttached, submitDetached } = await import("../../client/session.ts")
    const warn = (w: string) => process.stderr.write(`dffmpeg: warning: ${w}\n`)
    try {
      if (opts.detach) {
        const job = await submitDetached({ binary: opts.binary, args: opts.args, configPath: opts.config, explainYaml, warn, retries: opts.retries })
        process.stdout.write(opts.json ? JSON.stringify(job) + "\n" : job.id + "\n")
        return 0
      }
      return exitWith(await runAttached({ binary: opts.binary, args: opts.args, configPath: opts.config, explainYaml, warn }))
    } catch (err) {
      process.stderr.write(`dffmpeg: ${describe(err)}\n`)
      return exitWith(PROXY_FAILURE)
    }
  },
})

const idArgs = { id: { type: "positional", description: "job id", required: true }, config: { type: "string", description: "client YAML config" } } as const

const attach = defineCommand({
  meta: { name: "attach", description: "Follow a job from the start of its output, as if it had been submitted here; exits with its exit code" },
  args: idArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(idArgs, rawArgs)
    if (!isUlid(args.id)) throw new UsageError("job ids are ULIDs (26 characters)")
    const { attach } = await import("../../client/session.ts")
    try {
      return exitWith(await attach(args.id, args.config))
    } catch (err) {
      process.stderr.write(`dffmpeg: ${describe(err)}\n`)
      return exitWith(PROXY_FAILURE)
    }
  },
})

const cancel = defineCommand({
  meta: { name: "cancel", description: "Cancel one of your jobs (its remote process gets q, then SIGTERM, then SIGKILL)" },
  args: idArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(idArgs, rawArgs)
    if (!isUlid(args.id)) throw new UsageError("job ids are ULIDs (26 characters)")
    const { openClient } = await import("../../client/session.ts")
    const { api } = await openClient(args.config, (w) => process.stderr.write(`dffmpeg: warning: ${w}\n`))
    const job = await api.json<Job>("POST", `/api/v1/jobs/${args.id}/cancel`)
    process.stdout.write(`${job.id} ${job.status === "canceled" ? "canceled" : "canceling"}\n`)
  },
})

export default defineCommand({
  meta: { name: "client", description: "Submit, follow and cancel jobs" },
  subCommands: { submit, attach, cancel },
})
