import { defineCommandStrict } from "../args.ts"
import { loadConfig } from "../../shared/config/load.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"
import { Env } from "../../shared/config/env.ts"
import { createLogger, type Level } from "../../shared/log.ts"
import { onStopSignals } from "../lifecycle.ts"

const args = {
  config: {
    type: "string",
    description:
      "worker YAML config (default: search DFFMPEG_WORKER_CONFIG, ./dffmpeg-worker.yaml, ~/.config/dffmpeg/worker.yaml, /etc/dffmpeg/worker.yaml)",
  },
  "log-level": { type: "string", description: "debug | info | warn | error" },
} as const

export default defineCommandStrict({
  meta: { name: "worker", description: "Run a worker: register with the coordinator and run the jobs it assigns" },
  args,
  async run({ args: a }) {
    const level = a["log-level"] ?? Env.logLevel()
    const { config, base, file, warnings } = await loadConfig(
      "worker",
      a.config,
      level ? { log_level: level } : {},
      explainYaml,
    )
    const log = createLogger({ level: config.log_level as Level })
    for (const w of warnings) log.warn(w)
    if (file) log.info("config loaded", { file })
    const { startWorker } = await import("../../worker/index.ts")
    const svc = await startWorker(config, { log, base })
    await Promise.race([
      svc.done,
      onStopSignals(
        () => svc.stop(false),
        () => svc.stop(true),
      ),
    ])
  },
})
