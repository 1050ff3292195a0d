/**
 * A second store instance on the same SQLite file, in its own thread: what another coordinator (or
 * `dffmpeg admin`) sharing the database is. Two instances in one thread cannot race for real:
 * bun:sqlite is synchronous, so while one holds the write lock the other's busy wait blocks the only
 * thread for the whole busy timeout and then fails with "database is locked". In a Worker each side
 * has its own thread, so they contend through SQLite's locks exactly as two processes do.
 *
 * This file is both the main-thread client (`openPeer`) and the worker's script.
 */
import { createLogger } from "../../src/shared/log.ts"
import { createJanitor, type JanitorReport, type Timings } from "../../src/coordinator/janitor.ts"
import { createSqliteStore } from "../../src/store/sqlite/index.ts"
import type { Store } from "../../src/store/types.ts"

type Method = Exclude<keyof Store, "kind" | "shared">
export type Call = { [M in Method]: [M, Parameters<Store[M]>] }[Method]
export type Settled = { ok: true; value: unknown } | { ok: false; error: string }

export interface JanitorOptions {
  now: number
  startedAt: number
  timings: Timings
}

type Request =
  | { id: number; op: "open"; path: string }
  | { id: number; op: "call"; call: Call }
  | { id: number; op: "race"; calls: Call[]; barrier: SharedArrayBuffer }
  | { id: number; op: "janitor"; opts: JanitorOptions; barrier: SharedArrayBuffer }
  | { id: number; op: "close" }
type Body = Request extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never
type Reply =
  | { id: number; ready: true }
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string }

export interface Peer {
  /** One store call in the peer thread. */
  call<M extends Method>(method: M, ...args: Parameters<Store[M]>): Promise<Awaited<ReturnType<Store[M]>>>
  /**
   * Starts `calls` all at once (Promise.all) in the peer thread and, at the same instant, `local()` in
   * this one (the peer waits on a shared barrier until this thread is ready). Resolves with the peer's
   * settled results and `local()`'s value.
   */
  race<T>(calls: Call[], local: () => Promise<T>): Promise<{ peer: Settled[]; local: T }>
  /** Runs one janitor pass in the peer thread over its store, started together with `local()`. */
  janitorRace<T>(opts: JanitorOptions, local: () => Promise<T>): Promise<{ peer: JanitorReport; local: T }>
  close(): Promise<void>
}

const isWorker = !Bun.isMainThread

async function invoke(store: Store, [method, args]: Call): Promise<unknown> {
  return (store[method] as (...a: unknown[]) => Promise<unknown>)(...args)
}

/** Blocks this (worker) thread until the main thread opens the barrier. */
function waitAtBarrier(barrier: SharedArrayBuffer): void {
  const flag = new Int32Array(barrier)
  while (Atomics.load(flag, 0) === 0) Atomics.wait(flag, 0, 0, 1000)
}

if (isWorker) {
  const port = globalThis as unknown as { onmessage: (e: MessageEvent<Request>) => void; postMessage(m: Reply): void }
  let store: Store | undefined
  port.onmessage = async (e) => {
    const req = e.data
    try {
      let value: unknown
      switch (req.op) {
        case "open":
          store = createSqliteStore({ path: req.path })
          await store.migrate()
          break
        case "call":
          value = await invoke(store!, req.call)
          break
        case "race": {
          port.postMessage({ id: req.id, ready: true })
          waitAtBarrier(req.barrier)
          value = await Promise.all(
            req.calls.map((c) =>
              invoke(store!, c).then(
                (v): Settled => ({ ok: true, value: v }),
                (err): Settled => ({ ok: false, error: String(err) }),
              ),
            ),
          )
          break
        }
        case "janitor": {
          const { now, startedAt, timings } = req.opts
          const janitor = createJanitor({
            store: store!,
            log: createLogger({ level: "error" }),
            now: () => now,
            timings,
            startedAt,
          })
          port.postMessage({ id: req.id, ready: true })
          waitAtBarrier(req.barrier)
          value = await janitor.run()
          break
        }
        case "close":
          await store?.close()
          store = undefined
          break
      }
      port.postMessage({ id: req.id, ok: true, value })
    } catch (err) {
      port.postMessage({ id: req.id, ok: false, error: String((err as Error)?.stack ?? err) })
    }
  }
}

/** Opens a store on `path` in a new worker thread. */
export async function openPeer(path: string): Promise<Peer> {
  const worker = new Worker(new URL(import.meta.url).href)
  let next = 0
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; ready?: () => void }>()
  worker.onmessage = (e: MessageEvent<Reply>) => {
    const r = e.data
    const p = pending.get(r.id)
    if (!p) return
    if ("ready" in r) return p.ready?.()
    pending.delete(r.id)
    if (r.ok) p.resolve(r.value)
    else p.reject(new Error(`peer: ${r.error}`))
  }
  worker.onerror = (e) => {
    for (const p of pending.values()) p.reject(new Error(`peer worker failed: ${e.message}`))
    pending.clear()
  }
  const send = <T>(req: Body, ready?: () => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = ++next
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject, ready })
      worker.postMessage({ ...req, id })
    })
  /** Sends `req`; once the peer is at the barrier, opens it and starts `local()` at the same time. */
  const together = async <T>(
    req: Body & { barrier: SharedArrayBuffer },
    local: () => Promise<T>,
  ): Promise<{ peer: unknown; local: T }> => {
    let atBarrier!: () => void
    const ready = new Promise<void>((r) => (atBarrier = r))
    const peer = send<unknown>(req, atBarrier)
    await Promise.race([ready, peer])
    const flag = new Int32Array(req.barrier)
    Atomics.store(flag, 0, 1)
    Atomics.notify(flag, 0)
    const [p, l] = await Promise.all([peer, local()])
    return { peer: p, local: l }
  }

  await send({ op: "open", path })
  return {
    call: (method, ...args) => send({ op: "call", call: [method, args] as Call }),
    race: async (calls, local) => {
      const r = await together({ op: "race", calls, barrier: new SharedArrayBuffer(4) }, local)
      return { peer: r.peer as Settled[], local: r.local }
    },
    janitorRace: async (opts, local) => {
      const r = await together({ op: "janitor", opts, barrier: new SharedArrayBuffer(4) }, local)
      return { peer: r.peer as JanitorReport, local: r.local }
    },
    async close() {
      try {
        await send({ op: "close" })
      } finally {
        worker.terminate()
      }
    },
  }
}
