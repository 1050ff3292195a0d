import { logFormatOverride, logLevelOverride, portArg, serviceArgs } from "../args.ts"
import { verb } from "../command.ts"
import { loadConfig } from "../../shared/config/load.ts"
import { CoordinatorConfig } from "../../shared/config/server-schema.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"
import { createLogger, type Level } from "../../shared/log.ts"
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
  const overrides: Record<string, unknown> = {
    ...logLevelOverride(a["log-level"]),
    ...logFormatOverride(a["log-format"]),
  }
  if (a.host !== undefined) {
    if (!a.host.trim()) throw new UsageError("--host needs an address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)")
    overrides.host = a.host
  }
  if (a.port !== undefined) overrides.port = portArg(a.port)
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
