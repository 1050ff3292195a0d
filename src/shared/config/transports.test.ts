import { describe, expect, test } from "bun:test"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as v from "valibot"
import { ConfigError } from "../errors.ts"
import { brokerWhere, resolveTransports, Transports } from "./transports.ts"

const dir = mkdtempSync(join(tmpdir(), "dffmpeg-transports-"))
const parse = (input: unknown) => v.parse(Transports, input)
const resolve = (input: unknown) => resolveTransports(parse(input), dir)
const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

describe("transports config", () => {
  test("absent or empty means HTTP only, and no broker is resolved", () => {
    expect(resolve(undefined)).toEqual({ enabled: ["http_polling"] })
    expect(resolve({ enabled_transports: [] })).toEqual({ enabled: ["http_polling"] })
  })

  test("a broker's defaults: loopback, the standard port, the reference's names", () => {
    const r = resolve({ enabled_transports: ["rabbitmq", "mqtt", "http_polling"] })
    expect(r.enabled).toEqual(["rabbitmq", "mqtt", "http_polling"])
    expect(r.mqtt).toEqual({ host: "127.0.0.1", port: 1883, use_tls: false, topic_prefix: "dffmpeg" })
    expect(r.rabbitmq).toEqual({
      host: "127.0.0.1",
      port: 5672,
      username: "guest",
      password: "guest",
      vhost: "/",
      use_tls: false,
      workers_exchange: "dffmpeg.workers",
      jobs_exchange: "dffmpeg.jobs",
      queue_prefix: "dffmpeg",
    })
  })

  test("TLS moves the default ports to 8883 and 5671; ca_file is read", () => {
    writeFileSync(join(dir, "ca.pem"), CA)
    const r = resolve({
      enabled_transports: ["mqtt", "rabbitmq"],
      defaults: { use_tls: true, ca_file: "ca.pem", host: "broker.lan" },
    })
    expect(r.mqtt).toMatchObject({ host: "broker.lan", port: 8883, use_tls: true, ca: CA })
    expect(r.rabbitmq).toMatchObject({ host: "broker.lan", port: 5671, use_tls: true, ca: CA })
  })

  test("defaults sit under each broker's own keys", () => {
    const r = resolve({
      enabled_transports: ["mqtt"],
      defaults: { host: "a", username: "u" },
      transport_settings: { mqtt: { host: "b", topic_prefix: "site/dff" } },
    })
    expect(r.mqtt).toMatchObject({ host: "b", username: "u", topic_prefix: "site/dff" })
  })

  test("a url gives host, port, credentials, TLS and the vhost; keys beside it may not say the same", () => {
    const r = resolve({
      enabled_transports: ["rabbitmq", "mqtt"],
      transport_settings: {
        rabbitmq: { url: "amqps://dff:p%40ss@rabbit.lan:5999/media" },
        mqtt: { url: "mqtt://[::1]" },
      },
    })
    expect(r.rabbitmq).toMatchObject({
      host: "rabbit.lan",
      port: 5999,
      username: "dff",
      password: "p@ss",
      use_tls: true,
      vhost: "media",
    })
    expect(r.mqtt).toMatchObject({ host: "::1", port: 1883, use_tls: false })
    expect(brokerWhere("mqtt", r.mqtt!)).toBe("mqtt://[::1]:1883")
    expect(brokerWhere("rabbitmq", r.rabbitmq!)).toBe("amqps://rabbit.lan:5999/media")
    expect(() =>
      resolve({ enabled_transports: ["mqtt"], transport_settings: { mqtt: { url: "mqtt://a", port: 1 } } }),
    ).toThrow("give either url or port")
  })

  test.each([
    [{ mqtt: { url: "http://a" } }, "mqtt", "url must start with mqtt:// or mqtts://"],
    [{ mqtt: { url: "mqtt://a/x" } }, "mqtt", "must not have a path"],
    [{ rabbitmq: { url: "amqp://a?x=1" } }, "rabbitmq", "must not have a query"],
    [{ rabbitmq: { url: "not a url" } }, "rabbitmq", "url is not a URL"],
    [{ mqtt: { password: "x", password_file: "p" } }, "mqtt", "either password or password_file"],
    [{ mqtt: { password_file: "missing" } }, "mqtt", "password_file"],
    [{ mqtt: { ca_file: "ca.pem" } }, "mqtt", "use_tls is false"],
  ])("refuses %j with a message naming the key", (settings, kind, message) => {
    writeFileSync(join(dir, "ca.pem"), CA)
    const err = (() => {
      try {
        resolve({ enabled_transports: [kind], transport_settings: settings })
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toContain(message)
    expect((err as Error).message).toContain(`transports.transport_settings.${kind}`)
  })

  test("password_file: read relative to the config file, one trailing newline dropped, empty refused", () => {
    writeFileSync(join(dir, "pw"), "s3cret\n")
    expect(
      resolve({ enabled_transports: ["rabbitmq"], transport_settings: { rabbitmq: { password_file: "pw" } } }).rabbitmq
        ?.password,
    ).toBe("s3cret")
    writeFileSync(join(dir, "empty"), "\n")
    expect(() =>
      resolve({ enabled_transports: ["rabbitmq"], transport_settings: { rabbitmq: { password_file: "empty" } } }),
    ).toThrow("is empty")
  })

  test("a broker that is not enabled is not read (its missing files are no error)", () => {
    expect(resolve({ transport_settings: { mqtt: { password_file: "missing" } } })).toEqual({
      enabled: ["http_polling"],
    })
  })

  test.each([
    [{ enabled_transports: ["nats"] }, "must be one of http_polling, mqtt, rabbitmq"],
    [{ enabled_transports: ["mqtt", "mqtt"] }, "names a transport twice"],
    [{ transport_settings: { mqtt: { topic_prefix: "a/#" } } }, "no wildcards"],
    [{ transport_settings: { mqtt: { topic_prefix: "" } } }, "no wildcards"],
    [{ transport_settings: { rabbitmq: { workers_exchange: "a b" } } }, "letters, digits"],
    [{ transport_settings: { mqtt: { port: 0 } } }, "Invalid value"],
  ])("the schema refuses %j", (input, message) => {
    const r = v.safeParse(Transports, input)
    expect(r.success).toBe(false)
    expect(r.issues!.map((i) => i.message).join("; ")).toContain(message)
  })
})
