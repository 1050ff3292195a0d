/**
 * The one loop that follows a job's stored output, wherever it is read from: the coordinator's job stream
 * (store → frames, woken by the notifier), `dffmpeg admin --local jobs logs -f` (the store directly, polled)
 * and the one-shot `jobs logs` (pages until caught up). Callers over the API follow the coordinator's stream
 * with `jobFrames` (client/stream.ts), which resumes this loop on the coordinator after a lost connection.
 */
export interface FollowOutputOptions<R extends { pos: number }, S> {
  /** Output stored after this position first. */
  after: number
  /** The next page after `cursor`, at most `limit` rows if given (empty: nothing more stored yet). */
  read(cursor: number, limit?: number): Promise<R[]>
  onRow(row: R): Promise<void>
  /**
   * How to go on once caught up; without it the loop ends there (a one-shot read of what is stored).
   * `state` reads the job (undefined: it is gone, the loop ends), `ended` says whether it is terminal,
   * `idle` runs for a live job before `wait`, which returns on new output or after a while.
   */
  live?: {
    state(): Promise<S | undefined>
    ended(state: S): boolean
    idle?(state: S, cursor: number): Promise<void>
    wait(signal: AbortSignal): Promise<void>
  }
  signal: AbortSignal
}

/**
 * Delivers every row after `after` in order, then (with `live`) waits for more until the job is terminal and
 * everything it wrote was delivered. Returns the last position delivered and the terminal state, if it
 * got there.
 */
export async function followOutput<R extends { pos: number }, S>(
  o: FollowOutputOptions<R, S>,
): Promise<{ cursor: number; ended?: S }> {
  let cursor = o.after
  while (!o.signal.aborted) {
    const rows = await o.read(cursor)
    for (const r of rows) {
      if (o.signal.aborted) return { cursor }
      await o.onRow(r)
      cursor = r.pos
    }
    if (rows.length) continue
    if (!o.live) return { cursor }
    const cur = await o.live.state()
    if (cur === undefined) return { cursor }
    if (o.live.ended(cur)) {
      // The end and the last bytes are committed together, so one more read drains everything.
      if ((await o.read(cursor, 1)).length) continue
      return { cursor, ended: cur }
    }
    await o.live.idle?.(cur, cursor)
    await o.live.wait(o.signal)
  }
  return { cursor }
}
