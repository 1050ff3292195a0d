import * as v from "valibot"
import { startCoordinator } from "../../src/coordinator/index.ts"
import { generateKey } from "../../src/shared/auth/hmac.ts"
import { CoordinatorConfig } from "../../src/shared/config/server-schema.ts"
import { createLogger } from "../../src/shared/log.ts"
import { createSqliteStore } from "../../src/store/sqlite/index.ts"
import { createWorkerTransport } from "../../src/transports/index.ts"
import { testTransport } from "../conformance/transport.ts"

// A coordinator in process on 127.0.0.1 (signed requests, signed replies, the real routes), on an
// in-memory store, and the worker's HTTP transport that reaches it.
testTransport("http", async (timing) => {
  const store = createSqliteStore({ path: ":memory:" })
  await store.migrate()
  const key = generateKey()
  await store.addUser("w1", "worker", key, Date.now())
  const config = v.parse(CoordinatorConfig, {
    host: "127.0.0.1",
    port: 0,
    poll_wait_seconds: timing.pollWaitSeconds,
    heartbeat_interval: timing.heartbeatSeconds,
  })
  const service = await startCoordinator(config, { log: createLogger({ level: "error" }), base: "/", store })
  return {
    worker: createWorkerTransport({ url: service.url, client: "w1", key }),
    workerName: "w1",
    store,
    close: () => service.stop(),
  }
})
