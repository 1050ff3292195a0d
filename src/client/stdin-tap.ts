/**
 * This process's stdin read once, for a job that may be run locally after all (a fallback): the remote
 * side (the job's downlink) reads it as usual while what it read is kept, up to `cap` bytes; a local run
 * then gets what was kept followed by the rest, from the same reader, in order, nothing lost or repeated.
 * Once more than `cap` bytes went to the coordinator the input cannot be replayed and no fallback is made.
 */
export interface StdinTap {
  /** The stdin the downlink reads. It pauses while held and ends once handed off. */
  remote: () => AsyncIterable<Uint8Array>
  /** Whether anything was read from stdin (a read may be pending: stdin can no longer be inherited). */
  readonly started: boolean
  /**
   * Pauses the remote side while a fallback is decided; false (and nothing held) when the input cannot
   * be replayed any more.
   */
  hold(): boolean
  /** The fallback was not made: the remote side goes on. */
  release(): void
  /** The stdin for the local run: what the remote side read, then the rest. The remote side ends. */
  handOff(): AsyncIterable<Uint8Array>
}

export function tapStdin(source: () => AsyncIterable<Uint8Array>, cap: number): StdinTap {
  let it: AsyncIterator<Uint8Array> | undefined
  // Reads are chained: a pull started after another resolves after it, so chunks keep their order.
  let chain: Promise<unknown> = Promise.resolve()
  let kept: Uint8Array[] = []
  let size = 0
  let over = false
  let held = false
  let local = false
  let ended = false
  /** Chunks read after the hand-off, for the local side. */
  const queue: Uint8Array[] = []
  let wake: (() => void) | undefined
  const woken = () => new Promise<void>((r) => (wake = r))

  const pull = (): Promise<IteratorResult<Uint8Array>> => {
    const p = chain.then(async () => {
      if (ended) return { done: true, value: undefined } as IteratorResult<Uint8Array>
      const r = await (it ??= source()[Symbol.asyncIterator]()).next()
      if (r.done) ended = true
      else if (local) queue.push(r.value)
      else if (!over) {
        size += r.value.length
        kept.push(r.value)
        // While held the bytes are kept whatever their size: the decision under way may need them.
        if (size > cap && !held) {
          over = true
          kept = []
        }
      }
      return r
    })
    chain = p.catch(() => {})
    return p
  }

  return {
    remote: () => ({
      [Symbol.asyncIterator]: () => ({
        async next(): Promise<IteratorResult<Uint8Array>> {
          while (held && !local) await woken()
          if (local) return { done: true, value: undefined }
          return pull()
        },
        // The downlink stopping must not close stdin: a local run may still read it.
        async return() {
          return { done: true, value: undefined }
        },
      }),
    }),
    get started() {
      return it !== undefined
    },
    hold() {
      if (over) return false
      held = true
      return true
    },
    release() {
      held = false
      if (size > cap) {
        over = true
        kept = []
      }
      wake?.()
    },
    handOff() {
      local = true
      wake?.()
      return {
        async *[Symbol.asyncIterator]() {
          yield* kept
          kept = []
          for (;;) {
            // A read the remote side started resolves first and lands in `queue`.
            await chain
            while (queue.length) yield queue.shift()!
            if (ended) return
            const r = await pull()
            if (r.done) return
            // `pull` queued it.
            while (queue.length) yield queue.shift()!
          }
        },
      }
    },
  }
}
