import type { Subprocess } from "bun"

/** A long-running child whose stderr is collected, so a test can wait for a line and dump logs on failure. */
export class Proc {
  readonly stderrText: string[] = []
  private waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = []
  readonly exited: Promise<number>

  constructor(
    readonly name: string,
    readonly proc: Subprocess<"ignore" | "pipe", "pipe" | "ignore", "pipe">,
  ) {
    this.exited = proc.exited
    void this.drain()
  }

  private async drain() {
    const dec = new TextDecoder()
    let buf = ""
    for await (const chunk of this.proc.stderr as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true })
      let i: number
      while ((i = buf.indexOf("\n")) !== -1) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        this.stderrText.push(line)
        for (const w of [...this.waiters]) {
          const m = line.match(w.re)
          if (m) {
            this.waiters.splice(this.waiters.indexOf(w), 1)
            w.resolve(m)
          }
        }
      }
    }
  }

  /** Resolves with the first line (past or future) matching `re`. */
  waitForLine(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    for (const l of this.stderrText) {
      const m = l.match(re)
      if (m) return Promise.resolve(m)
    }
    return new Promise((resolve, reject) => {
      const w = { re, resolve }
      this.waiters.push(w)
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        reject(new Error(`${this.name}: no line matching ${re} within ${timeoutMs} ms; log:\n${this.log()}`))
      }, timeoutMs)
      void this.exited.then(() =>
        setTimeout(() => {
          clearTimeout(t)
          if (this.waiters.includes(w))
            reject(new Error(`${this.name} exited before printing ${re}; log:\n${this.log()}`))
        }, 50),
      )
      const orig = w.resolve
      w.resolve = (m) => {
        clearTimeout(t)
        orig(m)
      }
    })
  }

  log(): string {
    return this.stderrText.join("\n")
  }

  get pid(): number {
    return this.proc.pid
  }

  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 5000): Promise<number> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited
    this.proc.kill(signal)
    const t = setTimeout(() => this.proc.kill("SIGKILL"), timeoutMs)
    try {
      return await this.exited
    } finally {
      clearTimeout(t)
    }
  }
}
