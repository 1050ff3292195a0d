import { expect, test } from "bun:test"
import { flatten } from "./config.ts"

test("flatten: dotted keys, secrets as ***, URL passwords masked, lists of blocks by index", () => {
  const out = flatten({
    client_id: "c1",
    hmac_key: "c2VjcmV0",
    hmac_key_file: "c1.key",
    database: { engine: "postgres", url: "postgres://u:pw@db/x", password: "pw", password_file: "pw.txt" },
    transports: { mqtt: { url: "mqtts://bob:hunter2@broker:8883", password: "hunter2" }, enabled_transports: ["mqtt"] },
    coordinator: [
      { host: "a", port: 1 },
      { host: "b", port: 2 },
    ],
    allowed_hosts: ["http://u:p@x", "y"],
    empty: {},
    unset: undefined,
  })
  expect(out).toEqual({
    client_id: "c1",
    hmac_key: "***",
    hmac_key_file: "c1.key",
    "database.engine": "postgres",
    "database.url": "postgres://u:***@db/x",
    "database.password": "***",
    "database.password_file": "pw.txt",
    "transports.mqtt.url": "mqtts://bob:***@broker:8883",
    "transports.mqtt.password": "***",
    "transports.enabled_transports": ["mqtt"],
    "coordinator.0.host": "a",
    "coordinator.0.port": 1,
    "coordinator.1.host": "b",
    "coordinator.1.port": 2,
    allowed_hosts: ["http://u:***@x", "y"],
    unset: undefined,
  })
  expect(JSON.stringify(out)).not.toContain("hunter2")
  expect(JSON.stringify(out)).not.toContain("c2VjcmV0")
})
