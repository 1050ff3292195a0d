import { brokerTransports } from "../helpers/brokers.ts"
import { proxyChecks } from "./shared/proxy-checks.ts"

// proxy.e2e.test.ts's checks with every request of the worker and of the proxy going through Mosquitto
// (the coordinator serves job traffic over MQTT only): byte-exact output, exit codes, stdin, signals.
proxyChecks("mqtt", async () => {
  const transports = brokerTransports("mqtt")
  return {
    coordinatorConfig: { transports },
    workerConfig: { transports },
    clientConfig: { transports },
  }
})
