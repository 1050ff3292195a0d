import type { DatabaseConfig } from "../../shared/config/server-schema.ts"
import type { Logger } from "../../shared/log.ts"
import { serverConnection } from "../../store/server/connection.ts"
import type { StoreKind } from "../../store/types.ts"
import { Hub, type Notifier } from "../hub.ts"
import { BrokerNotifier } from "./broker.ts"

/**
 * The notifier for a store of `kind`: PostgreSQL's LISTEN/NOTIFY, the change sequence of MySQL/MariaDB,
 * or the in-memory hub for SQLite (one coordinator per file: several on one SQLite file are no cluster);
 * or, with `broker`, the notify channel of a broker the coordinators serve on (broker.ts).
 * A server notifier has made its first connection attempt when this resolves; a failed one is retried
 * in the background (/health says so) while the coordinator serves. Engines are imported lazily, as the
 * store's adapters are.
 */
export async function createNotifier(
  kind: StoreKind,
  database: DatabaseConfig,
  base: string,
  log: Logger,
  broker?: ConstructorParameters<typeof BrokerNotifier>[0],
): Promise<Notifier> {
  // Started once the coordinator's link to that broker is up (coordinator/transports.ts).
  if (broker) return new BrokerNotifier({ ...broker, log })
  if (kind === "sqlite" || database.engine === "sqlite") return new Hub()
  const connection = serverConnection(database, base)
  const notifier =
    kind === "postgres"
      ? new (await import("./postgres.ts")).PostgresNotifier({ connection, log })
      : new (await import("./mysql.ts")).MysqlNotifier({ connection, log })
  await notifier.start()
  return notifier
}
