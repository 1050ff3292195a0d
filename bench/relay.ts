#!/usr/bin/env bun
/**
 * Streaming relay benchmark (issue 11 item 6). Starts a real cluster of the compiled binary on 127.0.0.1
 * (coordinator + 1 worker, SQLite, port 0), then, interleaved, `--runs` times each:
 *  1. stdout: `ffmpeg … testsrc … -f rawvideo pipe:1 | md5sum`, locally and through the proxy: MB/s and
 *     md5 equality (172.8 MB by default, the case);
 *  2. stderr: `ffmpeg … -vf showinfo -f null -` (a line per frame, 40,000 lines): lines/s and equality;
 * with the CPU seconds each of coordinator, worker and proxy spent on the stdout run, the proxy's peak
 * RSS (`/usr/bin/time`), the coordinator's and worker's peak and current RSS
 * (/proc/PID/status VmHWM, VmRSS) after each round, and the job_output bytes the coordinator's database
 * holds at the end (nothing for an attached caller that acknowledged everything). Prints a Markdown report
 * (paste into docs/performance.md). Run: `bun run bench:relay` (builds first if dist/dffmpeg is missing).
 * Options: --runs N (default 3), --seconds S of video (default 10), --linger MS (the worker's output_linger_ms).
 */
import { Database } from "bun:sqlite"
import { cpus, totalmem } from "node:os"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Cluster } from "../test/helpers/cluster.ts"
import { BIN } from "../test/helpers/bin.ts"

const opt = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1]) || fallback
const runs = opt("--runs", 3)
const seconds = opt("--seconds", 10)
/** The worker's `output_linger_ms` (default: its own default); `--linger 0` for no linger. */
const linger = process.argv.includes("--linger")
  ? Number(process.argv[process.argv.indexOf("--linger") + 1])
  : undefined
if (!existsSync(BIN))
  Bun.spawnSync(["bun", "scripts/build.ts", "--single"], {
    stdout: "inherit",
    stderr: "inherit",
    cwd: join(import.meta.dir, ".."),
  })

const RAW = `-v error -f lavfi -i testsrc=duration=${seconds}:size=640x360:rate=25 -f rawvideo -pix_fmt rgb24 pipe:1`
const RAW_BYTES = seconds * 25 * 640 * 360 * 3
const LINES = "-hide_banner -nostats -f lavfi -i testsrc=size=32x32:rate=1000:duration=20 -vf showinfo -f null -"

/** CPU seconds (user + system) a process has used so far. */
const cpuOf = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(f[11]) + Number(f[12])) / 100
}
const kib = (pid: number, field: "VmHWM" | "VmRSS") =>
  Number(readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`${field}:\\s+(\\d+)`))?.[1] ?? 0)
const mib = (k: number) => (k / 1024).toFixed(0)
const f1 = (x: number) => x.toFixed(1)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const c = await Cluster.start({
  workers: 1,
  maxJobs: 2,
  ...(linger === undefined ? {} : { workerConfig: { output_linger_ms: linger } }),
})
try {
  const env = { PATH: process.env.PATH!, HOME: c.dir, DFFMPEG_CLIENT_CONFIG: c.clientConfig }
  const proxy = join(c.binDir, "ffmpeg")
  /** Runs a shell pipeline; returns wall ms, stdout, and the proxy's max RSS (KiB) when it was timed. */
  const sh = (cmd: string) => {
    const t = performance.now()
    const r = Bun.spawnSync(["bash", "-c", cmd], { env, cwd: c.dir })
    const ms = performance.now() - t
    if (r.exitCode !== 0) throw new Error(`${cmd} failed: ${r.stderr.toString()}`)
    return { ms, out: r.stdout.toString().trim(), err: r.stderr.toString() }
  }
  const timed = `/usr/bin/time -f 'maxrss %M cpu %U %S' -o ${join(c.dir, "rss")}`
  const proxyRss = () => Number(readFileSync(join(c.dir, "rss"), "utf8").match(/maxrss (\d+)/)?.[1] ?? 0)
  const proxyCpu = () => {
    const m = readFileSync(join(c.dir, "rss"), "utf8").match(/cpu ([\d.]+) ([\d.]+)/)
    return m ? Number(m[1]) + Number(m[2]) : 0
  }

  const rows: { local: number; remote: number; same: boolean; lLines: number; rLines: number; linesSame: boolean }[] =
    []
  const cpu: { coordinator: number; worker: number; proxy: number }[] = []
  const rss: { proxyOut: number; proxyErr: number; coordHwm: number; coordRss: number; workerHwm: number }[] = []
  // Warm-up: page cache, connections.
  sh(`ffmpeg ${RAW} | md5sum`)
  sh(`${proxy} ${RAW} | md5sum`)
  for (let i = 0; i < runs; i++) {
    const l = sh(`ffmpeg ${RAW} | md5sum`)
    const cp = c.coordinator.proc.pid
    const wp = c.workers[0]!.proc.pid
    const before = { coordinator: cpuOf(cp), worker: cpuOf(wp) }
    const r = sh(`${timed} ${proxy} ${RAW} | md5sum`)
    cpu.push({ coordinator: cpuOf(cp) - before.coordinator, worker: cpuOf(wp) - before.worker, proxy: proxyCpu() })
    const proxyOut = proxyRss()
    // Filter instances print their address (`@ 0x…`) and the last line the speed, which differ from run to run.
    const norm = "sed -E 's/@ 0x[0-9a-f]+/@ PTR/; /^frame=/d' | md5sum"
    const le = sh(`ffmpeg ${LINES} 2>&1 >/dev/null | ${norm}`)
    const re = sh(`${timed} ${proxy} ${LINES} 2>&1 >/dev/null | ${norm}`)
    const proxyErr = proxyRss()
    const lines = Number(sh(`ffmpeg ${LINES} 2>&1 >/dev/null | wc -l`).out)
    rows.push({
      local: RAW_BYTES / 1e6 / (l.ms / 1000),
      remote: RAW_BYTES / 1e6 / (r.ms / 1000),
      same: l.out === r.out,
      lLines: lines / (le.ms / 1000),
      rLines: lines / (re.ms / 1000),
      linesSame: le.out === re.out,
    })
    rss.push({
      proxyOut,
      proxyErr,
      coordHwm: kib(c.coordinator.proc.pid, "VmHWM"),
      coordRss: kib(c.coordinator.proc.pid, "VmRSS"),
      workerHwm: kib(c.workers[0]!.proc.pid, "VmHWM"),
    })
  }
  const db = new Database(join(c.dir, "coordinator.db"), { readonly: true })
  const held = (db.query("SELECT coalesce(sum(length(data) + held), 0) AS n FROM job_output").get() as { n: number }).n
  const jobs = (db.query("SELECT count(*) AS n FROM jobs").get() as { n: number }).n
  db.close()
  const dbFile = Bun.file(join(c.dir, "coordinator.db")).size
  const walFile = Bun.file(join(c.dir, "coordinator.db-wal")).size

  const cpuModel = cpus()[0]?.model ?? "unknown CPU"
  const ff = Bun.spawnSync(["ffmpeg", "-version"]).stdout.toString().split("\n")[0]
  const lm = median(rows.map((r) => r.local))
  const rm = median(rows.map((r) => r.remote))
  const lines = [
    `### ${new Date().toISOString().slice(0, 10)} — ${cpus().length} × ${cpuModel}, ${Math.round(totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}, ${ff}`,
    "",
    `stdout: \`ffmpeg ${RAW} | md5sum\` (${f1(RAW_BYTES / 1e6)} MB); stderr: \`ffmpeg ${LINES}\` (showinfo, a line per frame); ${runs} interleaved runs, whole pipeline wall time:`,
    "",
    "| run | local MB/s | proxy MB/s | proxy / local | md5 equal | local lines/s | proxy lines/s | stderr equal |",
    "|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r, i) =>
        `| ${i + 1} | ${f1(r.local)} | ${f1(r.remote)} | ${((r.remote / r.local) * 100).toFixed(0)} % | ${r.same ? "yes" : "**NO**"} | ${r.lLines.toFixed(0)} | ${r.rLines.toFixed(0)} | ${r.linesSame ? "yes" : "**NO**"} |`,
    ),
    `| median | ${f1(lm)} | **${f1(rm)}** | ${((rm / lm) * 100).toFixed(0)} % | | | | |`,
    "",
    `CPU seconds for the ${f1(RAW_BYTES / 1e6)} MB through the proxy (user + system; robust to other load, unlike wall time), median of the runs: coordinator ${median(cpu.map((x) => x.coordinator)).toFixed(2)}, worker ${median(cpu.map((x) => x.worker)).toFixed(2)} (without its ffmpeg), proxy ${median(cpu.map((x) => x.proxy)).toFixed(2)}.`,
    "",
    "Peak RSS (MiB) after each round: proxy (stdout run, stderr run), coordinator (peak, current), worker (peak):",
    "",
    "| round | proxy stdout | proxy stderr | coordinator VmHWM | coordinator VmRSS | worker VmHWM |",
    "|---|---|---|---|---|---|",
    ...rss.map(
      (r, i) =>
        `| ${i + 1} | ${mib(r.proxyOut)} | ${mib(r.proxyErr)} | ${mib(r.coordHwm)} | ${mib(r.coordRss)} | ${mib(r.workerHwm)} |`,
    ),
    "",
    `After ${jobs} jobs (${f1(((runs + 1) * RAW_BYTES) / 1e6)} MB of stdout relayed): job_output holds ${held} bytes (stderr tails); database file ${f1(dbFile / 1e6)} MB, WAL ${f1(walFile / 1e6)} MB.`,
    "",
  ]
  console.log(lines.join("\n"))
} finally {
  await c.stop()
}
