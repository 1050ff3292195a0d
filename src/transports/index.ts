import type { CoordinatorTarget } from "../shared/config/load.ts"
import { createApiClient } from "../shared/http/client.ts"
import { httpWorkerTransport } from "./http/worker.ts"
import type { WorkerTransport } from "./types.ts"

export { openLink } from "./broker/index.ts"
export { createTunnelServer } from "./broker/server.ts"
export { COORDINATORS, type BrokerLink, type PeerAddress } from "./broker/types.ts"
export { open, peek, Rejected, seal, SeenNonces, type RejectReason } from "./broker/envelope.ts"
export { openClientTransports, openPeerTransports, type PeerTransports } from "./peer.ts"

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
  /** Sends each request over the broker in use (`openPeerTransports`); HTTP when absent. */
  fetch?: Parameters<typeof createApiClient>[0]["fetch"]
  /** This worker process's instance id, named on its heartbeats, polls and deregistration. */
  instance?: string
}

/**
 * The worker half of the protocol. Every transport carries the same signed API: HTTP directly, a broker
 * through the tunnel (src/transports/broker/), so one binding serves them all; roles get a transport from
 * here and never import an adapter (test/boundaries.test.ts).
 */
export function createWorkerTransport(opts: WorkerTransportOptions): WorkerTransport {
  return httpWorkerTransport(createApiClient(opts), opts.instance)
}
