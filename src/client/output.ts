/**
 * Ordered writes to stdout/stderr that resolve once the bytes are handed to the OS, so the exit code is
 * never delivered before the last byte, and a slow reader slows the stream down (backpressure).
 */
export interface Sink {
  write(b: Uint8Array): Promise<void>
  /** Set when the reader went away (EPIPE). */
  readonly broken: boolean
}

/** What a sink writes to: process.stdout or process.stderr, or a test's stand-in. */
export interface Writable {
  write(b: Uint8Array | string, cb?: (err?: Error | null) => void): unknown
  on(event: "error", listener: (err: Error) => void): unknown
}

export function createSink(stream: Writable): Sink {
  let broken = false
  // Without a listener an EPIPE would crash the process with a stack trace.
  stream.on("error", () => {
    broken = true
  })
  return {
    write(b) {
      // Nothing to write (a rewriter held the bytes back) is done at once.
      if (broken || !b.length) return Promise.resolve()
      return new Promise((resolve) => {
        stream.write(b, (err) => {
          if (err) broken = true
          resolve()
        })
      })
    },
    get broken() {
      return broken
    },
  }
}
