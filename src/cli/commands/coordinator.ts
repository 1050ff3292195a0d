import { serviceArgs } from "../args.ts"
import { verb } from "../command.ts"
import { loadConfig } from "../../shared/config/load.ts"
import { CoordinatorConfig } from "../../shared/config/server-schema.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"
import { createLogger, type Level } from "../../shared/log.ts"
import { Env } from "../../shared/config/env.ts"
import { onStopSignals } from "../lifecycle.ts"
import { UsageError } from "../../shared/errors.ts"

const { config, "log-level": logLevel, "log-format": logFormat } = serviceArgs("coordinator")
const args = {
  config,
  host: { type: "string", description: "address to listen on (config key host, default 127.0.0.1)" },
  port: { type: "string", description: "port to listen on; 0 picks a free one (config key port, default 8000)" },
  "log-level": logLevel,
  "log-format": logFormat,
} as const

export default verb("coordinator", "Run the coordinator: signed HTTP API, job store, scheduler", args, async (a) => {
  const overrides: Record<string, unknown> = {}
  if (a.host !== undefined) overrides.host = a.host
  if (a.port !== undefined) {
    if (!/^\d+$/.test(a.port)) throw new UsageError("--port must be a number")
    overrides.port = Number(a.port)
  }
  if (a["log-level"] ?? Env.logLevel()) overrides.log_level = a["log-level"] ?? Env.logLevel()
  if (a["log-format"] ?? Env.logFormat()) overrides.log_format = a["log-format"] ?? Env.logFormat()
  const { config, base, file, warnings } = await loadConfig(
    "coordinator",
    CoordinatorConfig,
    a.config,
    overrides,
    explainYaml,
  )
  const log = createLogger({ level: config.log_level as Level, format: config.log_format })
  for (const w of warnings) log.warn(w)
  if (file) log.info("config loaded", { file })
  const { startCoordinator } = await import("../../coordinator/index.ts")
  const svc = await startCoordinator(config, { log: log.withTag("coordinator"), base })
  await onStopSignals(
    () => svc.stop(),
    () => svc.stop(),
  )
})
