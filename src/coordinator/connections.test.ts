import { describe, expect, test } from "bun:test"
import * as v from "valibot"
import { CoordinatorConfig } from "../shared/config/server-schema.ts"
import { TooManyError } from "../shared/errors.ts"
import { createConnections } from "./connections.ts"

const limits = (over: Record<string, number> = {}) => v.parse(CoordinatorConfig, { limits: over }).limits
const live = () => new AbortController().signal

describe("createConnections", () => {
  test("dashboard: the 9th from one address is refused (429, naming the key); one closed lets the next in", () => {
    const c = createConnections(limits())
    const held = Array.from({ length: 8 }, () => c.dashboard("10.0.0.1", live()))
    let err: unknown
    try {
      c.dashboard("10.0.0.1", live())
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TooManyError)
    expect((err as TooManyError).status).toBe(429)
    expect((err as Error).message).toMatch(/from 10\.0\.0\.1.*max_dashboard_connections_per_ip/)
    // Another address is not affected, and a refusal took nothing.
    c.dashboard("10.0.0.2", live())
    expect(c.open("dashboardIp", "10.0.0.1")).toBe(8)
    held[3]()
    held[3]() // a second release gives back nothing more
    expect(c.open("dashboardIp", "10.0.0.1")).toBe(7)
    c.dashboard("10.0.0.1", live())
    expect(() => c.dashboard("10.0.0.1", live())).toThrow(TooManyError)
  })

  test("dashboard: the total is capped across addresses", () => {
    const c = createConnections(limits({ max_dashboard_connections: 3 }))
    for (const ip of ["a", "b", "c"]) c.dashboard(ip, live())
    expect(() => c.dashboard("d", live())).toThrow(/max_dashboard_connections\b/)
    expect(c.open("dashboardIp", "d")).toBe(0)
  })

  test("an aborted request gives its slot back without a release call", () => {
    const c = createConnections(limits({ max_polls_per_worker: 1 }))
    const ac = new AbortController()
    c.poll("w1", ac.signal)
    expect(() => c.poll("w1", live())).toThrow(
      /worker w1 already has 1 long polls open \(limits.max_polls_per_worker\)/,
    )
    ac.abort()
    expect(c.open("poll", "w1")).toBe(0)
    expect(c.open("identity", "w1")).toBe(0)
    c.poll("w1", live())
    // Already aborted: counted and given back at once.
    const gone = new AbortController()
    gone.abort()
    const c2 = createConnections(limits({ max_polls_per_worker: 1 }))
    c2.poll("w1", gone.signal)
    expect(c2.open("poll", "w1")).toBe(0)
  })

  test("streams: per job and per identity; input streams count only per identity", () => {
    const c = createConnections(limits({ max_streams_per_job: 2, max_streams_per_identity: 3 }))
    const a = c.stream("J1", "alice", live())
    c.stream("J1", "bob", live())
    expect(() => c.stream("J1", "carol", live())).toThrow(
      /job J1 already has 2 output streams open \(limits.max_streams_per_job\)/,
    )
    c.stream("J2", "alice", live())
    c.stream(undefined, "alice", live())
    expect(() => c.stream("J3", "alice", live())).toThrow(
      /alice already holds 3 open streams and polls \(limits.max_streams_per_identity\)/,
    )
    // The refusal on identity took no job slot.
    expect(c.open("job", "J3")).toBe(0)
    a()
    c.stream("J3", "alice", live())
    expect(c.open("job", "J1")).toBe(1)
  })
})
