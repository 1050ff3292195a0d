import { afterEach, describe, expect, test } from "bun:test"
import * as v from "valibot"
import { FakeTransport, pacedFfmpeg } from "../../test/helpers/fake-transport.ts"
import { WorkerConfig } from "../shared/config/server-schema.ts"
import { AuthError, IdentityInUseError } from "../shared/errors.ts"
import { createLogger } from "../shared/log.ts"
import { Kind } from "../shared/protocol/frames.ts"
import type { Assignment } from "../shared/protocol/worker.ts"
import { ProtocolError, TransportUnavailableError, UnknownWorkerError } from "../transports/types.ts"
import { startWorker, type WorkerService } from "./index.ts"

let n = 0
const assignment = (args: string[]): Assignment => ({
  id: `01M8DFWFMJ6MS7ZZYSM5GE${String(++n).padStart(4, "0")}`,
  epoch: 1,
  binary: "ffmpeg",
  args,
  paths: [],
  cwd: null,
  stdin: false,
})
/** A job that runs until it is stopped (a real ffmpeg, paced in real time). */
const LONG = pacedFfmpeg(60)

/** Unconfined, no argument policy, short intervals: the loop's own behaviour against the fake transport. */
function config(over: Record<string, unknown> = {}): WorkerConfig {
  return v.parse(WorkerConfig, {
    client_id: "w1",
    binaries: { ffmpeg: "ffmpeg" },
    sandbox: "none",
    allow_root: true,
    argument_policy: false,
    max_jobs: 2,
    min_drain_time_seconds: 0,
    mount_check_interval_seconds: 60,
    ...over,
  })
}

let services: WorkerService[] = []
afterEach(async () => {
  for (const s of services) await s.stop(true)
  services = []
})
async function start(t: FakeTransport, over: Record<string, unknown> = {}): Promise<WorkerService> {
  const svc = await startWorker(config(over), { log: createLogger({ level: "error" }), base: "/", transport: t })
  services.push(svc)
  return svc
}

describe("startWorker against a fake transport", () => {
  test("registers what it can run, then runs each assignment: start, output, exit", async () => {
    const t = new FakeTransport()
    await start(t)
    expect(t.registrations[0]).toMatchObject({ draining: false, binaries: ["ffmpeg"], maxJobs: 2 })
    expect(t.registrations[0].capabilities).toMatchObject({ sandbox: "none" })
    const a = assignment(["-hide_banner", "-version"])
    t.offer(a)
    await t.until(() => t.exitOf(a.id) !== undefined)
    expect(t.starts).toEqual([{ id: a.id, epoch: 1 }])
    expect(t.text(a.id, Kind.stdout)).toContain("ffmpeg version")
    expect(t.exitOf(a.id)).toEqual({ code: 0, signal: null })
  })

  test("a job without stdin follows its downlink only once a poll names it, then says at each poll it follows it", async () => {
    const t = new FakeTransport()
    await start(t, { binaries: { ffmpeg: "/bin/sh" } })
    const a = assignment(["-c", "trap 'echo got' USR1; echo ready; while :; do sleep 0.05; done"])
    t.offer(a)
    await t.until(() => t.text(a.id, Kind.stdout).includes("ready"))
    const polls = () => t.calls.filter((c) => c === "poll").length
    const before = polls()
    await t.until(() => polls() >= before + 2)
    expect(t.calls).not.toContain(`input:${a.id}`)
    t.send(a.id, { kind: Kind.signal, data: new TextEncoder().encode("SIGUSR1") })
    await t.until(() => t.text(a.id, Kind.stdout).includes("got"))
    const after = polls()
    await t.until(() => polls() >= after + 2)
    expect(t.followed.at(-1)).toEqual([a.id])
    expect(t.calls.filter((c) => c.startsWith("input:"))).toEqual([`input:${a.id}`])
  })

  test("a downlink named for a job the worker does not run is named back as followed, not asked for again and again", async () => {
    const t = new FakeTransport()
    await start(t)
    const lost = assignment([])
    t.running(lost.id, lost.epoch)
    t.send(lost.id, { kind: Kind.signal, data: new TextEncoder().encode("SIGINT") })
    const named = t.followed.length
    await t.until(() => t.followed.length >= named + 3)
    expect(t.followed.slice(named + 1).every((f) => f.includes(lost.id))).toBe(true)
    expect(t.calls).not.toContain(`input:${lost.id}`)
  })

  test("behind a coordinator that names no downlinks (an older one) every job follows its downlink at once", async () => {
    const t = new FakeTransport()
    t.legacy = true
    await start(t, { binaries: { ffmpeg: "/bin/sh" } })
    const a = assignment(["-c", "trap 'echo got; exit 7' USR1; echo ready; while :; do sleep 0.05; done"])
    t.offer(a)
    // Trapped before the signal comes: USR1 would kill the shell otherwise.
    await t.until(() => t.calls.includes(`input:${a.id}`) && t.text(a.id, Kind.stdout).includes("ready"))
    t.send(a.id, { kind: Kind.signal, data: new TextEncoder().encode("SIGUSR1") })
    await t.until(() => t.exitOf(a.id) !== undefined)
    expect(t.exitOf(a.id)).toEqual({ code: 7, signal: null })
  })

  test("registers its detected tools (minus what config removes), labels and weight, and again on re-registration", async () => {
    const t = new FakeTransport()
    t.timing = { ...t.timing, registrationSeconds: 0.1 }
    await start(t, { labels: { gpu: "none" }, weight: 3, remove_capabilities: { encoders: ["libx264"] } })
    const first = t.registrations[0]!
    expect(first).toMatchObject({ labels: { gpu: "none" }, weight: 3 })
    expect(first.tools?.ffmpeg?.version).toMatch(/^\d+\.\d+/)
    expect(first.tools?.ffmpeg?.encoders).toContain("aac")
    expect(first.tools?.ffmpeg?.encoders).not.toContain("libx264")
    await t.until(() => t.registrations.length >= 2)
    expect(t.registrations[1]!.tools).toEqual(first.tools)
  })

  test("an outage at the first registration is retried; a refused key is fatal", async () => {
    const t = new FakeTransport()
    t.faults.register.once.push(new TransportUnavailableError("cannot reach the coordinator"))
    await start(t)
    expect(t.calls.filter((c) => c === "register").length).toBe(2)

    const refused = new FakeTransport()
    refused.faults.register.always = new AuthError("unknown identity w1")
    await expect(start(refused)).rejects.toBeInstanceOf(AuthError)
  })

  test("a garbled reply to the first registration is retried after a pause, not fatal", async () => {
    const t = new FakeTransport()
    t.faults.register.once.push(new ProtocolError("coordinator sent invalid JSON (HTTP 200)"))
    await start(t)
    expect(t.calls.filter((c) => c === "register").length).toBe(2)
  })

  test("heartbeats report the jobs it holds", async () => {
    const t = new FakeTransport()
    await start(t)
    const a = assignment(LONG)
    t.offer(a)
    await t.until(() => t.heartbeats.some((h) => h.some((j) => j.id === a.id && j.epoch === 1)))
  })

  test("a job the heartbeat calls stale is killed without reporting", async () => {
    const t = new FakeTransport()
    await start(t)
    const a = assignment(LONG)
    t.offer(a)
    await t.until(() => t.heartbeats.some((h) => h.some((j) => j.id === a.id)))
    t.stale = [{ id: a.id, epoch: 1 }]
    // Held no more: the process is gone.
    await t.until(() => t.heartbeats.at(-1)!.length === 0 && t.heartbeats.length > 0)
    expect(t.exitOf(a.id)).toBeUndefined()
  })

  test("a coordinator that forgot the worker makes it register again", async () => {
    const t = new FakeTransport()
    await start(t)
    t.faults.poll.once.push(new UnknownWorkerError("worker w1 is not registered; register first"))
    await t.until(() => t.calls.filter((c) => c === "register").length >= 2)
  })

  test("an assignment beyond max_jobs (or max_probe_jobs in its lane) is given back, never started", async () => {
    const t = new FakeTransport()
    await start(t, { max_jobs: 1, max_probe_jobs: 1 })
    const first = { ...assignment(LONG), lane: "transcode" as const }
    t.offer(first)
    await t.until(() => t.starts.length === 1)
    // A second transcode while the first runs: over max_jobs 1. A probe has a slot of its own.
    const over = { ...assignment(LONG), lane: "transcode" as const }
    const probe = { ...assignment(LONG), lane: "probe" as const }
    const overProbe = { ...assignment(LONG), lane: "probe" as const }
    t.offer(over)
    t.offer(probe)
    await t.until(() => t.starts.length === 2)
    t.offer(overProbe)
    await t.until(() => t.rejects.length === 2)
    expect(t.rejects).toEqual([
      { id: over.id, epoch: 1 },
      { id: overProbe.id, epoch: 1 },
    ])
    expect(t.starts.map((s) => s.id)).toEqual([first.id, probe.id])
  }, 30_000)

  test("draining: registers as draining, gives back assignments, waits for running jobs, then deregisters", async () => {
    const t = new FakeTransport()
    const svc = await start(t, { min_drain_time_seconds: 1 })
    const running = assignment(pacedFfmpeg(0.5))
    t.offer(running)
    await t.until(() => t.starts.length === 1)
    const stopped = svc.stop()
    await t.until(() => t.registrations.at(-1)!.draining === true)
    const late = assignment(["-hide_banner", "-version"])
    t.offer(late)
    await t.until(() => t.rejects.length === 1)
    expect(t.rejects).toEqual([{ id: late.id, epoch: 1 }])
    await stopped
    expect(t.starts.map((s) => s.id)).toEqual([running.id])
    expect(t.exitOf(running.id)).toBeDefined()
    expect(t.calls.at(-1)).toBe("deregister")
  })
})

describe("one identity, one worker: the worker's side", () => {
  const inUse = (d: {
    lastSeen: number
    pollOpen?: boolean
    pollClosedAt?: number | null
    retryAfterSeconds?: number
  }) =>
    new IdentityInUseError("worker identity w1 is already served by a live worker on host a (pid 7, instance I)", {
      identity: "w1",
      instance: "01J0000000000000000000000A",
      host: "a",
      pid: 7,
      pollOpen: false,
      pollClosedAt: null,
      retryAfterSeconds: 1,
      ...d,
    })

  test("heartbeats carry the host load only to a coordinator that said it takes it", async () => {
    const older = new FakeTransport()
    await start(older)
    await older.until(() => older.loads.length >= 2)
    expect(older.loads.every((l) => l === undefined)).toBe(true)
    const newer = new FakeTransport()
    newer.timing = { ...newer.timing, hostLoad: true }
    await start(newer)
    await newer.until(() => newer.loads.length >= 2)
    expect(newer.loads.at(-1)).toMatchObject({ cpus: expect.any(Number), memTotalBytes: expect.any(Number), gpus: [] })
  })

  test("names its process in every registration", async () => {
    const t = new FakeTransport()
    await start(t)
    const inst = t.registrations[0].instance!
    expect(inst.pid).toBe(process.pid)
    expect(inst.host.length).toBeGreaterThan(0)
    expect(inst.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/)
  })

  test("a second live process: the one serving is heard from since the first refusal, so it gives up", async () => {
    const t = new FakeTransport()
    t.faults.register.once.push(inUse({ lastSeen: 1000, pollOpen: true }), inUse({ lastSeen: 1500, pollOpen: true }))
    const err = await start(t).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(IdentityInUseError)
    expect(t.calls.filter((c) => c === "register")).toHaveLength(2)
    expect(t.calls).not.toContain("deregister")
  })

  test("a crashed predecessor: waits while it may come back (its poll's close being written is not a sign of life), then takes over", async () => {
    const t = new FakeTransport()
    t.faults.register.once.push(
      inUse({ lastSeen: 1000, pollOpen: true }),
      // The coordinator wrote the dead one's poll close: last seen then, not since.
      inUse({ lastSeen: 1200, pollClosedAt: 1200 }),
      inUse({ lastSeen: 1200, pollClosedAt: 1200 }),
    )
    await start(t)
    expect(t.calls.filter((c) => c === "register")).toHaveLength(4)
    expect(t.registrations).toHaveLength(1)
  })

  test("gives up once the wait it was told is over and the other still holds the identity", async () => {
    const t = new FakeTransport()
    t.faults.register.always = inUse({ lastSeen: 1000, pollClosedAt: 1000, retryAfterSeconds: 0 })
    const err = await start(t).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(IdentityInUseError)
    expect(t.calls.filter((c) => c === "register").length).toBeGreaterThan(1)
  })

  test("running, told another process serves the identity now: gives its jobs up and ends with the error", async () => {
    const t = new FakeTransport()
    const svc = await start(t)
    const a = assignment(LONG)
    t.offer(a)
    await t.until(() => t.starts.length === 1)
    t.faults.heartbeat.once.push(inUse({ lastSeen: 1 }))
    const err = await svc.done.then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(IdentityInUseError)
    expect(t.exitOf(a.id)?.abandoned).toContain("shut down")
  })
})
