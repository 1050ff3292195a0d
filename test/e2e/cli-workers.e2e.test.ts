import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { BIN, waitFor } from "../helpers/bin.ts"
import { apiFor } from "../helpers/api.ts"
import { Cluster, type RunResult } from "../helpers/cluster.ts"

/**
 * `dffmpeg admin workers|janitor` and the `dffmpeg client` views (status, jobs, workers, the live
 * view) through the compiled binary against one live cluster. Workers re-register every 0.3 s and
 * poll at least every second, so a drain is tested across many re-registrations and a restart in a few seconds.
 */
let c: Cluster
beforeAll(async () => {
  c = await Cluster.start({
    maxJobs: 2,
    coordinatorConfig: { registration_interval: 0.3, poll_wait_seconds: 1, janitor: { job_pending_timeout: 120 } },
  })
  await c.enableAdmin()
  await waitFor(async () => (await worker()).status === "online", { what: "worker1 to be verified" })
}, 30_000)
afterAll(async () => {
  await c?.stop()
})

interface WorkerJson {
  id: string
  status: string
  drainRequested: boolean
  load: number
  maxJobs: number
  lastSeen: number
  hostLoad?: unknown
  jobs?: { id: string; status: string }[]
}
interface JobJson {
  id: string
  status: string
  workerId: string | null
  exitCode: number | null
  progress: { percent: number | null } | null
}

const parse = <T>(r: RunResult): T => {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.err}`)
  return JSON.parse(r.out) as T
}
const local = (args: string[]) => c.exec([BIN, "admin", "--local", "--config", c.coordinatorConfig, ...args], {})
const worker = async (id = "worker1") => parse<WorkerJson>(await c.remote(["workers", "show", id, "--json"]))
const job = async (id: string) => parse<JobJson>(await c.client("status", [id, "--json"]))
const submit = async (args: string[]) => {
  const r = await c.client("submit", ["--detach", "--", ...args])
  if (r.code !== 0) throw new Error(`submit failed: ${r.err}`)
  return r.out.trim()
}
/** A real encode of `seconds` in real time with a known length, so progress has a percentage. */
const encode = (seconds: number) => [
  "-hide_banner",
  "-re",
  "-f",
  "lavfi",
  "-i",
  "testsrc=size=160x120:rate=10",
  "-t",
  String(seconds),
  "-f",
  "null",
  "-",
]

describe("admin workers", () => {
  test("ls and show give state, load/slots, binaries, paths, version and last seen, the same in both modes", async () => {
    const ls = await c.remote(["workers", "ls"])
    expect(ls.code).toBe(0)
    expect(ls.out).toMatch(
      // CPU and memory from the worker's heartbeats (`-` before the first that carried them).
      /^ID +STATUS +LOAD +CPU +MEM +BINARIES +PATHS +SANDBOX +VERSION +LAST SEEN\nworker1 +online +0\/2 +(-|\d+%) +(-|\d+\.\d\/\d+\.\d GiB) +ffmpeg,ffprobe +Media +bwrap +\d+\.\d+\.\d+ +\d+s ago\n$/,
    )
    const remote = parse<WorkerJson[]>(await c.remote(["workers", "ls", "--json"]))
    expect(remote).toEqual([
      expect.objectContaining({ id: "worker1", status: "online", drainRequested: false, load: 0, maxJobs: 2 }),
    ])
    const viaLocal = parse<WorkerJson[]>(await local(["workers", "ls", "--json"]))
    // Both read between heartbeats: when it was last seen and its host's load may differ.
    const steady = ({ lastSeen: _, hostLoad: __, ...w }: WorkerJson) => w
    expect(viaLocal.map(steady)).toEqual(remote.map(steady))
    const show = await c.remote(["workers", "show", "worker1"])
    expect(show.out).toMatch(
      /^id +worker1\nstatus +online\nload +0\/2\nbinaries +ffmpeg,ffprobe\npaths +Media\nsandbox +bwrap, jobs run as nobody \(65534:65534\)\n/,
    )
    expect(show.out).toMatch(/\nno current jobs\n$/)
  })

  test("drain keeps new jobs queued across re-registrations and a restart of the worker; undrain runs them", async () => {
    const drained = await c.remote(["workers", "drain", "worker1"])
    expect(drained).toMatchObject({
      code: 0,
      out: "worker1 draining (admin): gets no new jobs; it has no current jobs\n",
    })
    expect((await c.remote(["workers", "ls"])).out).toMatch(/^worker1 +draining \(admin\) +0\/2 /m)
    const id = await submit(encode(1))

    // Re-registrations (every 0.3 s) keep the drain: the worker polls again and again, the job stays queued.
    const seen = (await worker()).lastSeen
    await waitFor(async () => (await worker()).lastSeen > seen + 1000, { what: "the worker to poll for a second" })
    expect(await worker()).toMatchObject({ status: "draining", drainRequested: true })
    expect((await job(id)).status).toBe("queued")

    // A restart re-registers from scratch (offline → registering → verified): still drained.
    await c.workers[0].stop("SIGTERM")
    await c.startWorker("worker1")
    await waitFor(async () => (await worker()).status === "draining", { what: "the restarted worker to be verified" })
    const back = (await worker()).lastSeen
    await waitFor(async () => (await worker()).lastSeen > back + 600, { what: "the restarted worker to poll" })
    expect((await job(id)).status).toBe("queued")
    expect((await c.client("jobs", ["--status", "queued"])).out).toContain(id)

    const undrained = await c.remote(["workers", "undrain", "worker1", "--json"])
    expect(parse<WorkerJson>(undrained)).toMatchObject({ id: "worker1", status: "online", drainRequested: false })
    const done = await waitFor(
      async () => {
        const j = await job(id)
        return j.status === "completed" && j
      },
      { what: "the job to run after undrain" },
    )
    expect(done).toMatchObject({ workerId: "worker1", exitCode: 0 })
  }, 30_000)

  test("show lists the jobs running on the worker, with their progress", async () => {
    const id = await submit(encode(3))
    await waitFor(async () => (await job(id)).progress?.percent != null, { what: "a progress report" })
    const shown = await worker()
    expect(shown.jobs?.map((j) => [j.id, j.status])).toEqual([[id, "running"]])
    expect(shown.load).toBe(1)
    const text = (await c.remote(["workers", "show", "worker1"])).out
    expect(text).toMatch(/\ncurrent jobs\nID +STATUS +EXIT +PROGRESS +BINARY +REQUESTER +WORKER/)
    // PROGRESS as in "42% 1.8x eta 0:31" (speed and eta once ffmpeg has reported them).
    expect(text).toMatch(
      new RegExp(`^${id} +running +- +\\d+%( [\\d.]+x)?( eta \\d+:\\d\\d)? +ffmpeg +client1 +worker1 `, "m"),
    )
    const ls = (await c.remote(["jobs", "ls", "--status", "running"])).out
    expect(ls).toMatch(new RegExp(`^${id} +running +- +\\d+%`, "m"))
    const client = (await c.client("jobs", ["--status", "running"])).out
    expect(client).toMatch(/^ID +STATUS +EXIT +PROGRESS +BINARY +WORKER +AGE +DURATION +ARGS\n/)
    expect(client).toMatch(new RegExp(`^${id} +running +- +\\d+%`, "m"))
    const canceled = await c.remote(["jobs", "cancel", id])
    expect(canceled).toMatchObject({ code: 0, out: `${id} canceling\n` })
    await waitFor(async () => (await job(id)).status === "canceled", { what: "the job to end canceled" })
  }, 20_000)

  test("an unknown worker exits 1 ('no worker ghost') in both modes and creates nothing; a malformed id exits 2", async () => {
    for (const run of [c.remote.bind(c), local]) {
      for (const verb of ["show", "drain", "undrain"]) {
        const r = await run(["workers", verb, "ghost"])
        expect(r).toMatchObject({ code: 1, out: "", err: "dffmpeg: no worker ghost\n" })
      }
    }
    const bad = await c.remote(["workers", "drain", "a/b"])
    expect(bad.code).toBe(2)
    expect(bad.err).toMatch(/^dffmpeg: "a\/b" is not a worker id/)
    expect(parse<WorkerJson[]>(await c.remote(["workers", "ls", "--json"])).map((w) => w.id)).toEqual(["worker1"])
  })
})

describe("admin janitor", () => {
  test("run does one pass in remote mode and prints what it did; local mode refuses (exit 2)", async () => {
    const r = await c.remote(["janitor", "run"])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^janitor pass done(; reaping is paused [^\n]+)?\n(nothing to do\n|[a-z (),]+ {2,}\S)/)
    const report = parse<Record<string, unknown>>(await c.remote(["janitor", "run", "--json"]))
    expect(Object.keys(report).sort()).toEqual([
      "abandoned",
      "canceled",
      "failedPending",
      "lost",
      "pruned",
      "suppressed",
      "unassigned",
      "workersOffline",
    ])
    const l = await local(["janitor", "run", "--json"])
    expect(l.code).toBe(2)
    expect(JSON.parse(l.out).error.message).toMatch(/^janitor run needs the remote mode/)
  })
})

describe("client views", () => {
  let id = ""
  beforeAll(async () => {
    id = await submit(["-hide_banner", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=5:duration=1", "-f", "null", "-"])
    await waitFor(async () => (await job(id)).status === "completed", { what: "the job to complete" })
  }, 15_000)

  test("status ID shows the job; --json is the job", async () => {
    const r = await c.client("status", [id])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(new RegExp(`^id +${id}\\nstatus +completed\\nprogress +.*\\nexit +0\\nerror +-\\n`))
    expect(r.out).toContain("\nworker     worker1\n")
    expect(await job(id)).toMatchObject({ id, status: "completed", workerId: "worker1", exitCode: 0 })
  })

  test("jobs lists your own jobs newest first with --status and --limit; --json is the list", async () => {
    const r = await c.client("jobs", ["--limit", "1"])
    expect(r.out).toMatch(
      new RegExp(
        `^ID +STATUS +EXIT +PROGRESS +BINARY +WORKER +AGE +DURATION +ARGS\\n${id} +completed +0 +- +ffmpeg +worker1 +\\d+[smhd] +\\S+ +-hide_banner -f lavfi`,
      ),
    )
    const list = parse<JobJson[]>(await c.client("jobs", ["--json", "--status", "completed"]))
    expect(list.map((j) => j.id)).toContain(id)
    expect(parse<JobJson[]>(await c.client("jobs", ["--json", "--status", "queued"]))).toEqual([])
  })

  test("workers shows each worker's load bar and a total line; --json is the list", async () => {
    const r = await c.client("workers")
    expect(r.out).toMatch(
      /^ID +STATUS +LOAD +BINARIES +PATHS\nworker1 +online +\[[#-]{10}\] \d\/2 +ffmpeg,ffprobe +Media\n\n1 workers, 1 online; \d of 2 slots busy\n$/,
    )
    expect(parse<WorkerJson[]>(await c.client("workers", ["--json"]))).toEqual([
      expect.objectContaining({ id: "worker1", maxJobs: 2 }),
    ])
  })

  test("status -w on a pipe prints a timestamped table and ends with exit 0 on SIGINT", async () => {
    const p = Bun.spawn([BIN, "client", "status", "-w", "--interval", "0.2", "--config", c.clientConfig], {
      cwd: c.dir,
      env: { PATH: process.env.PATH ?? "", HOME: c.dir },
      stdout: "pipe",
      stderr: "pipe",
    })
    let out = ""
    const reader = (async () => {
      for await (const chunk of p.stdout) out += new TextDecoder().decode(chunk)
    })()
    await waitFor(() => out.includes(id), { what: "the first table" })
    p.kill("SIGINT")
    const code = await p.exited
    await reader
    expect(code).toBe(0)
    expect(await new Response(p.stderr).text()).toBe("")
    expect(out).toMatch(
      /^--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ jobs of client1: \d+ running, \d+ waiting\nID +STATUS +EXIT +PROGRESS/,
    )
    // Nothing changed between refreshes: a pipe gets the table once, not every 0.2 s.
    expect(out.match(/^--- /gm)?.length).toBe(1)
  })

  test("bad input: a malformed id or --interval exits 2, an unknown or foreign job exits 1", async () => {
    expect(await c.client("status", ["NOTAULID"])).toMatchObject({
      code: 2,
      err: expect.stringMatching(/^dffmpeg: NOTAULID is not a job id/),
    })
    expect(await c.client("status", [])).toMatchObject({
      code: 2,
      err: expect.stringMatching(/^dffmpeg: give a job id, or --watch/),
    })
    expect(await c.client("status", ["-w", "--interval", "0"])).toMatchObject({
      code: 2,
      err: expect.stringMatching(/^dffmpeg: --interval must be a number of seconds/),
    })
    expect(await c.client("status", ["01M8DFWF4PCGSZBYEVT8TNJN46"])).toMatchObject({
      code: 1,
      err: "dffmpeg: no job 01M8DFWF4PCGSZBYEVT8TNJN46\n",
    })
    expect(await c.client("jobs", ["--since", "soon"])).toMatchObject({
      code: 2,
      err: expect.stringMatching(/^dffmpeg: --since must be/),
    })
  })
})

describe("worker-supplied strings", () => {
  test("a registration whose version or capabilities hold control or bidi characters is 400, and the listing keeps the true worker", async () => {
    const api = apiFor(c, "worker1")
    const reg = { binaries: ["ffmpeg"], paths: ["Media"], maxJobs: 2 }
    for (const bad of [
      { version: "1\x1b[2J\x1b]0;t\x07\r\nFAKE LINE \u202eevil" },
      { version: "0.1.0", capabilities: { runAs: "\x1b[31mroot" } },
    ]) {
      const res = await api.request("POST", "/api/v1/worker/register", { json: { ...reg, ...bad } })
      expect(res.status).toBe(400)
      const body = (await res.json()) as { error: { code: string; message: string; details: string[] } }
      expect(body.error.code).toBe("E_INVALID")
      expect(body.error.details.join("; ")).toMatch(/(version|runAs).*printable/)
    }
    const ls = await c.remote(["workers", "ls"])
    expect(ls.code).toBe(0)
    expect(ls.out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/)
    expect(ls.out).not.toContain("FAKE LINE")
  })
})
