import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConfigError } from "../../shared/errors.ts"
import { engineOfUrl, serverConnection, type ServerDatabaseConfig } from "./connection.ts"

const dir = mkdtempSync(join(tmpdir(), "dffmpeg-conn-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const TUNING = { pool_size: 10, connect_timeout_seconds: 5, notify_interval_ms: 50 }
const pg = (over: Partial<ServerDatabaseConfig> = {}) =>
  serverConnection({ engine: "postgres", ...TUNING, ...over } as ServerDatabaseConfig, dir)
const my = (over: Partial<ServerDatabaseConfig> = {}) =>
  serverConnection({ engine: "mysql", ...TUNING, ...over } as ServerDatabaseConfig, dir)

function refused(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).exitCode).toBe(3)
    return err as ConfigError
  }
  throw new Error("not refused")
}

describe("engineOfUrl", () => {
  test.each([
    ["postgres://h/d", "postgres"],
    ["postgresql://h/d", "postgres"],
    ["POSTGRES://h/d", "postgres"],
    ["mysql://h/d", "mysql"],
    ["mariadb://h/d", "mysql"],
    ["sqlite:./x.db", "sqlite"],
    ["sqlite:///abs/x.db", "sqlite"],
    ["redis://h/0", undefined],
    ["http://h/d", undefined],
    ["./x.db", undefined],
    ["", undefined],
  ])("%s → %s", (url, engine) => {
    expect(engineOfUrl(url)).toBe(engine as "postgres")
  })
})

describe("serverConnection", () => {
  test("defaults: 127.0.0.1, the engine's port, user and database dffmpeg, no password, no TLS", () => {
    expect(pg()).toEqual({
      engine: "postgres",
      host: "127.0.0.1",
      port: 5432,
      user: "dffmpeg",
      database: "dffmpeg",
      poolSize: 10,
      connectTimeoutMs: 5000,
      notifyIntervalMs: 50,
      display: "postgres://dffmpeg@127.0.0.1:5432/dffmpeg",
    })
    expect(my()).toMatchObject({ port: 3306, display: "mysql://dffmpeg@127.0.0.1:3306/dffmpeg" })
  })

  test("the url's parts, percent-decoded; the display masks the password", () => {
    const c = pg({ url: "postgresql://us%40er:p%40ss%3Aw%2Ford@db.lan:6543/my%20db" })
    expect(c).toMatchObject({ host: "db.lan", port: 6543, user: "us@er", password: "p@ss:w/ord", database: "my db" })
    expect(c.display).toBe("postgres://us%40er:***@db.lan:6543/my%20db")
    expect(c.display).not.toContain("ss")
    const m = my({ url: "mariadb://root:hunter2@[::1]/jobs" })
    expect(m).toMatchObject({ host: "::1", port: 3306, user: "root", password: "hunter2", database: "jobs" })
    expect(m.display).toBe("mysql://root:***@[::1]:3306/jobs")
  })

  test("each key beside the url overrides its part of it", () => {
    const c = pg({
      url: "postgres://a:b@h1:1111/d1",
      host: "h2",
      port: 2222,
      user: "u2",
      password: "p2",
      database: "d2",
    })
    expect(c).toMatchObject({ host: "h2", port: 2222, user: "u2", password: "p2", database: "d2" })
    expect(c.display).toBe("postgres://u2:***@h2:2222/d2")
    // An empty password is a password (shown masked), not none.
    expect(pg({ url: "postgres://a:b@h/d", password: "" })).toMatchObject({
      password: "",
      display: "postgres://a:***@h:5432/d",
    })
  })

  test("password_file: its first line, relative to the config's directory, winning over password and the url's", () => {
    writeFileSync(join(dir, "pw"), "s3cret\nsecond line\n")
    writeFileSync(join(dir, "pw-crlf"), "crlf-pw\r\n")
    writeFileSync(join(dir, "pw-bare"), "bare")
    expect(pg({ url: "postgres://a:b@h/d", password: "x", password_file: "pw" }).password).toBe("s3cret")
    expect(pg({ password_file: join(dir, "pw-crlf") }).password).toBe("crlf-pw")
    expect(pg({ password_file: "pw-bare" }).password).toBe("bare")
    const err = refused(() => pg({ password_file: "missing" }))
    expect(err.message).toBe(`database.password_file ${join(dir, "missing")} cannot be read: ENOENT`)
  })

  test.each([
    ["disable", undefined],
    ["false", undefined],
    ["require", { rejectUnauthorized: false }],
    ["prefer", { rejectUnauthorized: false }],
    ["no-verify", { rejectUnauthorized: false }],
    ["verify-ca", { rejectUnauthorized: true }],
    ["verify-full", { rejectUnauthorized: true }],
    ["true", { rejectUnauthorized: true }],
  ])("sslmode=%s in the url", (mode, ssl) => {
    const c = pg({ url: `postgres://h/d?sslmode=${mode}` })
    expect(c.ssl).toEqual(ssl)
    expect(c.display.endsWith(" (TLS)")).toBe(ssl !== undefined)
    expect(my({ url: `mysql://h/d?ssl=${mode}` }).ssl).toEqual(ssl)
  })

  test("an sslmode it does not know is refused, naming the ones it does", () => {
    expect(refused(() => pg({ url: "postgres://h/d?sslmode=maybe" })).message).toBe(
      "database.url sslmode=maybe is not one of disable, require, verify-ca, verify-full",
    )
  })

  test("the ssl key overrides the url's sslmode: false, true, or a mapping with a CA file", () => {
    writeFileSync(join(dir, "ca.pem"), "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    expect(pg({ url: "postgres://h/d?sslmode=require", ssl: false }).ssl).toBeUndefined()
    expect(pg({ url: "postgres://h/d?sslmode=disable", ssl: true }).ssl).toEqual({ rejectUnauthorized: true })
    expect(pg({ ssl: { ca_file: "ca.pem", reject_unauthorized: true } }).ssl).toEqual({
      rejectUnauthorized: true,
      ca: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
    })
    expect(pg({ ssl: { reject_unauthorized: false } }).ssl).toEqual({ rejectUnauthorized: false })
    expect(refused(() => pg({ ssl: { ca_file: "no-ca.pem", reject_unauthorized: true } })).message).toBe(
      `database.ssl.ca_file ${join(dir, "no-ca.pem")} cannot be read: ENOENT`,
    )
  })

  test("a url of the other engine (or none) is refused, naming the schemes that fit, without the password", () => {
    const a = refused(() => pg({ url: "mysql://u:hunter2@h/d" }))
    expect(a.message).toBe('database.url "mysql:" does not name engine postgres (use postgres:// or postgresql://)')
    const b = refused(() => my({ url: "postgresql://u:hunter2@h/d" }))
    expect(b.message).toBe('database.url "postgresql:" does not name engine mysql (use mysql:// or mariadb://)')
    expect(refused(() => my({ url: "http://u:hunter2@h/d" })).message).not.toContain("hunter2")
  })

  test("port 0 is refused", () => {
    expect(refused(() => pg({ url: "postgres://h:0/d" })).message).toBe("database.port must not be 0")
  })
})
