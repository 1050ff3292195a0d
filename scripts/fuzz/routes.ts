import { FRAMES_MEDIA_TYPE, Kind } from "../../src/shared/protocol/frames.ts"
import type { IdentityName } from "./cluster.ts"
import { Gen, VALID_ULID, badId, frameBody, hostileArgs, validArgs } from "./gen.ts"

/**
 * The fuzzer's route table. Each route makes one plausible request from the current state; the main loop
 * then mutates some of them (body, id, query, headers, identity, signature). To cover a new route, add
 * an entry here: the summary lists requests per entry name.
 */

/** What the fuzzer has learned from earlier answers (ids to aim at). */
export class State {
  /** Jobs the coordinator accepted (201/200 on a submit): id → what was submitted. */
  readonly accepted = new Map<string, { label: string; binary: string; args: string[]; hostile: boolean }>()
  /** Recent job ids, for routes that take one. */
  readonly recent: string[] = []
  /** Assignments the fuzzer's own worker (fzw) was given, with the next output sequence number. */
  readonly assigned: { id: string; epoch: number; seq: number; started?: boolean }[] = []
  verifyToken = ""
  /** Throwaway identities the fuzzer created (the only ones it deletes or rotates). */
  readonly users: string[] = []
  /** Dashboard session cookie of fzadmin (`name=value`). */
  cookie = ""
  canary = ""
  dir = ""
  /** Also submit jobs with megabytes of arguments (`--fat-jobs`). */
  fatJobs = false
  n = 0

  remember(id: string) {
    this.recent.push(id)
    if (this.recent.length > 200) this.recent.splice(0, this.recent.length - 200)
  }
  jobId(g: Gen): string {
    if (this.recent.length && g.chance(0.85)) return g.pick(this.recent)
    return g.chance(0.5) ? VALID_ULID : badId(g)
  }
  /** An assignment of fzw (`running`: preferably one it started, for output uploads). */
  assignment(g: Gen, running = false): { id: string; epoch: number; seq: number; started?: boolean } {
    const started = this.assigned.filter((a) => a.started)
    if (running && started.length && g.chance(0.8)) return g.pick(started)
    if (this.assigned.length && g.chance(0.8)) return g.pick(this.assigned)
    return { id: this.jobId(g), epoch: g.int(0, 5), seq: 1 }
  }
}

export type BodyKind = "json" | "frames" | "none"

export interface Req {
  route: string
  method: string
  /** Path with `{id}` where the id goes. */
  path: string
  id?: string
  query: [string, string][]
  body?: Uint8Array | string
  bodyKind: BodyKind
  /** Frame kinds this route takes (for frame mutations). */
  frameKinds?: number[]
  headers: [string, string][]
  /** Signer; `null` sends it unsigned (open and dashboard routes). */
  as: IdentityName | null
  /** A worker-only route: the real worker fw1 is never used to sign it (its polls and jobs stay its own). */
  workerRoute?: boolean
  /** Keep reading a streaming answer this long, then hang up. */
  streamMs?: number
  /** Send the dashboard session cookie. */
  cookie?: boolean
  /** Labels of the request's shape and mutations, for the report. */
  labels: string[]
  /** Bytes written as they are to a TCP connection instead of an HTTP request (malformed HTTP). */
  raw?: Uint8Array
  /** Set for submits: what was submitted (recorded when accepted). */
  submit?: { label: string; binary: string; args: string[]; hostile: boolean }
}

export interface Route {
  name: string
  weight: number
  make(g: Gen, s: State): Req
}

const json = (v: unknown) => JSON.stringify(v)
const JSON_TYPE: [string, string] = ["content-type", "application/json"]
const FRAMES_TYPE: [string, string] = ["content-type", FRAMES_MEDIA_TYPE]
const base = (route: string, method: string, path: string, as: IdentityName | null, extra: Partial<Req> = {}): Req => ({
  route,
  method,
  path,
  query: [],
  bodyKind: "none",
  headers: [],
  as,
  labels: [],
  ...extra,
})

function submitBody(g: Gen, s: State): { body: string; submit: Req["submit"]; labels: string[] } {
  const n = ++s.n
  const shape = g.weighted<string>([
    [4, "valid"],
    [5, "hostile"],
    [3, "schema"],
  ])
  if (shape === "schema") {
    const v = validArgs(g, n)
    const broken: [string, Record<string, unknown>][] = [
      ["no-binary", { args: v.args, paths: v.paths, cwd: null }],
      [
        "binary-not-allowed",
        { ...v, binary: g.pick(["sh", "bash", "/usr/bin/ffmpeg", "../ffmpeg", "ffmpeg ", "FFMPEG", "ffplay"]) },
      ],
      ["args-not-array", { ...v, args: g.pick(["-version", 1, null, { 0: "-version" }]) }],
      ["arg-not-string", { ...v, args: ["-i", g.pick([1, null, true, {}, []])] }],
      [
        "paths-bad-name",
        { ...v, paths: [g.pick(["1x", "a-b", "", "$Media", "a".repeat(65), "Media/..", "__proto__"])] },
      ],
      ["paths-not-array", { ...v, paths: "Media" }],
      ["cwd-not-var", { ...v, cwd: g.pick(["/", "/tmp", "..", "relative", "file:/etc", ""]) }],
      ["cwd-type", { ...v, cwd: g.pick([1, true, []]) }],
      ["retries", { ...v, retries: g.pick([-1, 101, 1.5, "1", 1e308]) }],
      ["stdin-type", { ...v, stdin: g.pick(["yes", 1, null]) }],
      ["extra-field", { ...v, requester: "fzadmin", status: "completed", workerId: "fw1" }],
      ["too-many-paths", { ...v, paths: Array.from({ length: 257 }, (_, i) => `P${i}`) }],
      ["too-many-args", { ...v, args: Array.from({ length: 4097 }, () => "-y") }],
    ]
    const [label, body] = g.pick(broken)
    return { body: json(body), submit: undefined, labels: [`submit:${label}`] }
  }
  const job = shape === "valid" ? validArgs(g, n) : hostileArgs(g, n, s.canary, s.dir, s.fatJobs)
  const extra: Record<string, unknown> = {}
  if (g.chance(0.3)) extra.stdin = g.chance(0.5)
  if (g.chance(0.2)) extra.retries = g.int(0, 3)
  if (g.chance(0.1)) extra.attached = true
  const body = { binary: job.binary, args: job.args, paths: job.paths, cwd: job.cwd, ...extra }
  return {
    body: json(body),
    submit: { label: job.label, binary: job.binary, args: job.args, hostile: shape === "hostile" },
    labels: [`submit:${job.label}`],
  }
}

const registration = (g: Gen) => {
  const reg: Record<string, unknown> = {
    binaries: ["ffmpeg", "ffprobe"],
    paths: ["Media"],
    maxJobs: g.int(1, 4),
    version: "fuzz",
    draining: g.chance(0.1),
  }
  const caps = g.weighted<string>([
    [6, "none"],
    [1, "deep"],
    [1, "wide"],
    [1, "odd"],
  ])
  if (caps === "deep") {
    const depth = g.pick([100, 1000, 5000])
    reg.capabilities = JSON.parse('{"a":'.repeat(depth) + "1" + "}".repeat(depth))
  } else if (caps === "wide")
    reg.capabilities = Object.fromEntries(
      Array.from({ length: g.pick([100, 10_000]) }, (_, i) => [`k${i}`, "v".repeat(g.int(0, 200))]),
    )
  else if (caps === "odd")
    reg.capabilities = { __proto__: { x: 1 }, "": null, "\u0000": "\u0000", hw: ["vaapi", 1, null] }
  if (g.chance(0.15))
    reg.binaries = g.pick([["sh"], ["ffmpeg", "ffmpeg"], Array.from({ length: 65 }, (_, i) => `b${i}`), [""]])
  if (g.chance(0.1)) reg.maxJobs = g.pick([0, 1025, 1.5, -1, "2"])
  if (g.chance(0.1)) reg.version = "v".repeat(g.pick([64, 65, 10_000]))
  return reg
}

export const ROUTES: Route[] = [
  // ---- client side of jobs ----
  {
    name: "POST /api/v1/jobs",
    weight: 14,
    make(g, s) {
      const { body, submit, labels } = submitBody(g, s)
      const attach = g.chance(0.25)
      return base(
        "POST /api/v1/jobs",
        "POST",
        "/api/v1/jobs",
        g.chance(0.85) ? "fzclient" : g.pick(["fzclient2", "fzadmin"]),
        {
          body,
          bodyKind: "json",
          headers: [JSON_TYPE],
          query: attach ? [["attach", "1"]] : [],
          streamMs: attach ? g.int(50, 600) : undefined,
          submit,
          labels,
        },
      )
    },
  },
  {
    name: "GET /api/v1/jobs",
    weight: 4,
    make(g, s) {
      const q: [string, string][] = []
      if (g.chance(0.4)) q.push(["limit", String(g.pick([1, 10, 100, 1000, 5000]))])
      if (g.chance(0.3))
        q.push(["status", g.pick(["queued", "running", "completed", "failed", "canceled", "assigned", "bogus"])])
      if (g.chance(0.2))
        q.push(["since", g.pick([String(Date.now() - 60_000), "2026-01-01", "2026-13-45", "yesterday"])])
      if (g.chance(0.2)) q.push(["before", s.jobId(g)])
      if (g.chance(0.2)) q.push(["requester", g.pick(["fzclient", "fzclient2", "x"])])
      if (g.chance(0.1)) q.push(["worker", g.pick(["fw1", "fzw", "nobody"])])
      return base("GET /api/v1/jobs", "GET", "/api/v1/jobs", g.pick(["fzclient", "fzclient2", "fzadmin"]), { query: q })
    },
  },
  {
    name: "GET /api/v1/jobs/:id",
    weight: 4,
    make: (g, s) =>
      base("GET /api/v1/jobs/:id", "GET", "/api/v1/jobs/{id}", g.pick(["fzclient", "fzadmin", "fzclient2"]), {
        id: s.jobId(g),
      }),
  },
  {
    name: "GET /api/v1/jobs/:id/events",
    weight: 2,
    make: (g, s) =>
      base("GET /api/v1/jobs/:id/events", "GET", "/api/v1/jobs/{id}/events", g.pick(["fzclient", "fzadmin"]), {
        id: s.jobId(g),
      }),
  },
  {
    name: "POST /api/v1/jobs/:id/cancel",
    weight: 3,
    make: (g, s) =>
      base(
        "POST /api/v1/jobs/:id/cancel",
        "POST",
        "/api/v1/jobs/{id}/cancel",
        g.pick(["fzclient", "fzadmin", "fzclient2"]),
        { id: s.jobId(g) },
      ),
  },
  {
    name: "GET /api/v1/jobs/:id/stream",
    weight: 3,
    make: (g, s) =>
      base("GET /api/v1/jobs/:id/stream", "GET", "/api/v1/jobs/{id}/stream", g.pick(["fzclient", "fzadmin"]), {
        id: s.jobId(g),
        query: [
          ...(g.chance(0.5) ? [["after", String(g.int(0, 20))] as [string, string]] : []),
          ...(g.chance(0.5) ? [["progress", "1"] as [string, string]] : []),
        ],
        streamMs: g.int(50, 400),
      }),
  },
  {
    name: "POST /api/v1/jobs/:id/stdin",
    weight: 3,
    make(g, s) {
      let seq = g.int(1, 3)
      const { label, body } = frameBody(g, [Kind.stdin, Kind.stdinEnd, Kind.signal], () => seq++)
      return base("POST /api/v1/jobs/:id/stdin", "POST", "/api/v1/jobs/{id}/stdin", "fzclient", {
        id: s.jobId(g),
        body,
        bodyKind: "frames",
        frameKinds: [Kind.stdin, Kind.stdinEnd, Kind.signal],
        headers: [FRAMES_TYPE],
        labels: [`frames:${label}`],
      })
    },
  },
  {
    name: "GET /api/v1/jobs/:id/output",
    weight: 2,
    make: (g, s) =>
      base("GET /api/v1/jobs/:id/output", "GET", "/api/v1/jobs/{id}/output", g.pick(["fzclient", "fzadmin"]), {
        id: s.jobId(g),
        query: [
          ["after", String(g.int(0, 5))],
          ["limit", String(g.pick([1, 256, 1000, 1001, 0]))],
        ],
      }),
  },
  // ---- worker side of jobs (fzw, driven by the fuzzer) ----
  {
    name: "POST /api/v1/jobs/:id/start",
    weight: 2,
    make(g, s) {
      const a = s.assignment(g)
      return base("POST /api/v1/jobs/:id/start", "POST", "/api/v1/jobs/{id}/start", "fzw", {
        id: a.id,
        query: [["epoch", String(g.chance(0.8) ? a.epoch : g.int(0, 10))]],
        workerRoute: true,
      })
    },
  },
  {
    name: "POST /api/v1/jobs/:id/reject",
    weight: 1,
    make(g, s) {
      const a = s.assignment(g)
      return base("POST /api/v1/jobs/:id/reject", "POST", "/api/v1/jobs/{id}/reject", "fzw", {
        id: a.id,
        query: [["epoch", String(g.chance(0.8) ? a.epoch : g.int(0, 10))]],
        workerRoute: true,
      })
    },
  },
  {
    name: "POST /api/v1/jobs/:id/output",
    weight: 4,
    make(g, s) {
      const a = s.assignment(g, true)
      const kinds = [Kind.stdout, Kind.stderr, Kind.progress, Kind.exit]
      const { label, body } = frameBody(g, kinds, () => (g.chance(0.8) ? a.seq++ : g.int(0, 1_000_000)))
      return base("POST /api/v1/jobs/:id/output", "POST", "/api/v1/jobs/{id}/output", "fzw", {
        id: a.id,
        query: [["epoch", String(g.chance(0.8) ? a.epoch : g.int(0, 10))]],
        body,
        bodyKind: "frames",
        frameKinds: kinds,
        headers: [FRAMES_TYPE],
        labels: [`frames:${label}`],
        workerRoute: true,
      })
    },
  },
  {
    name: "GET /api/v1/jobs/:id/input",
    weight: 2,
    make(g, s) {
      const a = s.assignment(g)
      return base("GET /api/v1/jobs/:id/input", "GET", "/api/v1/jobs/{id}/input", "fzw", {
        id: a.id,
        query: [
          ["epoch", String(a.epoch)],
          ["after", String(g.int(0, 3))],
        ],
        streamMs: g.int(50, 300),
        workerRoute: true,
      })
    },
  },
  // ---- worker channel ----
  {
    name: "POST /api/v1/worker/register",
    weight: 3,
    make: (g) =>
      base("POST /api/v1/worker/register", "POST", "/api/v1/worker/register", "fzw", {
        body: json(registration(g)),
        bodyKind: "json",
        headers: [JSON_TYPE],
        workerRoute: true,
      }),
  },
  {
    name: "POST /api/v1/worker/verify",
    weight: 2,
    make: (g, s) =>
      base("POST /api/v1/worker/verify", "POST", "/api/v1/worker/verify", "fzw", {
        body: json({
          token:
            s.verifyToken && g.chance(0.7) ? s.verifyToken : g.pick(["", "x".repeat(64), "x".repeat(65), g.word()]),
        }),
        bodyKind: "json",
        headers: [JSON_TYPE],
        workerRoute: true,
      }),
  },
  {
    name: "POST /api/v1/worker/deregister",
    weight: 0.5,
    make: () =>
      base("POST /api/v1/worker/deregister", "POST", "/api/v1/worker/deregister", "fzw", { workerRoute: true }),
  },
  {
    name: "POST /api/v1/worker/heartbeat",
    weight: 2,
    make(g, s) {
      const jobs = g.chance(0.7)
        ? s.assigned.slice(0, 20).map((a) => ({ id: a.id, epoch: a.epoch }))
        : Array.from({ length: g.pick([0, 1, 4096, 4097]) }, () => ({
            id: s.jobId(g).slice(0, 26),
            epoch: g.int(0, 9),
          }))
      return base("POST /api/v1/worker/heartbeat", "POST", "/api/v1/worker/heartbeat", "fzw", {
        body: json({ jobs }),
        bodyKind: "json",
        headers: [JSON_TYPE],
        workerRoute: true,
      })
    },
  },
  {
    name: "GET /api/v1/worker/poll",
    weight: 3,
    make: (g) =>
      base("GET /api/v1/worker/poll", "GET", "/api/v1/worker/poll", "fzw", {
        query: [["wait", g.pick(["0", "0", "0.05", "0.3", "1", "999999999"])]],
        workerRoute: true,
      }),
  },
  // ---- pool and administration ----
  {
    name: "GET /api/v1/workers",
    weight: 2,
    make: (g) => base("GET /api/v1/workers", "GET", "/api/v1/workers", g.pick(["fzclient", "fzadmin", "fzw"])),
  },
  {
    name: "GET /api/v1/workers/:id",
    weight: 2,
    make: (g) =>
      base("GET /api/v1/workers/:id", "GET", "/api/v1/workers/{id}", g.pick(["fzclient", "fzadmin"]), {
        id: g.chance(0.6) ? g.pick(["fw1", "fzw"]) : badId(g),
      }),
  },
  {
    name: "GET /api/v1/admin/users",
    weight: 1,
    make: () => base("GET /api/v1/admin/users", "GET", "/api/v1/admin/users", "fzadmin"),
  },
  {
    name: "POST /api/v1/admin/users",
    weight: 1,
    make(g, s) {
      const name = `fzu${s.n++}`
      const body = g.chance(0.6)
        ? { name, role: g.pick(["client", "worker", "admin"]) }
        : g.pick<Record<string, unknown>>([
            { name: "fzadmin", role: "admin" },
            { name: "bad name", role: "client" },
            { name, role: "root" },
            { name },
            { name, role: "client", key: "AAAA" },
            { name: "a".repeat(65), role: "client" },
          ])
      return base("POST /api/v1/admin/users", "POST", "/api/v1/admin/users", "fzadmin", {
        body: json(body),
        bodyKind: "json",
        headers: [JSON_TYPE],
      })
    },
  },
  {
    name: "GET /api/v1/admin/users/:name",
    weight: 1,
    make: (g, s) =>
      base("GET /api/v1/admin/users/:name", "GET", "/api/v1/admin/users/{id}", "fzadmin", {
        id: g.chance(0.5) ? g.pick(["fzadmin", ...s.users]) : badId(g),
      }),
  },
  // Only throwaway identities (or names that do not exist) are removed or rotated: the fuzzer needs its own.
  // (A method mutation can turn any /admin/users/:name request into a DELETE: none aims at fw1 or fzw.)
  {
    name: "DELETE /api/v1/admin/users/:name",
    weight: 1,
    make: (g, s) =>
      base("DELETE /api/v1/admin/users/:name", "DELETE", "/api/v1/admin/users/{id}", "fzadmin", {
        id: s.users.length && g.chance(0.6) ? s.users.pop()! : g.pick(["nobody", "fzadmin", "%2e%2e", "a".repeat(65)]),
      }),
  },
  {
    name: "POST /api/v1/admin/users/:name/rotate-key",
    weight: 1,
    make: (g, s) =>
      base("POST /api/v1/admin/users/:name/rotate-key", "POST", "/api/v1/admin/users/{id}/rotate-key", "fzadmin", {
        id: s.users.length && g.chance(0.6) ? g.pick(s.users) : g.pick(["nobody", "x y", ""]),
      }),
  },
  {
    name: "POST /api/v1/admin/workers/:id/drain",
    weight: 1,
    make: (g) =>
      base("POST /api/v1/admin/workers/:id/drain", "POST", "/api/v1/admin/workers/{id}/drain", "fzadmin", {
        id: g.pick(["fzw", "nobody", "a".repeat(300), "%00"]),
      }),
  },
  {
    name: "POST /api/v1/admin/workers/:id/undrain",
    weight: 1,
    make: (g) =>
      base("POST /api/v1/admin/workers/:id/undrain", "POST", "/api/v1/admin/workers/{id}/undrain", "fzadmin", {
        id: g.pick(["fzw", "fw1", "nobody"]),
      }),
  },
  {
    name: "GET /api/v1/admin/jobs/:id/log",
    weight: 2,
    make: (g, s) =>
      base("GET /api/v1/admin/jobs/:id/log", "GET", "/api/v1/admin/jobs/{id}/log", "fzadmin", {
        id: s.jobId(g),
        query: [["tail", String(g.pick([1, 10, 1000, 1001, 0]))]],
      }),
  },
  {
    name: "POST /api/v1/admin/janitor",
    weight: 0.5,
    make: () => base("POST /api/v1/admin/janitor", "POST", "/api/v1/admin/janitor", "fzadmin"),
  },
  {
    name: "other /api/*",
    weight: 1,
    make: (g) =>
      base(
        "other /api/*",
        g.pick(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
        g.pick([
          "/api",
          "/api/v1",
          "/api/v2/jobs",
          "/api/v1/jobs/{id}/x",
          "/api/v1/admin",
          "/api/v1/admin/users/{id}/x",
          "/api/v1//jobs",
          "/api/v1/jobs/",
          "/API/v1/jobs",
          "/api/v1/worker",
          "/api/v1/workers/{id}/drain",
        ]),
        g.pick(["fzclient", "fzadmin", "fzw"]),
        { id: badId(g) },
      ),
  },
  // ---- open routes ----
  { name: "GET /health", weight: 2, make: () => base("GET /health", "GET", "/health", null) },
  { name: "GET /metrics", weight: 1, make: () => base("GET /metrics", "GET", "/metrics", null) },
  // ---- dashboard ----
  {
    name: "GET /",
    weight: 1,
    make: (g) => base("GET /", "GET", g.pick(["/", "/index.html", "//", "/?x=<script>"]), null),
  },
  {
    name: "GET /assets/:name",
    weight: 1,
    make: (g) =>
      base("GET /assets/:name", "GET", "/assets/{id}", null, {
        id: g.pick(["app.js", "app.css", "favicon.svg", "../index.ts", "%2e%2e%2fviews.ts", "x".repeat(5000)]),
      }),
  },
  {
    name: "GET /dashboard/api/session",
    weight: 1,
    make: (g) => base("GET /dashboard/api/session", "GET", "/dashboard/api/session", null, { cookie: g.chance(0.5) }),
  },
  {
    name: "POST /dashboard/login",
    weight: 1,
    make(g) {
      const body = g.pick<unknown>([
        { name: "fzadmin", key: "__KEY__" },
        { name: "fzadmin", key: "wrong" },
        { name: "fzclient", key: "__CLIENTKEY__" },
        { name: "nobody", key: "x" },
        { name: "x".repeat(65), key: "" },
        { name: "fzadmin" },
      ])
      return base("POST /dashboard/login", "POST", "/dashboard/login", null, {
        body: json(body),
        bodyKind: "json",
        headers: [JSON_TYPE, ["x-dffmpeg-dashboard", "1"]],
      })
    },
  },
  {
    name: "POST /dashboard/logout",
    weight: 0.5,
    make: () =>
      base("POST /dashboard/logout", "POST", "/dashboard/logout", null, { headers: [["x-dffmpeg-dashboard", "1"]] }),
  },
  {
    name: "GET /dashboard/api/state",
    weight: 2,
    make: (g) => base("GET /dashboard/api/state", "GET", "/dashboard/api/state", null, { cookie: g.chance(0.5) }),
  },
  {
    name: "GET /dashboard/api/jobs/:id",
    weight: 2,
    make: (g, s) =>
      base("GET /dashboard/api/jobs/:id", "GET", "/dashboard/api/jobs/{id}", null, {
        id: s.jobId(g),
        cookie: g.chance(0.5),
      }),
  },
  {
    name: "GET /dashboard/api/events",
    weight: 2,
    make: (g, s) =>
      base("GET /dashboard/api/events", "GET", "/dashboard/api/events", null, {
        query: g.chance(0.5) ? [["job", s.jobId(g)]] : [],
        streamMs: g.int(50, 500),
        cookie: g.chance(0.5),
      }),
  },
  {
    name: "POST /dashboard/api/jobs/:id/cancel",
    weight: 1,
    make: (g, s) =>
      base("POST /dashboard/api/jobs/:id/cancel", "POST", "/dashboard/api/jobs/{id}/cancel", null, {
        id: s.jobId(g),
        cookie: g.chance(0.8),
        headers: [["x-dffmpeg-dashboard", "1"]],
      }),
  },
  {
    name: "POST /dashboard/api/workers/:id/drain",
    weight: 1,
    make: (g) => {
      // Never fw1: a mutated body could drain it, and a drained real worker runs nothing for the rest of the run.
      const id = g.pick(["fzw", "nobody", "a b"])
      const on = g.chance(0.5)
      return base("POST /dashboard/api/workers/:id/drain", "POST", "/dashboard/api/workers/{id}/drain", null, {
        id,
        body: json(g.chance(0.8) ? { on } : { on: "yes" }),
        bodyKind: "json",
        cookie: g.chance(0.8),
        headers: [JSON_TYPE, ["x-dffmpeg-dashboard", "1"]],
      })
    },
  },
  {
    name: "raw HTTP",
    weight: 1,
    make(g) {
      const crlf = (lines: string[]) => lines.join("\r\n")
      const cases: [string, string | Uint8Array][] = [
        ["garbage", g.bytes(g.int(1, 2048))],
        ["no-host", crlf(["GET /health HTTP/1.1", "", ""])],
        ["http10", crlf(["GET /health HTTP/1.0", "", ""])],
        ["h2-preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"],
        ["huge-uri", crlf([`GET /api/v1/jobs/${"a".repeat(g.pick([20_000, 200_000]))} HTTP/1.1`, "Host: x", "", ""])],
        ["header-no-colon", crlf(["GET /health HTTP/1.1", "Host: x", "this is not a header", "", ""])],
        ["nul-in-header", crlf(["GET /health HTTP/1.1", "Host: x", "X-A: a\u0000b", "", ""])],
        [
          "bad-content-length",
          crlf([
            "POST /api/v1/jobs HTTP/1.1",
            "Host: x",
            `Content-Length: ${g.pick(["abc", "-1", "1e3", "99999999999999999999"])}`,
            "",
            "{}",
          ]),
        ],
        [
          "two-content-lengths",
          crlf(["POST /api/v1/jobs HTTP/1.1", "Host: x", "Content-Length: 2", "Content-Length: 5", "", "{}"]),
        ],
        [
          "bad-chunked",
          crlf(["POST /api/v1/jobs HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", "", "zz", "abc", "0", "", ""]),
        ],
        [
          "chunked-and-length",
          crlf([
            "POST /api/v1/jobs HTTP/1.1",
            "Host: x",
            "Transfer-Encoding: chunked",
            "Content-Length: 3",
            "",
            "3",
            "abc",
            "0",
            "",
            "",
          ]),
        ],
        ["short-body", crlf(["POST /api/v1/admin/users HTTP/1.1", "Host: x", "Content-Length: 1000", "", '{"name":'])],
        [
          "declared-huge",
          crlf([
            "POST /api/v1/jobs/x/output HTTP/1.1",
            "Host: x",
            `Content-Length: ${g.pick([9_000_000, 2 ** 31, 2 ** 40])}`,
            "",
            "abc",
          ]),
        ],
        [
          "pipelined",
          crlf([
            "GET /health HTTP/1.1",
            "Host: x",
            "",
            "GET /metrics HTTP/1.1",
            "Host: x",
            "",
            "GET /nope HTTP/1.1",
            "Host: x",
            "",
            "",
          ]),
        ],
        [
          "odd-method",
          crlf([
            `${g.pick(["BREW", "get", "G E T", "CONNECT", "TRACE", "M".repeat(5000)])} /health HTTP/1.1`,
            "Host: x",
            "",
            "",
          ]),
        ],
        ["absolute-uri", crlf(["GET http://evil.example/dashboard/api/state HTTP/1.1", "Host: x", "", ""])],
        [
          "many-headers",
          crlf(["GET /health HTTP/1.1", "Host: x", ...Array.from({ length: 2000 }, (_, i) => `X-${i}: ${i}`), "", ""]),
        ],
        ["bare-lf", "GET /health HTTP/1.1\nHost: x\n\n"],
      ]
      const [label, bytes] = g.pick(cases)
      return base("raw HTTP", "RAW", "", null, {
        raw: typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes,
        labels: [`raw:${label}`],
      })
    },
  },
  {
    name: "other path",
    weight: 1,
    make: (g) =>
      base(
        "other path",
        g.pick(["GET", "POST", "PUT", "DELETE"]),
        g.pick([
          "/favicon.ico",
          "/robots.txt",
          "/.env",
          "/dashboard",
          "/dashboard/api",
          "/dashboard/api/jobs",
          "/metrics/x",
          "/health/",
          "/%00",
          "/..%2f..%2fetc%2fpasswd",
          "/" + "a".repeat(8000),
        ]),
        null,
      ),
  },
]
