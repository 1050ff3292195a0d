import { decodeFrames, frameJson, Kind, type Frame } from "../../src/shared/protocol/frames.ts"
import type { ExitReport, WorkerRegistration } from "../../src/shared/protocol/schemas.ts"
import type { Assignment } from "../../src/shared/protocol/worker.ts"
import type { HostLoad } from "../../src/shared/protocol/host-load.ts"
import type {
  HeartbeatReply,
  HeldJob,
  RegisterReply,
  UploadAnswer,
  WorkBatch,
  WorkerTransport,
} from "../../src/transports/types.ts"

const dec = new TextDecoder()

/** Arguments of a real ffmpeg that runs for `seconds` in real time (-re) and writes nothing. */
export const pacedFfmpeg = (seconds: number): string[] =>
  `-hide_banner -nostats -re -f lavfi -i sine=duration=${seconds} -f null -`.split(" ")

/** A one-shot signal: `wait()` resolves at the next `fire()`, or after `ms`. */
class Bell {
  private waiters: (() => void)[] = []
  fire() {
    for (const w of this.waiters.splice(0)) w()
  }
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t)
        signal?.removeEventListener("abort", done)
        resolve()
      }
      const t = setTimeout(done, ms)
      signal?.addEventListener("abort", done, { once: true })
      this.waiters.push(done)
    })
  }
}

/** Per call, what to throw instead of answering (once each, in order), or `always`. */
type Faults = { once: unknown[]; always?: unknown }

/**
 * An in-memory worker half (src/transports/types.ts) for unit tests of the worker loop and runner: the
 * test offers assignments, feeds downlinks and injects typed errors; every call is recorded.
 */
export class FakeTransport implements WorkerTransport {
  readonly kind = "fake"
  readonly url = "fake://coordinator"
  // Heartbeats every 0.25 s: the worker fences itself after two silent intervals, and a loaded 2-core
  // machine can stall the event loop for over 0.1 s (a 0.05 s interval fenced a `-version` job there).
  timing: RegisterReply = { pollWaitSeconds: 0.05, heartbeatSeconds: 0.25, registrationSeconds: 60 }
  readonly registrations: WorkerRegistration[] = []
  readonly calls: string[] = []
  readonly starts: (HeldJob & { note?: string })[] = []
  readonly rejects: HeldJob[] = []
  readonly heartbeats: HeldJob[][] = []
  /** The host load each heartbeat carried (undefined: none). */
  readonly loads: (HostLoad | undefined)[] = []
  /** Decoded uploaded frames per job, in upload order (retried batches count once per accepted call). */
  readonly uploads = new Map<string, Frame[]>()
  /** Held jobs the next heartbeats answer as stale. */
  stale: HeldJob[] = []
  /** Answer polls as a coordinator before lazy downlinks did: no `downlink` field. */
  legacy = false
  /** The `following` list each poll sent, in order. */
  readonly followed: string[][] = []
  readonly faults: Record<"register" | "start" | "upload" | "input" | "heartbeat" | "poll", Faults> = {
    register: { once: [] },
    start: { once: [] },
    upload: { once: [] },
    input: { once: [] },
    heartbeat: { once: [] },
    poll: { once: [] },
  }
  private offered: Assignment[] = []
  private readonly epochs = new Map<string, number>()
  private readonly work = new Bell()
  private readonly downlinks = new Map<string, { frames: Frame[]; ended: boolean; bell: Bell }>()
  private readonly changed = new Bell()

  private fault(call: keyof FakeTransport["faults"]): void {
    const f = this.faults[call]
    const err = f.once.length ? f.once.shift() : f.always
    if (err !== undefined) throw err
  }
  private record(what: string) {
    this.calls.push(what)
    this.changed.fire()
  }

  /** Offers `a` in the next batch of the assignment stream. */
  offer(a: Assignment): void {
    this.offered.push(a)
    this.epochs.set(a.id, a.epoch)
    this.work.fire()
  }
  /** Job `id` runs on this worker at `epoch` as the coordinator sees it, though it was never offered here. */
  running(id: string, epoch: number): void {
    this.epochs.set(id, epoch)
  }
  /**
   * Queues a downlink frame for job `id`; `end` ends its downlink (the job ended). As the coordinator
   * does, the next poll names the job (`downlink`) unless the worker says it follows it already.
   */
  send(id: string, frame: Omit<Frame, "seq"> & { seq?: number }, end = false): void {
    const d = this.downlink(id)
    d.frames.push({ seq: d.frames.length + 1, ...frame })
    d.ended ||= end
    d.bell.fire()
    this.work.fire()
  }
  /** The exit report the job uploaded, if any. */
  exitOf(id: string): ExitReport | undefined {
    const f = this.uploads.get(id)?.find((x) => x.kind === Kind.exit)
    return f && (frameJson(f) as ExitReport)
  }
  /** The text of the job's uploaded stdout or stderr, in order. */
  text(id: string, kind: number): string {
    return (this.uploads.get(id) ?? [])
      .filter((f) => f.kind === kind)
      .map((f) => dec.decode(f.data))
      .join("")
  }
  /** Waits until `check()` holds (re-checked after every call), at most `ms`. */
  async until(check: () => boolean, ms = 10_000): Promise<void> {
    const end = performance.now() + ms
    while (!check()) {
      if (performance.now() > end) throw new Error(`condition not met within ${ms} ms; calls: ${this.calls.join(" ")}`)
      await this.changed.wait(50)
    }
  }
  private downlink(id: string) {
    let d = this.downlinks.get(id)
    if (!d) this.downlinks.set(id, (d = { frames: [], ended: false, bell: new Bell() }))
    return d
  }

  async register(reg: WorkerRegistration): Promise<RegisterReply> {
    this.record("register")
    this.fault("register")
    this.registrations.push(reg)
    return this.timing
  }
  async verify(_token: string): Promise<void> {
    this.record("verify")
  }
  async deregister(): Promise<void> {
    this.record("deregister")
  }
  async *assignments(
    waitSeconds: () => number,
    signal: AbortSignal,
    following?: () => string[],
  ): AsyncIterable<WorkBatch> {
    while (!signal.aborted) {
      this.record("poll")
      this.fault("poll")
      const follows = following?.()
      if (follows) this.followed.push(follows)
      const due = () =>
        this.legacy || !follows
          ? []
          : [...this.downlinks]
              .filter(([id, d]) => d.frames.length && !follows.includes(id) && this.epochs.has(id))
              .map(([id]) => ({ id, epoch: this.epochs.get(id)! }))
      if (!this.offered.length && !due().length) await this.work.wait(waitSeconds() * 1000, signal)
      if (signal.aborted) return
      const jobs = this.offered.splice(0)
      yield this.legacy ? { jobs } : { jobs, downlink: due() }
    }
  }
  async heartbeat(held: HeldJob[], hostLoad?: HostLoad): Promise<HeartbeatReply> {
    this.record("heartbeat")
    this.fault("heartbeat")
    this.heartbeats.push(held)
    this.loads.push(hostLoad)
    const stale = this.stale.filter((s) => held.some((h) => h.id === s.id && h.epoch === s.epoch))
    return { stale, reregister: false }
  }
  async reject(job: string, epoch: number): Promise<void> {
    this.record(`reject:${job}`)
    this.rejects.push({ id: job, epoch })
  }
  async start(job: string, epoch: number, note?: string): Promise<void> {
    this.record(`start:${job}`)
    this.fault("start")
    this.starts.push({ id: job, epoch, note })
  }
  async upload(job: string, _epoch: number, frames: Uint8Array): Promise<UploadAnswer> {
    this.record(`upload:${job}`)
    this.fault("upload")
    const list = this.uploads.get(job) ?? []
    // Repeated sequence numbers are dropped, as the coordinator does.
    const last = Math.max(0, ...list.filter((f) => f.seq > 0).map((f) => f.seq))
    for (const f of decodeFrames(frames)) if (f.seq === 0 || f.seq > last) list.push(f)
    this.uploads.set(job, list)
    // The job's end ends its downlink, as the coordinator's does once the end committed.
    if (list.some((f) => f.kind === Kind.exit)) {
      const d = this.downlink(job)
      d.ended = true
      d.bell.fire()
    }
    this.changed.fire()
    // Nothing is held here: what was sent is durable at once.
    return { durable: last }
  }
  async *input(job: string, _epoch: number, after: number, signal: AbortSignal): AsyncIterable<Frame> {
    this.record(`input:${job}`)
    this.fault("input")
    const d = this.downlink(job)
    let cursor = after
    while (!signal.aborted) {
      const next = d.frames.filter((f) => f.seq > cursor)
      for (const f of next) {
        cursor = f.seq
        yield f
      }
      if (d.ended) return this.record(`input-ended:${job}`)
      if (!next.length) await d.bell.wait(1000, signal)
    }
    // The worker cut it (an aborted request: over HTTP, its connection is closed, not pooled).
    this.record(`input-cut:${job}`)
  }
}
