import { lazy } from "../../command.ts"
import { noun } from "./_args.ts"

export default noun(
  "admin",
  "Administer users, jobs, workers, the coordinator secret and the database: remotely as an admin identity (an admin config: --config FILE with client_id, DFFMPEG_ADMIN_CONFIG, ./dffmpeg-admin.yaml, ~/.config/dffmpeg/admin.yaml or /etc/dffmpeg/admin.yaml), or on the coordinator host directly on its database (--local, --config with the coordinator's config, or when no admin config is found)",
  {
    users: lazy(() => import("./users.ts")),
    jobs: lazy(() => import("./jobs.ts")),
    workers: lazy(() => import("./workers.ts")),
    janitor: lazy(() => import("./janitor.ts")),
    security: lazy(() => import("./security.ts")),
    db: lazy(() => import("./db.ts")),
    "dashboard-link": lazy(() => import("./dashboard-link.ts")),
  },
)
