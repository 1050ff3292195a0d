#!/usr/bin/env bun
/**
 * Proxy start-up benchmark: what a media server pays before the first byte of a job, compared between
 * two builds in one run and against a bare compiled Bun program (one fetch, nothing else), the floor.
 * Each build is called as `ffprobe -version` through a symlink, against a local TCP server that records
 * the moment it accepts the connection and answers 401 at once, so a run is exactly: exec, runtime
 * start, module evaluation of the proxy bundle, config read, one signed request, one `dffmpeg:` line,
 * exit. Reported: exec → first connect and exec → exit (min/p50/p90/p99 ms), max RSS (GNU time, in a
 * separate pass so its fork does not weigh on the clock) and, when valgrind is installed, the
 * instructions of one run under callgrind.
 *
 *   bun bench/startup.ts --base REV [--runs N]
 *
 * REV (a commit, default HEAD~1) is checked out in a temporary worktree and built there with its own
 * scripts/build.ts; the current tree's build is dist/dffmpeg (built when missing). Runs alternate between
 * the builds so that machine noise hits all alike. Also prints the size of each proxy chunk (the main
 * chunk of the executable's own minified bundle, scripts/bundle.ts): the code the proxy path loads,
 * whatever the clock says.
 */
import { cpus, tmpdir, totalmem } from "node:os"
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { join } from "node:path"
import { bundleOptions } from "../scripts/bundle.ts"

const root = join(import.meta.dir, "..")
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name)
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const runs = Number(arg("--runs", "200"))
const base = arg("--base", "HEAD~1")

const sh = (cmd: string[], cwd = root) => {
  const p = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" })
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString()}`)
  return p.stdout.toString().trim()
}

/** Size of the main chunk of `dir`'s source bundled as the executable bundles it. */
async function proxyBundleBytes(dir: string): Promise<number> {
  const res = await Bun.build({ ...bundleOptions(dir), target: "bun" })
  if (!res.success) throw new Error(`bundle of ${dir} failed`)
  return res.outputs.find((o) => o.path.endsWith("main.js"))?.size ?? 0
}

const work = mkdtempSync(join(tmpdir(), "dffmpeg-startup-"))
const baseDir = join(work, "base")
const baseRev = sh(["git", "rev-parse", "--short", base])
const headRev = sh(["git", "rev-parse", "--short", "HEAD"]) + (sh(["git", "status", "--porcelain"]) ? "+changes" : "")
sh(["git", "worktree", "add", "--detach", baseDir, base])
// Raw TCP, so the clock stops when the connection is accepted, before any HTTP parsing on our side.
const body = JSON.stringify({ error: { code: "E_AUTH", message: "refused by the benchmark" } })
const answer = `HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`
let connectedAt = 0
const server = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open() {
      if (!connectedAt) connectedAt = performance.now()
    },
    data(sock) {
      sock.end(answer)
    },
  },
})
try {
  symlinkSync(join(root, "node_modules"), join(baseDir, "node_modules"))
  sh(["bun", "scripts/build.ts", "--single"], baseDir)
  sh(["bun", "scripts/build.ts", "--single"])
  // The floor: a compiled Bun program that only connects (same compile flags as the executable).
  const bareSrc = join(work, "bare.ts")
  await Bun.write(
    bareSrc,
    "await fetch(`${process.env.DFFMPEG_COORDINATOR_URL}/`).catch(() => {})\nprocess.stderr.write('dffmpeg: bare\\n')\nprocess.exit(1)\n",
  )
  sh(["bun", "build", "--compile", "--minify", "--bytecode", "--format=esm", bareSrc, "--outfile", join(work, "bare")])
  const build = (name: string, bin: string, bytes: number) => ({
    name,
    bin,
    bytes,
    connect: [] as number[],
    exit: [] as number[],
    rss: [] as number[],
    instructions: 0,
  })
  const builds = [
    build("bare compiled Bun program", join(work, "bare"), 0),
    build(`base ${baseRev}`, join(baseDir, "dist/dffmpeg"), await proxyBundleBytes(baseDir)),
    build(`this ${headRev}`, join(root, "dist/dffmpeg"), await proxyBundleBytes(root)),
  ]
  const env = {
    PATH: "/usr/bin:/bin",
    HOME: work,
    DFFMPEG_COORDINATOR_URL: `http://127.0.0.1:${server.port}`,
    DFFMPEG_CLIENT_ID: "bench",
    DFFMPEG_HMAC_KEY: "a".repeat(64),
  }
  for (const b of builds) {
    const dir = join(work, b.name.replace(/\W+/g, "-"))
    sh(["mkdir", "-p", dir])
    symlinkSync(b.bin, join(dir, "ffprobe"))
    b.bin = join(dir, "ffprobe")
  }
  const run = async (cmd: string[]) => {
    connectedAt = 0
    const t = performance.now()
    const p = Bun.spawn(cmd, { env, cwd: work, stdin: "ignore", stdout: "ignore", stderr: "pipe" })
    const err = await new Response(p.stderr).text()
    const code = await p.exited
    if (code !== 1 || !err.includes("dffmpeg: ")) throw new Error(`${cmd.join(" ")}: exit ${code}: ${err}`)
    if (!connectedAt) throw new Error(`${cmd.join(" ")}: never connected`)
    return { connect: connectedAt - t, exit: performance.now() - t, err }
  }
  const once = async (b: (typeof builds)[number]) => {
    const r = await run([b.bin, "-version"])
    b.connect.push(r.connect)
    b.exit.push(r.exit)
  }
  for (const b of builds) for (let i = 0; i < 5; i++) await run([b.bin, "-version"]) // warm the page cache
  for (let i = 0; i < runs; i++) for (const b of i % 2 ? builds : [...builds].reverse()) await once(b)
  // Max RSS through GNU time (fork + exec from a small process: Bun.spawn's vfork would report Bun's own).
  const rssFile = join(work, "rss")
  if (existsSync("/usr/bin/time"))
    for (let i = 0; i < 10; i++)
      for (const b of builds) {
        await run(["/usr/bin/time", "-o", rssFile, "-f", "%M", b.bin, "-version"])
        b.rss.push(Number((await Bun.file(rssFile).text()).trim().split("\n").pop()) * 1024) // after "Command exited with non-zero status 1"
      }
  // Instructions under callgrind, where it runs: a valgrind that cannot decode Bun's instructions
  // (e.g. PCMPESTRI) crashes the program, and the reason is printed instead of a count.
  let callgrindNote = Bun.which("valgrind") ? "" : "valgrind is not installed"
  if (!callgrindNote)
    for (const b of builds) {
      // Async: the server answering it runs on this event loop.
      const p = Bun.spawn(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", b.bin, "-version"], {
        env,
        cwd: work,
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      })
      const err = await new Response(p.stderr).text()
      await p.exited
      const n = /Collected : (\d+)/.exec(err)?.[1]
      if (p.exitCode === 1 && err.includes("dffmpeg: ") && n) b.instructions = Number(n)
      else
        callgrindNote ||= `callgrind could not run ${b.name} (exit ${p.exitCode}): ${/vex amd64->IR: unhandled instruction[^\n]*/.exec(err)?.[0] ?? err.split("\n").find((l) => l.includes("panic")) ?? "see valgrind"}`
    }

  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b)
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
  }
  const f = (x: number) => x.toFixed(1)
  const mb = (x: number | undefined) => (x ? `${(x / 2 ** 20).toFixed(1)} MiB` : "n/a")
  console.log(
    `### ${new Date().toISOString().slice(0, 10)} — proxy start-up, ${cpus().length} × ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Bun ${Bun.version}\n`,
  )
  console.log(
    `${runs} alternating runs each of \`ffprobe -version\` through the proxy against a local TCP server answering 401 at once; times in ms from spawn.\n`,
  )
  console.log(
    "| build | proxy chunk | exec → connect min | p50 | p90 | p99 | exec → exit p50 | max RSS p50 | max RSS max | instructions (callgrind) |",
  )
  console.log("|---|---|---|---|---|---|---|---|---|---|")
  for (const b of builds) {
    const c = b.connect
    console.log(
      `| ${b.name} | ${b.bytes ? `${(b.bytes / 1024).toFixed(1)} KiB` : "—"} | ${f(pct(c, 0))} | ${f(pct(c, 50))} | ${f(pct(c, 90))} | ${f(pct(c, 99))} | ${f(pct(b.exit, 50))} | ${mb(pct(b.rss, 50))} | ${mb(pct(b.rss, 100))} | ${b.instructions ? `${(b.instructions / 1e6).toFixed(1)} M` : "n/a"} |`,
    )
  }
  if (callgrindNote) console.log(`\nInstructions: ${callgrindNote}.`)
} finally {
  server.stop(true)
  Bun.spawnSync(["git", "worktree", "remove", "--force", baseDir], { cwd: root })
  rmSync(work, { recursive: true, force: true })
}
