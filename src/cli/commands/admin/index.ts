import { defineCommand } from "citty"

/** `--config` given before the noun (`dffmpeg admin --config c.yaml users ls`) applies to every verb. */
export const adminContext: { config?: string } = {}

export default defineCommand({
  meta: { name: "admin", description: "Administer users, jobs and workers on the coordinator host (uses the coordinator config)" },
  args: {
    config: { type: "string", description: "coordinator YAML config (same search as `dffmpeg coordinator`)" },
  },
  setup({ args }) {
    if (typeof args.config === "string") adminContext.config = args.config
  },
  subCommands: {
    users: () => import("./users.ts").then((m) => m.default),
    jobs: () => import("./jobs.ts").then((m) => m.default),
  },
})
