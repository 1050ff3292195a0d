import { freshDatabase } from "../helpers/databases.ts"
import { proxyChecks } from "./shared/proxy-checks.ts"

// proxy.e2e.test.ts's checks with the coordinator (and admin --local, which Cluster uses) on PostgreSQL.
proxyChecks("postgres", async () => ({ coordinatorConfig: { database: (await freshDatabase("postgres")).config } }))
