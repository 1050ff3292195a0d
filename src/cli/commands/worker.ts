import { serviceArgs } from "../args.ts"
import { verb } from "../command.ts"
import { loadConfig } from "../../shared/config/load.ts"
import { WorkerConfig } from "../../shared/config/server-schema.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"
import { Env } from "../../shared/config/env.ts"
import { createLogger, type Level } from "../../shared/log.ts"
import { onStopSignals } from "../lifecycle.ts"

const description = "Run a worker: register with the coordinator and run the jobs it assigns"
export default verb("worker", description, serviceArgs("worker"), async (a) => {
  const level = a["log-level"] ?? Env.logLevel()
  const format = a["log-format"] ?? Env.logFormat()
  const { config, base, file, warnings } = await loadConfig(
    "worker",
    WorkerConfig,
    a.config,
    { ...(level ? { log_level: level } : {}), ...(format ? { log_format: format } : {}) },
    explainYaml,
  )
  const log = createLogger({ level: config.log_level as Level, format: config.log_format })
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
})
