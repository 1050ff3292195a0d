#!/usr/bin/env bun
/**
 * Proxy start-up benchmark: what a media server pays before the first byte of a job, compared between
 * two builds in one run. Each build is called as `ffprobe -version` through a symlink, against a local
 * server that refuses every request at once (401), so a run is exactly: exec, runtime start, module
 * evaluation of the proxy bundle, config read, one signed request, one `dffmpeg:` line, exit.
 *
 *   bun bench/startup.ts --base REV [--runs N]
 *
 * REV (a commit, default HEAD~1) is checked out in a temporary worktree and built there with its own
 * scripts/build.ts; the current tree's build is dist/dffmpeg (built when missing). Runs alternate between
 * the two builds so that machine noise hits both alike. Also prints the size of each proxy bundle
 * (src/main.ts with everything it imports but the CLI entrypoint, minified): the code the proxy path loads, whatever the clock says.
 */
import { cpus, tmpdir, totalmem } from "node:os"
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { join } from "node:path"

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

async function proxyBundleBytes(dir: string): Promise<number> {
  // The CLI is a second entrypoint of the executable, loaded only off the proxy path: left out here.
  const cliApart: Bun.BunPlugin = {
    name: "cli-apart",
    setup(b) {
      b.onResolve({ filter: /cli\/run\.ts$/ }, (a) => ({ path: a.path, external: true }))
    },
  }
  const res = await Bun.build({
    entrypoints: [join(dir, "src/main.ts")],
    minify: true,
    format: "esm",
    target: "bun",
    plugins: [cliApart],
  })
  if (!res.success) throw new Error(`bundle of ${dir} failed`)
  let n = 0
  for (const o of res.outputs) n += o.size
  return n
}

const work = mkdtempSync(join(tmpdir(), "dffmpeg-startup-"))
const baseDir = join(work, "base")
const baseRev = sh(["git", "rev-parse", "--short", base])
const headRev = sh(["git", "rev-parse", "--short", "HEAD"]) + (sh(["git", "status", "--porcelain"]) ? "+changes" : "")
sh(["git", "worktree", "add", "--detach", baseDir, base])
const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: () => Response.json({ error: { code: "E_AUTH", message: "refused by the benchmark" } }, { status: 401 }),
})
try {
  symlinkSync(join(root, "node_modules"), join(baseDir, "node_modules"))
  sh(["bun", "scripts/build.ts", "--single"], baseDir)
  if (!existsSync(join(root, "dist/dffmpeg"))) sh(["bun", "scripts/build.ts", "--single"])
  const builds = [
    {
      name: `base ${baseRev}`,
      bin: join(baseDir, "dist/dffmpeg"),
      bytes: await proxyBundleBytes(baseDir),
      times: [] as number[],
    },
    {
      name: `this ${headRev}`,
      bin: join(root, "dist/dffmpeg"),
      bytes: await proxyBundleBytes(root),
      times: [] as number[],
    },
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
  const once = async (bin: string) => {
    const t = performance.now()
    const p = Bun.spawn([bin, "-version"], { env, cwd: work, stdin: "ignore", stdout: "ignore", stderr: "pipe" })
    const err = await new Response(p.stderr).text()
    const code = await p.exited
    if (code !== 1 || !err.startsWith("dffmpeg: ")) throw new Error(`${bin}: exit ${code}: ${err}`)
    return performance.now() - t
  }
  for (const b of builds) for (let i = 0; i < 5; i++) await once(b.bin) // warm the page cache
  for (let i = 0; i < runs; i++) for (const b of i % 2 ? builds : [...builds].reverse()) b.times.push(await once(b.bin))

  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b)
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
  }
  const f = (x: number) => x.toFixed(1)
  console.log(
    `### ${new Date().toISOString().slice(0, 10)} — proxy start-up, ${cpus().length} × ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Bun ${Bun.version}\n`,
  )
  console.log(
    `${runs} alternating runs each of \`ffprobe -version\` through the proxy against a server answering 401 at once.\n`,
  )
  console.log("| build | proxy bundle | min | p50 | p90 | p99 |")
  console.log("|---|---|---|---|---|---|")
  for (const b of builds) {
    const t = b.times
    console.log(
      `| ${b.name} | ${(b.bytes / 1024).toFixed(1)} KiB | ${f(pct(t, 0))} | ${f(pct(t, 50))} | ${f(pct(t, 90))} | ${f(pct(t, 99))} |`,
    )
  }
} finally {
  server.stop(true)
  Bun.spawnSync(["git", "worktree", "remove", "--force", baseDir], { cwd: root })
  rmSync(work, { recursive: true, force: true })
}
