import { describe, expect, test } from "bun:test"
import { join } from "node:path"

const MODULE = join(import.meta.dir, "fd-out.ts")

/** Runs a child that writes through fdOut; `body` is its script after `import { ... } from fd-out`. */
function child(body: string) {
  const script = `import { stdoutFd, stderrFd, settleFds } from ${JSON.stringify(MODULE)}\n${body}`
  return Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" })
}

const MiB = 1 << 20

describe("fdOut", () => {
  test("a write's callback runs only once its bytes reached the OS: a slow reader holds the writer back", async () => {
    const p = child(`
      const b = new Uint8Array(${4 * MiB}).fill(66)
      stdoutFd().write(b, () => stderrFd().write("written\\n"))
      process.exit(await settleFds(0, 141))`)
    let read = 0
    let readWhenWritten = -1
    const reading = (async () => {
      for await (const c of p.stdout) read += c.length
    })()
    for await (const c of p.stderr) if (new TextDecoder().decode(c).includes("written")) readWhenWritten = read
    await reading
    expect(await p.exited).toBe(0)
    expect(read).toBe(4 * MiB)
    // At most a pipe buffer (64 KiB by default, 1 MiB at most) can be in flight when the callback runs.
    expect(readWhenWritten).toBeGreaterThanOrEqual(3 * MiB)
  })

  test("settleFds: every byte, in order, reaches the reader before the exit", async () => {
    const p = child(`
      for (let i = 0; i < 2000; i++) stdoutFd().write(String(i).padStart(8, "0") + "\\n")
      stderrFd().write("tail\\n")
      process.exit(await settleFds(3, 141))`)
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
    expect(code).toBe(3)
    expect(out).toBe(Array.from({ length: 2000 }, (_, i) => String(i).padStart(8, "0") + "\n").join(""))
    expect(err).toBe("tail\n")
  })

  test("EPIPE: recorded once, later writes dropped, exit code `failure` after one dffmpeg: line", async () => {
    // The reader closes its end at once: the child's writes fail with EPIPE.
    const p = Bun.spawn(
      [
        "sh",
        "-c",
        `"${process.execPath}" -e "$0" | head -c 10 >/dev/null`,
        `import { stdoutFd, stderrFd, settleFds } from ${JSON.stringify(MODULE)}
        let errors = 0
        stdoutFd().on("error", () => errors++)
        const b = new Uint8Array(${MiB}).fill(65)
        for (let i = 0; i < 64; i++) stdoutFd().write(b)
        const code = await settleFds(0, 141)
        stderrFd().write("errors=" + errors + " failure=" + stdoutFd().failure?.code + "\\n")
        await stderrFd().drained()
        process.exit(code)`,
      ],
      { stderr: "pipe" },
    )
    const err = await new Response(p.stderr).text()
    expect(await p.exited).toBe(0) // sh's status is head's
    expect(err).toBe(
      "dffmpeg: could not write all output to standard output (EPIPE: its reader closed it); the output is incomplete\n" +
        "errors=1 failure=EPIPE\n",
    )
  })

  test("a non-zero code stands when stdout was lost, with no line of ours", async () => {
    const p = Bun.spawn(
      [
        "bash",
        "-c",
        `"${process.execPath}" -e "$0" | head -c 1 >/dev/null; exit \${PIPESTATUS[0]}`,
        `import { stdoutFd, settleFds } from ${JSON.stringify(MODULE)}
        const b = new Uint8Array(${MiB}).fill(65)
        for (let i = 0; i < 64; i++) stdoutFd().write(b)
        process.exit(await settleFds(5, 141))`,
      ],
      { stdout: "pipe", stderr: "pipe" },
    )
    expect(await new Response(p.stderr).text()).toBe("")
    expect(await p.exited).toBe(5)
  })
})
