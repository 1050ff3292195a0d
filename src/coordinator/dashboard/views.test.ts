import { describe, expect, test } from "bun:test"
import { T0 } from "../../../test/helpers/fixtures.ts"
import type { Worker } from "../../shared/protocol/schemas.ts"
import { workerView } from "./views.ts"

describe("workerView", () => {
  test("a worker's capabilities as counts and hwaccels, with its labels and weight; never the lists", () => {
    const names = (n: number, p: string) => Array.from({ length: n }, (_, i) => `${p}${i}`)
    const w: Worker = {
      id: "gpu1",
      binaries: ["ffmpeg"],
      paths: [],
      maxJobs: 2,
      version: "0.1.0",
      capabilities: {},
      tools: {
        ffmpeg: {
          version: "6.0.1-Jellyfin",
          encoders: names(180, "e"),
          decoders: names(480, "d"),
          hwaccels: ["cuda"],
          hwDevices: ["cuda"],
          filters: names(450, "f"),
          muxers: names(170, "m"),
          demuxers: names(350, "x"),
        },
      },
      labels: { gpu: "nvidia" },
      weight: 2,
      maxProbeJobs: 4,
      status: "online",
      registeredAt: T0,
      lastSeen: T0,
      drainRequested: false,
    }
    const view = workerView(w, 0, T0, 10_000)
    expect(view.tools).toEqual({
      ffmpeg: { version: "6.0.1-Jellyfin", encoders: 180, decoders: 480, filters: 450, hwaccels: ["cuda"] },
    })
    expect(view.labels).toEqual({ gpu: "nvidia" })
    expect(view.weight).toBe(2)
    expect(JSON.stringify(view).length).toBeLessThan(1000)
  })
})

describe("hostLoad", () => {
  const base: Worker = {
    id: "w1",
    binaries: ["ffmpeg"],
    paths: [],
    maxJobs: 1,
    version: "0.1.0",
    capabilities: {},
    tools: {},
    labels: {},
    weight: 1,
    maxProbeJobs: 4,
    status: "online",
    registeredAt: T0,
    lastSeen: T0,
    drainRequested: false,
  }
  const load = {
    at: "2026-12-03T12:00:00.000Z",
    cpuPercent: 37.5,
    load1: 1.25,
    cpus: 8,
    memUsedBytes: 3 * 2 ** 30,
    memTotalBytes: 16 * 2 ** 30,
    gpus: [{ name: "NVIDIA T400", utilPercent: 40, memUsedBytes: 2 ** 30, memTotalBytes: 2 * 2 ** 30 }],
  }

  test("a worker record that carries hostLoad passes it through to the view", () => {
    expect(workerView({ ...base, hostLoad: load } as Worker, 0, T0, 10_000).hostLoad).toEqual(load)
  })

  // The coordinator checks a heartbeat's load before storing it (shared/protocol/host-load.ts and its
  // tests): the view passes the stored one on, or null.
  test("a record without it shows none (null)", () => {
    expect(workerView(base, 0, T0, 10_000).hostLoad).toBeNull()
  })
})
