import { proxyChecks } from "./shared/proxy-checks.ts"

// The coordinator on its default store: SQLite (./coordinator.db). Same checks on the server engines:
// proxy-postgres.e2e.test.ts, proxy-mysql.e2e.test.ts.
proxyChecks("sqlite")
