/**
 * Ordered writes to stdout/stderr that resolve once the bytes are handed to the OS, so the exit code is
 * never delivered before the last byte, and a slow reader slows the stream down (backpressure).
 */
export interface Sink {
  write(b: Uint8Array): Promise<void>
  /** Set when the reader went away (EPIPE). */
  readonly broken: boolean
}

export function createSink(stream: NodeJS.WriteStream): Sink {
  let broken = false
  // Without a listener an EPIPE would crash the process with a stack trace.
  stream.on("error", () => {
    broken = true
  })
  return {
    write(b) {
      if (broken) return Promise.resolve()
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
