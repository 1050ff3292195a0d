/**
 * The CLI (coordinator, worker, admin...) is a second entrypoint embedded in the same executable
 * (scripts/build.ts). Importing it through a specifier built at run time keeps it out of the proxy's
 * bundle, so a proxy call never loads or evaluates it unless it needs it (to explain a broken config
 * file, or to reach a broker). A plain constant is not enough: the minifier folds
 * `const cli = "./cli/run.ts"; import(cli)` into a static import and bundles the whole CLI (with
 * bun:sqlite, Kysely, Hono...) into the proxy's chunk. test/boundaries.test.ts checks the real build.
 */
export const loadCli = () => {
  const cli = [".", "cli", "run.ts"].join("/")
  return import(cli) as Promise<typeof import("./cli/run.ts")>
}

/**
 * The broker transports of a client (src/transports/peer.ts, the executable's third entrypoint): a proxy
 * whose config lists MQTT or RabbitMQ loads them, and not the whole CLI, the same way.
 */
export const loadPeerTransports = () => {
  const peer = [".", "transports", "peer.ts"].join("/")
  return import(peer) as Promise<typeof import("./transports/peer.ts")>
}
