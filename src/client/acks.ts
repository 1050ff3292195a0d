/**
 * When an attached caller tells the coordinator how far it has consumed a job's output (`POST
 * /jobs/:id/ack?pos=`), so the coordinator can delete it and give its window back to the worker. One
 * acknowledgement per `everyBytes` consumed, or `everyMs` after the first byte not yet acknowledged
 * (a slow trickle is acknowledged too), never more than one in flight: a cheap signed request per few
 * MiB instead of one per frame. A failed one (the coordinator restarting) is sent again `everyMs` later,
 * with the latest position (they only grow): it cannot wait for the next bytes, because the coordinator
 * sends none while its window is full of what the caller took but could not acknowledge.
 */
export interface AckerOptions {
  send(pos: number): Promise<unknown>
  /** Consumed bytes that trigger an acknowledgement at once. */
  everyBytes: number
  /** Longest a consumed byte waits for its acknowledgement. */
  everyMs: number
  /** Timers, injectable for tests. */
  setTimer?: (fn: () => void, ms: number) => unknown
  clearTimer?: (t: unknown) => void
}

export interface Acker {
  /** The consumer took the output up to stream position `pos` (`bytes` of it since the last call). */
  taken(pos: number, bytes: number): void
  /**
   * Acknowledges what was taken and not acknowledged yet, and waits for it, at most `ms` (errors are
   * swallowed): a coordinator that stopped answering must not hold up the caller's exit.
   */
  flush(ms: number): Promise<void>
  /** No more acknowledgements (pending timers cleared). */
  stop(): void
}

/** Consumer positions are the cadence's only input; the coordinator clamps whatever it is sent. */
export function createAcker(o: AckerOptions): Acker {
  const setTimer = o.setTimer ?? ((fn, ms) => setTimeout(fn, ms))
  const clearTimer = o.clearTimer ?? ((t) => clearTimeout(t as ReturnType<typeof setTimeout>))
  let taken = 0
  let sent = 0
  let unsent = 0
  let timer: unknown
  let inFlight: Promise<void> | undefined
  let stopped = false

  const fire = (): Promise<void> => {
    if (timer !== undefined) clearTimer(timer)
    timer = undefined
    if (inFlight || stopped || taken <= sent) return inFlight ?? Promise.resolve()
    const pos = taken
    unsent = 0
    inFlight = o
      .send(pos)
      .then(
        () => void (sent = Math.max(sent, pos)),
        () => {},
      )
      .finally(() => {
        inFlight = undefined
        // What was taken while this one was in flight, or all of it again if it failed.
        if (unsent >= o.everyBytes) void fire()
        else if (taken > sent && timer === undefined && !stopped) timer = setTimer(fire, o.everyMs)
      })
    return inFlight
  }

  return {
    taken(pos, bytes) {
      if (stopped || pos <= taken) return
      taken = pos
      unsent += bytes
      if (unsent >= o.everyBytes) void fire()
      else if (timer === undefined && !inFlight) timer = setTimer(fire, o.everyMs)
    },
    async flush(ms) {
      let timer: unknown
      const late = new Promise<void>((resolve) => (timer = setTimer(resolve, ms)))
      const done = (async () => {
        await inFlight
        await fire()
      })()
      try {
        await Promise.race([done, late])
      } finally {
        clearTimer(timer)
      }
    },
    stop() {
      stopped = true
      if (timer !== undefined) clearTimer(timer)
      timer = undefined
    },
  }
}
