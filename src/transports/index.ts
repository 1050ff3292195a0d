import type { CoordinatorTarget } from "../shared/config/load.ts"
import { createApiClient } from "../shared/http/client.ts"
import { httpWorkerTransport } from "./http/worker.ts"
import type { WorkerTransport } from "./types.ts"

/** Where and as whom a worker reaches its coordinator. */
export interface WorkerTransportOptions {
  /**
   * The coordinators, in failover order: each base URL (including any reverse-proxy path_base) and the
   * PEM of the CA that signs its certificate (https).
   */
  coordinators: readonly CoordinatorTarget[]
  /** The worker's identity and its HMAC key. */
  client: string
  key: string
}

/**
 * The worker half of the transport the configuration names. Only HTTP exists today; roles get a
 * transport from here and never import an adapter (test/boundaries.test.ts).
 */
export function createWorkerTransport(opts: WorkerTransportOptions): WorkerTransport {
  return httpWorkerTransport(createApiClient(opts))
}
