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
  /**
   * Rows a `read` without `limit` returns at most, when it says so: a page shorter than this is all
   * that was stored as of that read, and the loop goes on without reading again to see an empty page.
   * Without it the loop reads until a page is empty.
   */
  page?: number
  onRow(row: R): Promise<void>
  /**
   * How to go on once caught up; without it the loop ends there (a one-shot read of what is stored).
   * `state` reads the job (undefined: it is gone, the loop ends), `ended` says whether it is terminal,
   * `idle` runs for a live job before `wait`, which returns on new output or after a while, with what
   * woke it when it knows (`Wake`; nothing: read everything).
   */
  live?: {
    state(): Promise<S | undefined>
    ended(state: S): boolean
    idle?(state: S, cursor: number): Promise<void>
    wait(signal: AbortSignal): Promise<Wake<S> | undefined | void>
  }
  signal: AbortSignal
}

/**
 * What woke a live follower, as its notifier told it (coordinator/hub.ts `Hint`), about changes that
 * committed before the wake-up.
 */
export interface Wake<S> {
  /** The job's state as its latest transition committed it: not read again. */
  state?: S
  /** Output may have been stored since the last wake-up. False: only the state changed, no read. */
  output: boolean
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
  // Nothing known on the first pass (and after a wake-up without a hint): read the output and the state.
  let wake: Wake<S> | undefined
  while (!o.signal.aborted) {
    const told = wake?.state
    // Told only of a transition: nothing was stored since the last read, unless the job ended. An end is
    // read past once: rows whose payload was lost with a coordinator become skippable only then (store
    // readOutput), and what follows them must be delivered before the stream ends.
    if (!wake || wake.output || (told !== undefined && o.live?.ended(told))) {
      for (;;) {
        const rows = await o.read(cursor)
        for (const r of rows) {
          if (o.signal.aborted) return { cursor }
          await o.onRow(r)
          cursor = r.pos
        }
        if (!rows.length || (o.page !== undefined && rows.length < o.page)) break
      }
    }
    if (!o.live) return { cursor }
    const cur = told ?? (await o.live.state())
    if (cur === undefined) return { cursor }
    if (o.live.ended(cur)) {
      // A state told before the read above was final when it read: nothing is stored after an end (the
      // end and its last bytes commit in one transaction), so that read got everything. A state read
      // after the output may have ended (with more bytes) in between: one more read drains everything.
      if (told === undefined && (await o.read(cursor, 1)).length) {
        wake = undefined
        continue
      }
      return { cursor, ended: cur }
    }
    await o.live.idle?.(cur, cursor)
    wake = (await o.live.wait(o.signal)) ?? undefined
  }
  return { cursor }
}
