import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConfigError } from "../../shared/errors.ts"
import { logFormatOverride, logLevelOverride, serviceArgs } from "../args.ts"
import { verb } from "../command.ts"
import { loadConfig } from "../../shared/config/load.ts"
import { WorkerConfig } from "../../shared/config/server-schema.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"
import { createLogger, type Level } from "../../shared/log.ts"
import { onStopSignals } from "../lifecycle.ts"

/**
 * Every job without a mapped working directory, and the copies of its concat lists, get a folder in the
 * temp dir (TMPDIR, else /tmp): one that cannot be used would fail every such job, so it fails the start.
 */
function checkScratch(): void {
  const root = tmpdir()
  try {
    rmSync(mkdtempSync(join(root, "dffmpeg-check-")), { recursive: true })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    throw new ConfigError(
      `the scratch folder ${root} (TMPDIR, else /tmp) cannot be used: ${code}; set TMPDIR to a folder the worker can write`,
    )
  }
}

const description = "Run a worker: register with the coordinator and run the jobs it assigns"
export default verb("worker", description, serviceArgs("worker"), async (a) => {
  const { config, base, file, warnings } = await loadConfig(
    "worker",
    WorkerConfig,
    a.config,
    { ...logLevelOverride(a["log-level"]), ...logFormatOverride(a["log-format"]) },
    explainYaml,
  )
  const log = createLogger({ level: config.log_level as Level, format: config.log_format })
  for (const w of warnings) log.warn(w)
  if (file) log.info("config loaded", { file })
  checkScratch()
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
