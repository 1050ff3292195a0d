import { defineCommand } from "citty"
import { modeArgs, remember } from "./_args.ts"

export default defineCommand({
  meta: {
    name: "admin",
    description:
      "Administer users, jobs, workers and the coordinator secret: remotely as an admin identity (an admin config: --config FILE with client_id, DFFMPEG_ADMIN_CONFIG, ./dffmpeg-admin.yaml, ~/.config/dffmpeg/admin.yaml or /etc/dffmpeg/admin.yaml), or on the coordinator host directly on its database (--local, --config with the coordinator's config, or when no admin config is found)",
  },
  args: modeArgs,
  setup: ({ args }) => remember(args),
  subCommands: {
    users: () => import("./users.ts").then((m) => m.default),
    jobs: () => import("./jobs.ts").then((m) => m.default),
    workers: () => import("./workers.ts").then((m) => m.default),
    janitor: () => import("./janitor.ts").then((m) => m.default),
    security: () => import("./security.ts").then((m) => m.default),
  },
})
