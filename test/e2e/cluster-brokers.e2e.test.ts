import { test } from "bun:test"
import { brokerTransports } from "../helpers/brokers.ts"
import { twoCoordinatorRun } from "../helpers/two-coordinators.ts"

// Issue 15: issue 14's run with every request of workers and callers through a broker, which hands each
// to one of two coordinators on one database; kill -9 of one mid-run. Every job completes exactly once
// with local ffmpeg's bytes, max_jobs never exceeded, and both coordinators served submissions.
test("MQTT, 2 coordinators on PostgreSQL, 120 jobs, kill -9 of one: each completes once with local ffmpeg's bytes", async () => {
  await twoCoordinatorRun("postgres", { jobs: 120, killAfter: 40, transports: brokerTransports("mqtt") })
}, 300_000)

// With the RabbitMQ notifier: the two coordinators wake each other through the broker, not MariaDB's changes.
test("RabbitMQ (also the notifier), 2 coordinators on MariaDB, 120 jobs, kill -9 of one: each completes once with local ffmpeg's bytes", async () => {
  await twoCoordinatorRun("mysql", {
    jobs: 120,
    killAfter: 40,
    transports: brokerTransports("rabbitmq"),
    notifier: "rabbitmq",
  })
}, 300_000)
