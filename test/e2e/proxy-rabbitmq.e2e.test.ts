import { brokerTransports } from "../helpers/brokers.ts"
import { proxyChecks } from "./shared/proxy-checks.ts"

// proxy.e2e.test.ts's checks with every request of the worker and of the proxy going through RabbitMQ
// (the coordinator serves job traffic over RabbitMQ only): byte-exact output, exit codes, stdin, signals.
proxyChecks("rabbitmq", async () => {
  const transports = brokerTransports("rabbitmq")
  return {
    coordinatorConfig: { transports },
    workerConfig: { transports },
    clientConfig: { transports },
  }
})
