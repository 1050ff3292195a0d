import { describe, expect, test } from "bun:test"
import { hostname } from "node:os"
import { UsageError } from "../../../shared/errors.ts"
import { ttlArg } from "./dashboard-link.ts"
import { listenOrigin } from "./_local.ts"

describe("dashboard-link", () => {
  test("--ttl: seconds, minutes or hours from 10 s to 24 h; 10 minutes by default", () => {
    expect(ttlArg(undefined)).toBe(600_000)
    expect(ttlArg("90")).toBe(90_000)
    expect(ttlArg("90s")).toBe(90_000)
    expect(ttlArg("1.5m")).toBe(90_000)
    expect(ttlArg("24h")).toBe(86_400_000)
    for (const bad of ["9s", "25h", "", "10 m", "-1m", "1d", "abc"]) expect(() => ttlArg(bad)).toThrow(UsageError)
  })

  test("local mode's origin: the running coordinator's address, else the config's; a wildcard is this host", () => {
    const cfg = { host: "127.0.0.1", port: 8000, tls: undefined }
    expect(listenOrigin(cfg)).toBe("http://127.0.0.1:8000")
    expect(listenOrigin(cfg, "http://127.0.0.1:41234")).toBe("http://127.0.0.1:41234")
    expect(listenOrigin({ ...cfg, host: "::1" })).toBe("http://[::1]:8000")
    expect(listenOrigin({ ...cfg, host: "0.0.0.0" })).toBe(`http://${hostname()}:8000`)
    expect(listenOrigin(cfg, "https://0.0.0.0:8443")).toBe(`https://${hostname()}:8443`)
  })
})
