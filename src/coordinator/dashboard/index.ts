import { Hono, type Context } from "hono"
import { deleteCookie, getCookie, setCookie } from "hono/cookie"
import { createMiddleware } from "hono/factory"
import * as v from "valibot"
import { AuthError, InvalidError, NotFoundError, ThrottledError } from "../../shared/errors.ts"
import { isName, isUlid } from "../../shared/ids.ts"
import { allowed, parseCidr, type Cidr } from "../../shared/net/cidr.ts"
import { TERMINAL, issueLines, type JobStatus } from "../../shared/protocol/schemas.ts"
import { connectionsOf, type Deps } from "../api/app.ts"
import { readCapped } from "../api/body.ts"
import { jobId, nameParam } from "../api/_util.ts"
import type { AuthEnv } from "../api/middleware/hmac.ts"
import { ipAllowList, peerAddress } from "../api/middleware/ip.ts"
import { cancelJob, retryJob } from "../jobs.ts"
import { liveEvents } from "./live.ts"
import {
  SESSION_COOKIE,
  createSignInThrottle,
  issueSession,
  signIn,
  useSignInLink,
  verifySession,
  type Session,
} from "./session.ts"
import {
  MAX_PAGE,
  MAX_SEARCH,
  jobView,
  readFinished,
  readJob,
  readState,
  readThroughput,
  type FinishedQuery,
} from "./views.ts"
import appCss from "./assets/app.css" with { type: "text" }
import appJs from "./assets/app.js" with { type: "text" }
import favicon from "./assets/favicon.svg" with { type: "text" }
import page from "./assets/index.html" with { type: "text" }

/** Nothing but the page's own files: no inline script or style, no other origin, no framing. */
export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/** Header every dashboard POST must carry: a cross-site form cannot set it, and a cross-site fetch that does needs CORS, which is never granted. */
export const CSRF_HEADER = "x-dffmpeg-dashboard"

// A string at run time (`type: "text"`); bun-types declares every `*.html` import as an HTML bundle.
const INDEX_HTML = page as unknown as string

const ASSETS = new Map([
  ["app.js", { body: appJs, type: "text/javascript; charset=utf-8" }],
  ["app.css", { body: appCss, type: "text/css; charset=utf-8" }],
  ["favicon.svg", { body: favicon, type: "image/svg+xml" }],
])

/** Largest sign-in or action body. */
const MAX_FORM = 4096

const Login = v.strictObject({
  name: v.pipe(v.string(), v.maxLength(64)),
  key: v.pipe(v.string(), v.maxLength(512)),
})
const Drain = v.strictObject({ on: v.boolean() })

/** Stored stderr chunks a log download reads at most (ffmpeg writes about a line per chunk). */
const LOG_CHUNKS = 100_000

/** A refusal shown as a page, not JSON: what a browser that followed a link sees. */
const linkRefused = (message: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dffmpeg: sign-in link refused</title><link rel="icon" type="image/svg+xml" href="../assets/favicon.svg">
<link rel="stylesheet" href="../assets/app.css"></head>
<body><main id="view"><section class="card center"><h2>Sign-in link refused</h2>
<p class="muted" id="link-refused">${message}</p>
<p><a class="btn" href="../">Open the dashboard</a></p></section></main></body></html>`

const securityHeaders = createMiddleware<AuthEnv>(async (c, next) => {
  c.header("Content-Security-Policy", CSP)
  c.header("X-Content-Type-Options", "nosniff")
  c.header("Referrer-Policy", "no-referrer")
  c.header("X-Frame-Options", "DENY")
  await next()
})

async function readBody<S extends v.GenericSchema>(c: Context<AuthEnv>, schema: S): Promise<v.InferOutput<S>> {
  // Counted as it streams: Bun's own body limit is far above this (coordinator/index.ts).
  const buf = await readCapped(c.req.raw, { bytes: MAX_FORM, key: "the dashboard's form limit" })
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buf))
  } catch {
    throw new InvalidError("request body is not valid JSON")
  }
  const res = v.safeParse(schema, value)
  if (!res.success) throw new InvalidError("invalid request body", issueLines(res.issues))
  return res.output
}

/**
 * The web dashboard: the page and its files at `/` and `/assets/*`, its JSON, live events, sign-in and
 * repair actions under `/dashboard/*`. Every route is behind `allowed_dashboard_ips`. Reading is open
 * to the allowed peers unless `dashboard_require_login`; actions always need an admin sign-in.
 */
export function dashboardRoutes(deps: Deps): Hono<AuthEnv> {
  const { store, config, log, now } = deps
  const app = new Hono<AuthEnv>()
  const connections = connectionsOf(deps)
  const trusted = config.trusted_proxies.map((t) => parseCidr(t)).filter((r): r is Cidr => !!r)
  const cookiePath = config.path_base ? "/" + config.path_base.replace(/^\/+|\/+$/g, "") : "/"

  const enabled = createMiddleware<AuthEnv>(async (_c, next) => {
    if (!config.web_dashboard_enabled)
      throw new NotFoundError("the web dashboard is disabled (web_dashboard_enabled: false)")
    await next()
  })

  /** True when the socket's peer is a reverse proxy whose X-Forwarded-* headers are believed. */
  const viaProxy = (c: Context<AuthEnv>) => allowed(c.env?.server?.requestIP(c.req.raw)?.address, trusted)
  const forwarded = (c: Context<AuthEnv>, name: string) =>
    viaProxy(c) ? c.req.header(name)?.split(",")[0].trim() : undefined

  /** The host names this request was addressed to, as a browser on this page would write its Origin. */
  const ownHosts = (c: Context<AuthEnv>) =>
    [new URL(c.req.url).host, forwarded(c, "x-forwarded-host")].filter(Boolean).map((h) => h!.toLowerCase())

  /** Refuses a POST that did not come from the dashboard page itself (cross-site request forgery). */
  const sameOrigin = createMiddleware<AuthEnv>(async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD") return next()
    if (c.req.header(CSRF_HEADER) !== "1")
      throw new AuthError(`dashboard actions need the header X-Dffmpeg-Dashboard: 1`, 403)
    const site = c.req.header("sec-fetch-site")
    if (site && site !== "same-origin" && site !== "none") throw new AuthError("cross-site request refused", 403)
    const origin = c.req.header("origin")
    if (origin !== undefined) {
      let host: string | undefined
      try {
        host = new URL(origin).host.toLowerCase()
      } catch {
        host = undefined
      }
      if (!host || !ownHosts(c).includes(host)) throw new AuthError("cross-origin request refused", 403)
    }
    await next()
  })

  const guard = [
    securityHeaders,
    enabled,
    ipAllowList(config.allowed_dashboard_ips, config.trusted_proxies, "the dashboard", "allowed_dashboard_ips"),
    sameOrigin,
  ]
  // Only the dashboard's own paths: a catch-all here would also run for the API and for unknown paths.
  for (const path of ["/", "/assets/*", "/dashboard/*"]) app.use(path, ...guard)

  const overHttps = (c: Context<AuthEnv>) =>
    new URL(c.req.url).protocol === "https:" || forwarded(c, "x-forwarded-proto")?.toLowerCase() === "https"
  const cookieOptions = (c: Context<AuthEnv>, maxAge?: number) => ({
    path: cookiePath,
    httpOnly: true,
    sameSite: "Strict" as const,
    secure: overHttps(c),
    ...(maxAge !== undefined ? { maxAge } : {}),
  })

  const sessionOf = async (c: Context<AuthEnv>): Promise<Session | undefined> => {
    const token = getCookie(c, SESSION_COOKIE)
    return token ? verifySession(store, token, now()) : undefined
  }
  /** Reading: open unless sign-in is required. */
  const viewer = async (c: Context<AuthEnv>) => {
    const s = await sessionOf(c)
    if (!s && config.dashboard_require_login)
      throw new AuthError("sign in to the dashboard with an admin identity (dashboard_require_login is on)")
    return s
  }
  /** Repairs: always an admin sign-in. */
  const admin = async (c: Context<AuthEnv>): Promise<Session> => {
    const s = await sessionOf(c)
    if (!s) throw new AuthError("sign in to the dashboard with an admin identity first")
    return s
  }

  app.get("/", (c) => {
    const url = new URL(c.req.url)
    // `/base` → `/base/`: the page's relative URLs (assets/app.js) must resolve inside the base.
    if (!url.pathname.endsWith("/"))
      return c.redirect(`${url.pathname.slice(url.pathname.lastIndexOf("/") + 1)}/${url.search}`, 308)
    return c.html(INDEX_HTML)
  })

  app.get("/assets/:name", (c) => {
    const name = c.req.param("name")
    const asset = ASSETS.get(name)
    if (!asset) throw new NotFoundError(`no dashboard file ${name.slice(0, 64)}`)
    return c.body(asset.body, 200, { "Content-Type": asset.type })
  })

  app.get("/dashboard/api/session", async (c) => {
    const s = await sessionOf(c)
    return c.json({
      user: s?.name ?? null,
      expiresAt: s?.expiresAt ?? null,
      loginRequired: config.dashboard_require_login,
    })
  })

  // Per coordinator process: a cluster of coordinators multiplies the attempts by their number.
  const throttle = createSignInThrottle({ now })

  app.post("/dashboard/login", async (c) => {
    const { name, key } = await readBody(c, Login)
    const who = { name: isName(name) ? name : "(invalid)", ip: peerAddress(c, trusted) ?? "-" }
    const wait = throttle.wait(who.ip, who.name)
    if (wait > 0) {
      const secs = Math.ceil(wait / 1000)
      log.warn("dashboard sign-in throttled", { ...who, retryAfter: secs })
      c.header("Retry-After", String(secs))
      throw new ThrottledError(
        `too many failed sign-ins from this address or for this name; try again in ${secs} s`,
        secs,
      )
    }
    const res = await signIn(store, name, key)
    if (!res.ok) throttle.failed(who.ip, who.name)
    if (!res.ok) {
      log.warn("dashboard sign-in refused", { ...who, reason: res.reason })
      if (res.reason === "not-admin")
        throw new AuthError(`${name} is a ${res.role} identity; the dashboard takes an admin identity`, 403)
      throw new AuthError("wrong name or key")
    }
    const hours = config.dashboard_session_hours
    // Whole seconds: the cookie carries the expiry in unix seconds.
    const expiresAt = Math.floor((now() + hours * 3600_000) / 1000) * 1000
    const token = issueSession(name, res.user.key, expiresAt)
    if (!token) {
      throttle.failed(who.ip, who.name)
      log.warn("dashboard sign-in refused", { ...who, reason: "unusable key" })
      throw new AuthError("wrong name or key")
    }
    throttle.succeeded(who.ip, who.name)
    setCookie(c, SESSION_COOKIE, token, cookieOptions(c, Math.floor(hours * 3600)))
    log.info("dashboard sign-in", who)
    return c.json({ user: name, expiresAt })
  })

  app.post("/dashboard/logout", (c) => {
    deleteCookie(c, SESSION_COOKIE, cookieOptions(c))
    return c.json({ user: null })
  })

  app.get("/dashboard/api/state", async (c) => {
    await viewer(c)
    return c.json(await readState(deps))
  })

  app.get("/dashboard/api/jobs/:id", async (c) => {
    await viewer(c)
    const id = jobId(c.req.param("id"))
    const detail = await readJob(store, id)
    if (!detail) throw new NotFoundError(`no job ${id}`)
    return c.json(detail)
  })

  app.get("/dashboard/api/events", async (c) => {
    await viewer(c)
    const raw = c.req.query("job")
    const job = raw === undefined ? undefined : jobId(raw)
    if (job && !(await store.getJobSummary(job, { argsChars: 2 }))) throw new NotFoundError(`no job ${job}`)
    const authorized = config.dashboard_require_login ? async () => !!(await sessionOf(c)) : undefined
    // Counted per address and in all before any state is read; given back when the page goes away.
    const slot = connections.dashboard(peerAddress(c, trusted) ?? "-", c.req.raw.signal)
    return liveEvents(c, deps, { job, authorized, onEnd: slot })
  })

  /**
   * A one-time sign-in link (`dffmpeg admin dashboard-link`): the first use sets the session cookie,
   * deletes the link and sends the browser to the page without the token in its address; any later
   * use, an expired or unknown token, gets a page that says to ask for a new link. The token is in the
   * query, and the coordinator only ever logs paths: it never reaches a log.
   */
  app.get("/dashboard/link", async (c) => {
    c.header("Cache-Control", "no-store")
    const ip = peerAddress(c, trusted) ?? "-"
    const token = c.req.query("token") ?? ""
    // Per address only (the name key is the address too): a token is 256 random bits, not guessable, so
    // what this stops is a flood; a shared key would let one address lock every link out.
    const who = `(sign-in link) ${ip}`
    const wait = throttle.wait(ip, who)
    if (wait > 0) {
      c.header("Retry-After", String(Math.ceil(wait / 1000)))
      return c.html(
        linkRefused("Too many refused sign-in links from this address: wait a little, then try a new one."),
        429,
      )
    }
    const user = await useSignInLink(store, token, now())
    const expiresAt = Math.floor((now() + config.dashboard_session_hours * 3600_000) / 1000) * 1000
    const cookie = user && issueSession(user.name, user.key, expiresAt)
    if (!user || !cookie) {
      throttle.failed(ip, who)
      log.warn("dashboard sign-in link refused", { ip })
      return c.html(
        linkRefused(
          "This sign-in link was already used, has expired or is not valid. Each link signs in once: ask for a new one with <code>dffmpeg admin dashboard-link</code>.",
        ),
        410,
      )
    }
    setCookie(c, SESSION_COOKIE, cookie, cookieOptions(c, Math.floor(config.dashboard_session_hours * 3600)))
    log.info("dashboard sign-in by link", { name: user.name, ip })
    // `../`: from .../dashboard/link to the page at the base, relative so that a proxy's prefix holds.
    return c.redirect("../", 303)
  })

  /** `?status=&worker=&requester=&q=&before=&limit=`: one page of finished jobs (views.ts readFinished). */
  app.get("/dashboard/api/finished", async (c) => {
    await viewer(c)
    const q: FinishedQuery = { statuses: [...TERMINAL], limit: 50 }
    const status = c.req.query("status")
    if (status) {
      if (!TERMINAL.includes(status as JobStatus))
        throw new InvalidError(`status must be one of ${TERMINAL.join(", ")}`)
      q.statuses = [status as JobStatus]
    }
    for (const key of ["worker", "requester"] as const) {
      const val = c.req.query(key)
      if (!val) continue
      if (!isName(val)) throw new InvalidError(`${key} must be a name (1-64 letters, digits, '_' or '-')`)
      q[key] = val
    }
    const text = c.req.query("q")
    if (text) {
      if (text.length > MAX_SEARCH) throw new InvalidError(`q must be at most ${MAX_SEARCH} characters`)
      q.text = text
    }
    const before = c.req.query("before")
    if (before) {
      if (!isUlid(before)) throw new InvalidError("before must be a job id (the `next` of the previous page)")
      q.before = before
    }
    const limit = c.req.query("limit")
    if (limit !== undefined) {
      const n = Number(limit)
      if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE)
        throw new InvalidError(`limit must be a whole number from 1 to ${MAX_PAGE}`)
      q.limit = n
    }
    return c.json(await readFinished(store, q))
  })

  app.get("/dashboard/api/throughput", async (c) => {
    await viewer(c)
    return c.json(await readThroughput(store, now()))
  })

  /** The job's stored stderr as a file, exactly as stored, at most `limits.max_log_tail_bytes` (its end). */
  app.get("/dashboard/api/jobs/:id/log", async (c) => {
    await viewer(c)
    const id = jobId(c.req.param("id"))
    if (!(await store.getJobSummary(id, { argsChars: 2 }))) throw new NotFoundError(`no job ${id}`)
    const maxBytes = config.limits.max_log_tail_bytes
    const read = await store.lastOutputBytes(id, "stderr", LOG_CHUNKS, maxBytes)
    const body = Buffer.concat(read.rows.map((r) => r.data))
    if (read.truncated) c.header("X-DFFmpeg-Log-Truncated", `${maxBytes} bytes (limits.max_log_tail_bytes)`)
    return c.body(body, 200, {
      "Content-Type": "text/plain; charset=utf-8",
      "Content-Disposition": `attachment; filename="dffmpeg-${id}-stderr.log"`,
      "Cache-Control": "no-store",
    })
  })

  app.post("/dashboard/api/jobs/:id/retry", async (c) => {
    const s = await admin(c)
    const id = jobId(c.req.param("id"))
    const agingMs = config.scheduling.aging_seconds * 1000
    const job = await retryJob(store, id, { name: s.name, from: "dashboard" }, now(), agingMs, { log })
    return c.json({ job: jobView(job) }, 201)
  })

  app.post("/dashboard/api/jobs/:id/cancel", async (c) => {
    const s = await admin(c)
    const id = jobId(c.req.param("id"))
    const done = await cancelJob(store, id, { name: s.name, from: "dashboard" }, now(), { log })
    return c.json({ job: jobView(done) }, done.status === "canceled" ? 200 : 202)
  })

  app.post("/dashboard/api/workers/:id/drain", async (c) => {
    const s = await admin(c)
    const id = nameParam(c.req.param("id"), "worker")
    const { on } = await readBody(c, Drain)
    const worker = await store.requestDrain(id, on, now())
    if (!worker) throw new NotFoundError(`no worker ${id}`)
    log.info(on ? "worker drain requested" : "worker undrain requested", { worker: id, by: s.name, from: "dashboard" })
    return c.json({ worker })
  })

  return app
}
