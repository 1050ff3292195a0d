// The dffmpeg dashboard: a plain ES module, no framework and no build step. Everything the coordinator
// sends is data, and data only ever enters the page as text (textContent / createTextNode): worker
// versions, capabilities, job arguments and logs come from other machines and are never markup.
// Every URL is relative, so the page works under a reverse proxy's path prefix.

const THEME_KEY = "dffmpeg.theme"
const LOG_MAX_CHARS = 256 * 1024
const NOTICE_MS = 6000
const ACTIVE = ["queued", "assigned", "running"]

const app = {
  session: { user: null, loginRequired: false },
  state: null,
  /** Coordinator clock minus browser clock: ages are shown against the coordinator's time. */
  skew: 0,
  route: { name: "overview" },
  /** The followed job on a job page, and whether it turned out not to exist. */
  job: null,
  jobMissing: false,
  /** The followed job's log: complete lines (newest LOG_MAX_CHARS) and the line being written. */
  log: "",
  partial: "",
  source: null,
  retryTimer: 0,
  retryMs: 1000,
  /** The finished-jobs list: its filter, the `before` cursor of each page seen (keyset paging), the page shown. */
  finished: {
    filter: { status: "", worker: "", requester: "", q: "" },
    size: 25,
    cursors: [null],
    page: 0,
    next: null,
  },
  /** Finished-job counts of the last state: a change reloads the list's first page and the chart. */
  finishedKey: "",
}

const $ = (id) => document.getElementById(id)
const serverNow = () => Date.now() + app.skew

// ---------------------------------------------------------------- DOM

/** Builds an element. Children that are strings become text nodes; props are DOM properties. */
function h(tag, props, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (k === "class") el.className = v
    else if (k === "data") Object.assign(el.dataset, v)
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v)
    else if (k in el) el[k] = v
    else el.setAttribute(k, v === true ? "" : String(v))
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue
    el.append(typeof c === "object" ? c : document.createTextNode(String(c)))
  }
  return el
}

const setText = (el, s) => {
  const t = String(s ?? "")
  if (el.textContent !== t) el.textContent = t
}

function badge(text, tone) {
  return h("span", { class: `badge ${tone}` }, text)
}

// ---------------------------------------------------------------- formatting

function fmtDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return "—"
  const s = Math.max(0, ms) / 1000
  if (s < 10) return `${s.toFixed(1)} s`
  if (s < 60) return `${Math.floor(s)} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} m ${String(Math.floor(s % 60)).padStart(2, "0")} s`
  const hours = Math.floor(m / 60)
  if (hours < 48) return `${hours} h ${String(m % 60).padStart(2, "0")} m`
  return `${Math.floor(hours / 24)} d ${hours % 24} h`
}

function fmtAgo(t) {
  if (t == null) return "—"
  const ms = serverNow() - t
  return ms < 1500 ? "just now" : `${fmtDuration(ms).replace(/\.\d s$/, " s")} ago`
}

function fmtClock(t) {
  if (t == null) return "—"
  const d = new Date(t)
  const today = new Date(serverNow()).toDateString() === d.toDateString()
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
  return today ? time : `${d.toLocaleDateString()} ${time}`
}

function fmtSpeed(x) {
  // ffmpeg reports 0 before its first frame: no speed yet.
  if (x == null || x <= 0) return null
  return `${x < 1 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x)}×`
}

function fmtMediaTime(ms) {
  const s = Math.floor(ms / 1000)
  const pad = (n) => String(n).padStart(2, "0")
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`
}

/** Arguments as one shell line, quoted where needed (for reading and copying, never executed here). */
function shellLine(binary, args) {
  const q = (a) => (a !== "" && /^[A-Za-z0-9_@%+=:,./$-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)
  return [binary, ...args].map(q).join(" ")
}

function statusTone(status, canceling) {
  if (canceling) return "warn"
  return (
    { queued: "muted", assigned: "info", running: "accent", completed: "ok", failed: "bad", canceled: "warn" }[
      status
    ] ?? "muted"
  )
}

function workerTone(status) {
  return { online: "ok", draining: "warn", registering: "info", offline: "muted" }[status] ?? "muted"
}

/** How a finished job ended, in a few words. */
function outcomeText(j) {
  if (j.status === "completed") return `exit ${j.exitCode ?? 0}`
  if (j.exitSignal) return `signal ${j.exitSignal}`
  if (j.exitCode != null && j.exitCode !== 0) return j.error ? `exit ${j.exitCode}: ${j.error}` : `exit ${j.exitCode}`
  return j.error ?? ""
}

function progressText(j) {
  const p = j.progress
  if (j.status === "queued")
    return j.waiting ? `waiting: ${j.waiting}` : `waiting for a worker (${j.lane === "probe" ? "probe" : j.priority})`
  if (j.status === "assigned") return "starting"
  if (!p) return j.status === "running" ? "running" : ""
  const running = j.status === "running"
  const parts = []
  if (p.percent != null && running) parts.push(`${Math.floor(p.percent)}%`)
  parts.push(
    p.durationMs != null ? `${fmtMediaTime(p.timeMs)} / ${fmtMediaTime(p.durationMs)}` : fmtMediaTime(p.timeMs),
  )
  const speed = fmtSpeed(p.speed)
  if (speed) parts.push(speed)
  if (p.etaMs != null && running) parts.push(`ETA ${fmtDuration(p.etaMs)}`)
  return running ? parts.join(" · ") : `last report: ${parts.join(" · ")}`
}

// ---------------------------------------------------------------- theme

function storedTheme() {
  try {
    return localStorage.getItem(THEME_KEY)
  } catch {
    return null
  }
}

const darkQuery = matchMedia("(prefers-color-scheme: dark)")

function applyTheme() {
  const stored = storedTheme()
  const theme = stored === "dark" || stored === "light" ? stored : darkQuery.matches ? "dark" : "light"
  document.documentElement.dataset.theme = theme
  const next = theme === "dark" ? "light" : "dark"
  $("theme").setAttribute("aria-label", `Switch to the ${next} theme`)
  $("theme").title = `Switch to the ${next} theme`
}

function toggleTheme() {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark"
  try {
    localStorage.setItem(THEME_KEY, next)
  } catch {
    // Storage refused (private mode): the choice lasts until the page is closed.
  }
  applyTheme()
  if (storedTheme() !== next) document.documentElement.dataset.theme = next
}

// ---------------------------------------------------------------- API

async function api(path, { method = "GET", body } = {}) {
  const headers = {}
  if (method !== "GET") headers["X-Dffmpeg-Dashboard"] = "1"
  if (body !== undefined) headers["Content-Type"] = "application/json"
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  })
  const data = await res.json().catch(() => null)
  if (!res.ok) {
    const err = new Error(data?.error?.message ?? `the coordinator answered HTTP ${res.status}`)
    err.status = res.status
    throw err
  }
  return data
}

let noticeTimer = 0
function notice(message, tone = "bad") {
  const el = $("notice")
  setText(el, message)
  el.className = `notice ${tone}`
  el.hidden = false
  clearTimeout(noticeTimer)
  noticeTimer = setTimeout(() => (el.hidden = true), NOTICE_MS)
}

/** Runs a dashboard action; a refused session opens the sign-in form. */
async function act(button, path, body, done) {
  button.disabled = true
  try {
    const res = await api(path, { method: "POST", body })
    done?.(res)
  } catch (err) {
    if (err.status === 401) {
      await refreshSession()
      openSignIn("Your sign-in has ended; sign in again.")
    } else notice(err.message)
  } finally {
    button.disabled = false
  }
}

// ---------------------------------------------------------------- session

async function refreshSession() {
  try {
    app.session = await api("dashboard/api/session")
  } catch (err) {
    notice(`cannot reach the coordinator: ${err.message}`)
  }
  renderSession()
}

function signedIn() {
  return !!app.session.user
}

function mayRead() {
  return signedIn() || !app.session.loginRequired
}

function renderSession() {
  setText($("user"), signedIn() ? app.session.user : "")
  setText($("sign"), signedIn() ? "Sign out" : "Sign in")
  document.body.classList.toggle("signed-in", signedIn())
}

function openSignIn(message = "") {
  setText($("signin-error"), message)
  const dialog = $("signin")
  if (!dialog.open) dialog.showModal()
  $($("signin-name").value ? "signin-key" : "signin-name").focus()
}

async function submitSignIn(event) {
  event.preventDefault()
  const name = $("signin-name").value.trim()
  const key = $("signin-key").value.trim()
  $("signin-submit").disabled = true
  try {
    await api("dashboard/login", { method: "POST", body: { name, key } })
    $("signin-key").value = ""
    setText($("signin-error"), "")
    $("signin").close()
    await refreshSession()
    await openRoute()
  } catch (err) {
    setText($("signin-error"), err.message)
    $("signin-key").select()
  } finally {
    $("signin-submit").disabled = false
  }
}

async function signOut() {
  try {
    await api("dashboard/logout", { method: "POST" })
  } catch (err) {
    notice(err.message)
  }
  await refreshSession()
  await openRoute()
}

// ---------------------------------------------------------------- live connection

function setConn(state) {
  const text = {
    live: "live",
    connecting: "connecting…",
    reconnecting: "reconnecting…",
    "signed-out": "sign-in required",
  }[state]
  $("live").className = `live conn-${state}`
  setText($("live-text"), text)
}

/** (Re)opens the event stream for the current page. EventSource retries by itself after network errors. */
function connect() {
  app.source?.close()
  app.source = null
  clearTimeout(app.retryTimer)
  if (!mayRead()) {
    setConn("signed-out")
    return
  }
  const follow = app.route.name === "job" && !app.jobMissing
  const es = new EventSource(
    follow ? `dashboard/api/events?job=${encodeURIComponent(app.route.id)}` : "dashboard/api/events",
  )
  app.source = es
  setConn("connecting")
  es.addEventListener("state", (e) => {
    app.retryMs = 1000
    setConn("live")
    onState(JSON.parse(e.data))
  })
  es.addEventListener("job", (e) => onJob(JSON.parse(e.data)))
  es.addEventListener("error", () => {
    if (es !== app.source) return
    setConn("reconnecting")
    // CLOSED: the coordinator answered with an error (sign-in ended, job gone); EventSource gives up then.
    if (es.readyState === EventSource.CLOSED) {
      app.retryTimer = setTimeout(recover, app.retryMs)
      app.retryMs = Math.min(app.retryMs * 2, 30_000)
    }
  })
}

async function recover() {
  await refreshSession()
  if (!mayRead()) {
    renderView()
    setConn("signed-out")
    openSignIn("Sign in to see the cluster.")
    return
  }
  // Reloads the page's data (a followed job may be gone) and reconnects.
  await openRoute()
}

function onState(state) {
  app.state = state
  app.skew = state.now - Date.now()
  renderSummary()
  setText($("version"), `dffmpeg ${state.version}`)
  if (app.route.name === "overview") renderOverview()
  tick()
}

function onJob(update) {
  if (app.route.name !== "job") return
  if (update.gone) {
    app.jobMissing = true
    renderView()
    return
  }
  if (update.job.id !== app.route.id) return
  // Live updates carry the arguments cut to a bounded size; keep the whole ones the page loaded first.
  if (update.job.truncated && app.job?.job.id === update.job.id && !app.job.job.truncated)
    update = { ...update, job: { ...update.job, args: app.job.job.args, truncated: false } }
  const { reset, lines, partial } = update.log
  app.log = trimLog(reset ? lines : app.log + lines)
  app.partial = partial
  app.job = update
  renderJob(update, { reset, added: lines })
  tick()
}

/** Keeps the newest LOG_MAX_CHARS of a log, starting at a line boundary. */
function trimLog(text) {
  if (text.length <= LOG_MAX_CHARS) return text
  return text.slice(text.indexOf("\n", text.length - LOG_MAX_CHARS) + 1)
}

// ---------------------------------------------------------------- header summary

function renderSummary() {
  const s = app.state?.stats
  if (!s) return
  const queued = s.jobs.queued ?? 0
  const oldest =
    s.oldestQueuedAt != null
      ? h("span", { class: "muted", data: { since: String(s.oldestQueuedAt), prefix: "oldest " } })
      : null
  const items = [
    [
      "Workers",
      `${s.workers.online ?? 0} online`,
      s.workers.draining ? h("span", { class: "muted" }, `${s.workers.draining} draining`) : null,
    ],
    ["Slots", `${s.slots.used}/${s.slots.total}`, null],
    ["Queue", `${queued} queued`, oldest],
    ["Running", String(s.jobs.running ?? 0), null],
  ]
  // Commands clients ran on their own machine instead (local fallback): shown once there are any.
  const fallbacks = app.state.fallbacks ?? []
  if (fallbacks.length) {
    const perClient = new Map()
    for (const f of fallbacks) perClient.set(f.client, (perClient.get(f.client) ?? 0) + f.count)
    const total = [...perClient.values()].reduce((a, b) => a + b, 0)
    const title = fallbacks.map((f) => `${f.client}: ${f.count} ${f.reason}`).join("\n")
    items.push([
      "Fallbacks",
      `${total} local`,
      h(
        "span",
        { class: "muted", id: "fallbacks", title },
        [...perClient].map(([client, n]) => `${client} ${n}`).join(" · "),
      ),
    ])
  }
  $("summary").replaceChildren(
    ...items.map(([label, value, extra]) =>
      h("div", { class: "stat" }, h("dt", null, label), h("dd", null, h("span", null, value), extra)),
    ),
  )
  document.title = s.jobs.running ? `dffmpeg · ${s.jobs.running} running` : "dffmpeg"
}

// ---------------------------------------------------------------- lists (rows keyed by id, updated in place)

const rowSets = new WeakMap()

function syncRows(tbody, items, build) {
  let rows = rowSets.get(tbody)
  if (!rows) rowSets.set(tbody, (rows = new Map()))
  const seen = new Set()
  items.forEach((item, i) => {
    let row = rows.get(item.id)
    if (!row) rows.set(item.id, (row = build(item)))
    row.update(item)
    seen.add(item.id)
    const at = tbody.children[i]
    if (at !== row.el) tbody.insertBefore(row.el, at ?? null)
  })
  for (const [id, row] of rows) {
    if (seen.has(id)) continue
    row.el.remove()
    rows.delete(id)
  }
}

const cell = (label, cls) => h("td", { class: cls, data: { label } })

function meter() {
  const fill = h("span")
  const bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, fill)
  return {
    el: bar,
    set(percent) {
      bar.classList.remove("indeterminate")
      const p = Math.max(0, Math.min(100, percent))
      fill.style.width = `${p}%`
      bar.setAttribute("aria-valuenow", String(Math.round(p)))
    },
    unknown(moving) {
      bar.classList.toggle("indeterminate", moving)
      fill.style.width = moving ? "" : "0%"
      bar.removeAttribute("aria-valuenow")
    },
  }
}

function capabilitiesText(caps) {
  const text = Object.entries(caps ?? {})
    .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" · ")
  return text.length > 160 ? `${text.slice(0, 159)}…` : text
}

/** `ffmpeg 5.1.9 · 180 enc · 480 dec · hwaccels cuda` per binary, then the labels and a weight other than 1. */
function toolsText(w) {
  const tools = Object.entries(w.tools ?? {}).map(
    ([b, t]) =>
      `${b} ${t.version} · ${t.encoders} enc · ${t.decoders} dec · ${t.filters} filters · hwaccels ${t.hwaccels.join(", ") || "none"}`,
  )
  const labels = Object.entries(w.labels ?? {}).map(([k, v]) => `${k}=${v}`)
  if (labels.length) tools.push(`labels ${labels.join(", ")}`)
  if (w.weight !== undefined && w.weight !== 1) tools.push(`weight ${w.weight}`)
  return tools.join("\n")
}

function fmtBytes(n) {
  if (n == null || !Number.isFinite(n)) return "—"
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`
}

const pct = (x) => (x == null || !Number.isFinite(x) ? "—" : `${Math.round(x)}%`)

/** The host's load at the worker's last heartbeat, one line per resource; "—" when it does not report one. */
function hostLoadText(hl) {
  if (!hl) return "—"
  const lines = [
    `CPU ${pct(hl.cpuPercent)} · load ${hl.load1.toFixed(2)}/${hl.cpus}`,
    `mem ${fmtBytes(hl.memUsedBytes)} / ${fmtBytes(hl.memTotalBytes)}`,
  ]
  for (const g of hl.gpus ?? [])
    lines.push(
      `${g.name || "GPU"} ${pct(g.utilPercent)}${g.memTotalBytes != null ? ` · ${fmtBytes(g.memUsedBytes)} / ${fmtBytes(g.memTotalBytes)}` : ""}`,
    )
  return lines.join("\n")
}

function workerRow(first) {
  let w = first
  const idCell = cell("Worker", "mono strong")
  const status = cell("Status")
  const load = cell("Load")
  const binaries = cell("Binaries")
  const binaryNames = h("span")
  const tools = h("div", { class: "muted small tools" })
  binaries.append(h("div", { class: "stack" }, binaryNames, tools))
  const host = cell("Host")
  const hostText = h("div", { class: "small host-load" })
  host.append(hostText)
  const paths = cell("Paths", "mono paths")
  const version = cell("Version")
  const seen = cell("Last seen", "nowrap")
  const actions = cell("", "actions")
  const state = badge("", "muted")
  const late = h("span", { class: "badge bad", hidden: true }, "not responding")
  // A worker registered with `sandbox: none` runs jobs that can reach every file its user can.
  const unconfined = h(
    "span",
    { class: "badge bad", hidden: true, title: "sandbox: none — jobs on this worker are not confined" },
    "unconfined",
  )
  status.append(h("div", { class: "stack" }, state, late, unconfined))
  const slots = meter()
  const slotsText = h("span", { class: "slots-text" })
  load.append(h("div", { class: "slots" }, slots.el, slotsText))
  const versionText = h("span", { class: "mono" })
  const caps = h("div", { class: "muted small clip" })
  version.append(h("div", { class: "stack" }, versionText, caps))
  const drain = h("button", { type: "button", class: "btn small admin-only" })
  drain.addEventListener("click", () => {
    const { id } = w
    const on = !w.drainRequested
    act(drain, `dashboard/api/workers/${encodeURIComponent(id)}/drain`, { on }, () =>
      notice(on ? `${id} is draining: it finishes its jobs and takes no new ones` : `${id} takes new jobs again`, "ok"),
    )
  })
  actions.append(drain)
  const el = h(
    "tr",
    { data: { worker: first.id } },
    idCell,
    status,
    load,
    host,
    binaries,
    paths,
    version,
    seen,
    actions,
  )
  return {
    el,
    update(next) {
      w = next
      setText(idCell, w.id)
      setText(state, w.drainRequested ? "draining (admin)" : w.status)
      state.className = `badge ${workerTone(w.drainRequested && w.status !== "offline" ? "draining" : w.status)}`
      late.hidden = w.health !== "late"
      unconfined.hidden = w.capabilities?.sandbox !== "none"
      slots.set(w.slots ? (100 * w.load) / w.slots : 0)
      setText(slotsText, `${w.load}/${w.slots}`)
      setText(hostText, hostLoadText(w.hostLoad))
      hostText.classList.toggle("muted", !w.hostLoad)
      hostText.title = w.hostLoad ? `measured ${w.hostLoad.at}` : "this worker does not report its host's load"
      setText(binaryNames, w.binaries.join(", ") || "—")
      setText(tools, toolsText(w))
      setText(paths, w.paths.map((p) => `$${p}`).join(" ") || "—")
      setText(versionText, w.version)
      const capsText = capabilitiesText(w.capabilities)
      setText(caps, capsText)
      caps.title = capsText
      seen.dataset.ago = String(w.lastSeen)
      setText(drain, w.drainRequested ? "Undrain" : "Drain")
      drain.hidden = w.status === "offline"
      el.classList.toggle("offline", w.status === "offline")
    },
  }
}

function jobLink(id) {
  return h("a", { href: `#/jobs/${encodeURIComponent(id)}`, class: "mono job-link", title: `Job ${id}` }, id)
}

/** The cells every job row has (its id, command, requester and worker), and how they follow the job. */
function jobCells(first) {
  const id = cell("Job")
  id.append(jobLink(first.id))
  const command = cell("Command", "command")
  const requester = cell("Requester")
  const worker = cell("Worker", "mono")
  return {
    id,
    command,
    requester,
    worker,
    update(j) {
      setText(command, `${j.binary} ${j.command}`)
      command.title = `${j.binary} ${j.command}`
      setText(requester, j.requester)
      setText(worker, j.workerId ?? "—")
    },
  }
}

function activeJobRow(first) {
  const c = jobCells(first)
  const status = cell("Status")
  const state = badge("", "muted")
  status.append(state)
  const progress = cell("Progress", "progress-cell")
  const bar = meter()
  const label = h("div", { class: "small muted" })
  progress.append(bar.el, label)
  const age = cell("Age", "nowrap")
  const el = h("tr", { data: { jobId: first.id } }, c.id, status, progress, c.command, c.requester, c.worker, age)
  return {
    el,
    update(j) {
      setText(state, j.canceling ? "canceling" : j.status)
      state.className = `badge ${statusTone(j.status, j.canceling)}`
      if (j.progress?.percent != null) bar.set(j.progress.percent)
      else bar.unknown(j.status === "running")
      setText(label, progressText(j))
      c.update(j)
      age.dataset.since = String(j.createdAt)
    },
  }
}

function recentJobRow(first) {
  const c = jobCells(first)
  const outcome = cell("Outcome")
  const state = badge("", "muted")
  const detail = h("div", { class: "small muted clip" })
  const stderr = h("pre", { class: "stderr-tail", hidden: true })
  outcome.append(h("div", { class: "stack" }, state, detail, stderr))
  const duration = cell("Duration", "nowrap")
  const finished = cell("Finished", "nowrap")
  const el = h("tr", { data: { jobId: first.id } }, c.id, outcome, c.command, c.requester, c.worker, duration, finished)
  return {
    el,
    update(j) {
      setText(state, j.status)
      state.className = `badge ${statusTone(j.status, false)}`
      const text = outcomeText(j)
      setText(detail, text)
      detail.title = text
      const lines = j.stderr ?? []
      setText(stderr, lines.join("\n"))
      stderr.hidden = !lines.length
      c.update(j)
      setText(duration, j.finishedAt != null ? fmtDuration(j.finishedAt - (j.startedAt ?? j.createdAt)) : "—")
      finished.dataset.ago = String(j.finishedAt ?? j.createdAt)
    },
  }
}

function table(id, headings) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "data", id },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          headings.map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      h("tbody"),
    ),
  )
}

function card(title, countId, ...body) {
  return h(
    "section",
    { class: "card" },
    h("h2", null, title, " ", h("span", { class: "count muted", id: countId })),
    ...body,
  )
}

// ---------------------------------------------------------------- pages

function renderView() {
  const view = $("view")
  view.replaceChildren()
  if (!mayRead()) {
    app.state = null
    $("summary").replaceChildren()
    view.append(
      h(
        "section",
        { class: "card center" },
        h("h2", null, "Sign-in required"),
        h("p", { class: "muted" }, "This coordinator asks dashboard users to sign in with an admin identity."),
        h("button", { type: "button", class: "btn primary", onclick: () => openSignIn() }, "Sign in"),
      ),
    )
    return
  }
  if (app.route.name === "job") return buildJobPage(view)
  view.append(
    card(
      "Workers",
      "workers-count",
      table("workers", ["Worker", "Status", "Load", "Host", "Binaries", "Paths", "Version", "Last seen", ""]),
      h("p", { class: "empty muted", id: "workers-empty", hidden: true }, "No workers. Start one with dffmpeg worker."),
    ),
    card(
      "Active jobs",
      "active-count",
      table("active-jobs", ["Job", "Status", "Progress", "Command", "Requester", "Worker", "Age"]),
      h("p", { class: "empty muted", id: "active-empty", hidden: true }, "Nothing queued or running."),
    ),
    card(
      "Last 24 hours",
      "chart-totals",
      h("div", { class: "chart-wrap", id: "chart" }),
      h(
        "p",
        { class: "legend small muted" },
        h("span", { class: "key completed" }),
        "completed ",
        h("span", { class: "key failed" }),
        "failed ",
        h("span", { class: "key canceled" }),
        "canceled · jobs finished per hour",
      ),
    ),
    card(
      "Finished jobs",
      "recent-count",
      finishedFilter(),
      table("recent-jobs", ["Job", "Outcome", "Command", "Requester", "Worker", "Duration", "Finished"]),
      h("p", { class: "empty muted", id: "recent-empty", hidden: true }, "No finished jobs yet."),
      h(
        "div",
        { class: "pager" },
        h("button", { type: "button", class: "btn small", id: "f-newer", onclick: () => turnPage(-1) }, "← Newer"),
        h("span", { class: "muted small", id: "f-page" }),
        h("button", { type: "button", class: "btn small", id: "f-older", onclick: () => turnPage(1) }, "Older →"),
      ),
    ),
  )
  app.finishedKey = ""
  if (app.state) renderOverview()
  loadFinished()
  loadThroughput()
}

function renderOverview() {
  const s = app.state
  const tbodyOf = (id) => $(id)?.tBodies[0]
  if (!tbodyOf("workers")) return
  syncRows(tbodyOf("workers"), s.workers, workerRow)
  syncRows(tbodyOf("active-jobs"), s.jobs.active, activeJobRow)
  const active = ACTIVE.reduce((n, st) => n + (s.stats.jobs[st] ?? 0), 0)
  setText($("workers-count"), s.workers.length || "")
  setText(
    $("active-count"),
    active > s.jobs.active.length ? `${s.jobs.active.length} of ${active}` : s.jobs.active.length || "",
  )
  $("workers-empty").hidden = s.workers.length > 0
  $("active-empty").hidden = s.jobs.active.length > 0
  $("workers").hidden = !s.workers.length
  $("active-jobs").hidden = !s.jobs.active.length
  // A job finished (or was pruned): the list's first page and the chart are read again.
  const key = ["completed", "failed", "canceled"].map((st) => s.stats.jobs[st] ?? 0).join("|")
  if (key !== app.finishedKey) {
    const first = app.finishedKey === ""
    app.finishedKey = key
    if (!first) refreshFinished()
  }
}

/** Fewest milliseconds between two reloads of the finished list and the chart while jobs keep finishing. */
const FINISHED_GAP_MS = 2000
let finishedAt = 0
let finishedTimer = 0

/** Reloads the list's first page (not an older one: keyset pages do not move) and the chart, at most every FINISHED_GAP_MS. */
function refreshFinished() {
  if (finishedTimer) return
  const run = () => {
    finishedTimer = 0
    finishedAt = Date.now()
    if (app.finished.page === 0) loadFinished()
    loadThroughput()
  }
  finishedTimer = setTimeout(run, Math.max(0, finishedAt + FINISHED_GAP_MS - Date.now()))
}

// ---------------------------------------------------------------- finished jobs: filter and pages

function finishedFilter() {
  const f = app.finished.filter
  const status = h(
    "select",
    { id: "f-status", "aria-label": "Outcome" },
    [
      ["", "All outcomes"],
      ["completed", "Completed"],
      ["failed", "Failed"],
      ["canceled", "Canceled"],
    ].map(([value, label]) => h("option", { value, selected: f.status === value }, label)),
  )
  const input = (id, key, placeholder, label) =>
    h("input", {
      id,
      type: "search",
      value: f[key],
      placeholder,
      maxLength: key === "q" ? 200 : 64,
      "aria-label": label,
      spellcheck: false,
    })
  const q = input("f-q", "q", "File name or argument", "Search the arguments")
  const worker = input("f-worker", "worker", "Worker", "Worker")
  const requester = input("f-requester", "requester", "Requester", "Requester")
  const size = h(
    "select",
    { id: "f-size", "aria-label": "Jobs per page" },
    [10, 25, 50, 100, 200].map((n) =>
      h("option", { value: String(n), selected: app.finished.size === n }, `${n} a page`),
    ),
  )
  let timer = 0
  const apply = () => {
    clearTimeout(timer)
    f.status = status.value
    f.q = q.value.trim()
    f.worker = worker.value.trim()
    f.requester = requester.value.trim()
    app.finished.size = Number(size.value)
    app.finished.cursors = [null]
    app.finished.page = 0
    loadFinished()
  }
  for (const el of [status, size]) el.addEventListener("change", apply)
  for (const el of [q, worker, requester]) {
    el.addEventListener("input", () => {
      clearTimeout(timer)
      timer = setTimeout(apply, 300)
    })
    el.addEventListener("keydown", (e) => e.key === "Enter" && apply())
  }
  return h(
    "form",
    { class: "filter", id: "finished-filter", role: "search", onsubmit: (e) => e.preventDefault() },
    q,
    status,
    worker,
    requester,
    size,
  )
}

let finishedSeq = 0

/** Reads the shown page of finished jobs from the coordinator (keyset paging: `before` the last id of the page before). */
async function loadFinished() {
  const fin = app.finished
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(fin.filter)) if (v) params.set(k, v)
  const before = fin.cursors[fin.page]
  if (before) params.set("before", before)
  params.set("limit", String(fin.size))
  const seq = ++finishedSeq
  let page
  try {
    page = await api(`dashboard/api/finished?${params}`)
  } catch (err) {
    if (seq === finishedSeq && err.status !== 401) notice(err.message)
    return
  }
  if (seq !== finishedSeq || !$("recent-jobs")) return
  fin.next = page.next
  syncRows($("recent-jobs").tBodies[0], page.jobs, recentJobRow)
  const filtered = Object.values(fin.filter).some(Boolean)
  $("recent-jobs").hidden = !page.jobs.length
  const empty = $("recent-empty")
  empty.hidden = page.jobs.length > 0
  setText(empty, filtered ? "No finished job matches." : fin.page ? "No older jobs." : "No finished jobs yet.")
  setText($("recent-count"), page.jobs.length ? `${page.jobs.length} shown${filtered ? ", filtered" : ""}` : "")
  setText($("f-page"), `page ${fin.page + 1}`)
  $("f-newer").disabled = fin.page === 0
  $("f-older").disabled = !page.next
  tick()
}

function turnPage(step) {
  const fin = app.finished
  if (step > 0) {
    if (!fin.next) return
    fin.cursors[fin.page + 1] = fin.next
    fin.page++
  } else {
    if (fin.page === 0) return
    fin.page--
  }
  loadFinished()
}

// ---------------------------------------------------------------- throughput chart (inline SVG, no library)

const SVG = "http://www.w3.org/2000/svg"
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs ?? {})) el.setAttribute(k, String(v))
  for (const c of children) el.append(typeof c === "object" ? c : document.createTextNode(String(c)))
  return el
}

async function loadThroughput() {
  let data
  try {
    data = await api("dashboard/api/throughput")
  } catch (err) {
    if (err.status !== 401) notice(err.message)
    return
  }
  if ($("chart")) renderChart(data.hours)
}

/** 24 stacked bars, one per hour (oldest left): completed, failed, canceled. */
function renderChart(hours) {
  // Drawn at the width it is shown at, so that its text keeps its size from a phone to a wide screen.
  const W = Math.max(300, Math.round($("chart").clientWidth || 720))
  const H = 150
  const pad = { left: 30, right: 6, top: 8, bottom: 22 }
  const kinds = ["completed", "failed", "canceled"]
  const max = Math.max(1, ...hours.map((x) => x.completed + x.failed + x.canceled))
  // A round top for the axis: 1, 2, 5 × 10^n.
  const step = 10 ** Math.floor(Math.log10(max))
  const top = [1, 2, 5, 10].map((m) => m * step).find((t) => t >= max)
  const plotH = H - pad.top - pad.bottom
  const slot = (W - pad.left - pad.right) / hours.length
  const y = (n) => pad.top + plotH - (n / top) * plotH
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart",
    role: "img",
    "aria-label": "Jobs finished per hour over the last 24 hours",
  })
  for (const t of [0, top / 2, top]) {
    root.append(svg("line", { x1: pad.left, x2: W - pad.right, y1: y(t), y2: y(t), class: "grid" }))
    root.append(svg("text", { x: pad.left - 4, y: y(t) + 3, class: "axis", "text-anchor": "end" }, String(t)))
  }
  const totals = { completed: 0, failed: 0, canceled: 0 }
  hours.forEach((hr, i) => {
    const x = pad.left + i * slot + 1
    let base = 0
    const g = svg("g", { class: "hour", "data-at": hr.at })
    g.append(
      svg(
        "title",
        null,
        `${new Date(hr.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${hr.completed} completed, ${hr.failed} failed, ${hr.canceled} canceled`,
      ),
    )
    for (const k of kinds) {
      totals[k] += hr[k]
      if (!hr[k]) continue
      g.append(
        svg("rect", {
          x,
          width: Math.max(1, slot - 2),
          y: y(base + hr[k]),
          height: y(base) - y(base + hr[k]),
          class: k,
          "data-count": hr[k],
        }),
      )
      base += hr[k]
    }
    root.append(g)
    // The first and last labels are anchored inside the plot so that neither is cut at an edge.
    const last = i === hours.length - 1
    if ((i % (W < 600 ? 8 : 4) === 0 && i < hours.length - 3) || last)
      root.append(
        svg(
          "text",
          {
            x: last ? W - pad.right : i === 0 ? pad.left : x + slot / 2,
            y: H - 6,
            class: "axis",
            "text-anchor": last ? "end" : i === 0 ? "start" : "middle",
          },
          new Date(hr.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
        ),
      )
  })
  $("chart").replaceChildren(root)
  const el = $("chart-totals")
  setText(el, `${totals.completed} completed · ${totals.failed} failed · ${totals.canceled} canceled`)
  Object.assign(el.dataset, { completed: totals.completed, failed: totals.failed, canceled: totals.canceled })
}

/** The parts of the job page that updates change. */
let jobPage = null

function buildJobPage(view) {
  const id = app.route.id
  const back = h("a", { href: "#/", class: "back" }, "← All jobs")
  if (app.jobMissing) {
    jobPage = null
    view.append(
      back,
      h(
        "section",
        { class: "card center" },
        h("h2", null, "No such job"),
        h("p", { class: "muted" }, `There is no job ${id} (it may have been deleted by retention).`),
      ),
    )
    return
  }
  const state = badge("loading", "muted")
  const cancel = h(
    "button",
    { type: "button", class: "btn danger admin-only", id: "cancel", hidden: true },
    "Cancel job",
  )
  const confirmYes = h("button", { type: "button", class: "btn danger", id: "cancel-yes" }, "Yes, cancel it")
  const confirmNo = h("button", { type: "button", class: "btn", id: "cancel-no" }, "No")
  const confirm = h(
    "span",
    { class: "confirm", id: "cancel-confirm", hidden: true },
    h("span", null, "Stop this job?"),
    confirmYes,
    confirmNo,
  )
  cancel.addEventListener("click", () => {
    cancel.hidden = true
    confirm.hidden = false
    confirmNo.focus()
  })
  confirmNo.addEventListener("click", () => {
    confirm.hidden = true
    renderJob(app.job)
  })
  confirmYes.addEventListener("click", () =>
    act(confirmYes, `dashboard/api/jobs/${encodeURIComponent(id)}/cancel`, undefined, (res) => {
      confirm.hidden = true
      notice(
        res.job.status === "canceled" ? "Job canceled." : "Cancel requested: the worker is stopping the job.",
        "ok",
      )
    }),
  )
  const retry = h("button", { type: "button", class: "btn admin-only", id: "retry", hidden: true }, "Retry")
  retry.addEventListener("click", () =>
    act(retry, `dashboard/api/jobs/${encodeURIComponent(id)}/retry`, undefined, (res) => {
      notice(`Submitted again as ${res.job.id}.`, "ok")
      location.hash = `#/jobs/${res.job.id}`
    }),
  )
  const download = h(
    "a",
    {
      class: "btn",
      id: "download-log",
      href: `dashboard/api/jobs/${encodeURIComponent(id)}/log`,
      download: `dffmpeg-${id}-stderr.log`,
      title: "The job's stored stderr as a file",
    },
    "Download log",
  )
  const facts = h("dl", { class: "facts" })
  const bar = meter()
  const progressLabel = h("div", { class: "small muted" })
  const progress = h("div", { class: "job-progress", hidden: true }, bar.el, progressLabel)
  const command = h("pre", { class: "args", id: "job-args" })
  const timeline = h("ol", { class: "timeline", id: "timeline" })
  const logLines = document.createTextNode("")
  const logPartial = document.createTextNode("")
  const log = h("pre", { class: "log", id: "log", tabIndex: 0 }, logLines, logPartial)
  const jump = h("button", { type: "button", class: "btn small jump", hidden: true }, "↓ Follow new output")
  jump.addEventListener("click", () => {
    log.scrollTop = log.scrollHeight
    jump.hidden = true
  })
  log.addEventListener("scroll", () => {
    if (atBottom(log)) jump.hidden = true
  })
  view.append(
    back,
    h(
      "div",
      { class: "job-head" },
      h("h1", null, "Job ", h("span", { class: "mono" }, id)),
      state,
      h("span", { class: "grow" }),
      download,
      retry,
      cancel,
      confirm,
    ),
    h("section", { class: "card" }, progress, facts),
    h("section", { class: "card" }, h("h2", null, "Command"), command),
    h("section", { class: "card" }, h("h2", null, "Timeline"), timeline),
    h(
      "section",
      { class: "card" },
      h(
        "div",
        { class: "log-head" },
        h("h2", null, "Log ", h("span", { class: "muted small" }, "stderr, last 64 KiB")),
        jump,
      ),
      log,
    ),
  )
  jobPage = {
    id,
    state,
    retry,
    cancel,
    confirm,
    facts,
    progress,
    bar,
    progressLabel,
    command,
    timeline,
    log,
    logLines,
    logPartial,
    jump,
    filled: false,
  }
  if (app.job?.job.id === id) renderJob(app.job)
}

/** A timeline reason with the job ids in it (`retry of 01J…`, `retried as 01J…`) as links to their pages. */
function linkedIds(text) {
  const out = []
  let at = 0
  for (const m of text.matchAll(/\b[0-9A-HJKMNP-TV-Z]{26}\b/g)) {
    out.push(text.slice(at, m.index), jobLink(m[0]))
    at = m.index + m[0].length
  }
  out.push(text.slice(at))
  return out.filter((x) => x !== "")
}

const atBottom = (el) => el.scrollHeight - el.scrollTop - el.clientHeight < 24

function fact(label, value, cls) {
  return h("div", null, h("dt", null, label), h("dd", { class: cls }, value))
}

/** Shows `update`; `change` says what the log gained (without it the log is shown whole). */
function renderJob(update, change) {
  const p = jobPage
  if (!p || !update || update.job.id !== p.id) return
  const j = update.job
  setText(p.state, j.canceling ? "canceling" : j.status)
  p.state.className = `badge ${statusTone(j.status, j.canceling)}`
  const active = ACTIVE.includes(j.status)
  p.cancel.hidden = !(signedIn() && active && !j.canceling) || !p.confirm.hidden
  if (!active) p.confirm.hidden = true
  // Only a failed detached job can be submitted again (the coordinator refuses any other with 409).
  p.retry.hidden = !(signedIn() && j.status === "failed" && !j.attached && !j.stdin)
  const end = j.finishedAt ?? null
  const facts = [
    fact("Binary", j.binary, "mono"),
    fact("Requester", j.requester),
    fact("Worker", j.workerId ?? "—", "mono"),
    fact("Submitted", fmtClock(j.createdAt)),
    fact("Started", fmtClock(j.startedAt)),
    fact("Finished", fmtClock(j.finishedAt)),
  ]
  const runFor = h(
    "dd",
    { data: end == null && j.startedAt != null ? { since: String(j.startedAt) } : {} },
    end != null && j.startedAt != null ? fmtDuration(end - j.startedAt) : "—",
  )
  facts.push(h("div", null, h("dt", null, j.startedAt != null && end == null ? "Running for" : "Run time"), runFor))
  if (j.exitCode != null) facts.push(fact("Exit code", String(j.exitCode), "mono"))
  if (j.exitSignal) facts.push(fact("Signal", j.exitSignal, "mono"))
  if (j.attempts || j.retries) facts.push(fact("Attempts lost", `${j.attempts} (retries allowed: ${j.retries})`))
  if (j.paths.length) facts.push(fact("Path variables", j.paths.map((v) => `$${v}`).join(" "), "mono"))
  if (j.cwd) facts.push(fact("Working dir", j.cwd, "mono"))
  facts.push(fact("Mode", `${j.attached ? "attached" : "detached"}${j.stdin ? ", stdin" : ""}`))
  if (j.error) facts.push(h("div", { class: "wide" }, h("dt", null, "Error"), h("dd", { class: "error" }, j.error)))
  p.facts.replaceChildren(...facts)
  const running = j.status === "running"
  const percent = j.progress?.percent
  p.progress.hidden = !(j.progress || running)
  // A finished job's bar only means something when it completed or its share is known.
  p.bar.el.hidden = !(running || percent != null || j.status === "completed")
  if (j.status === "completed") p.bar.set(100)
  else if (percent != null) p.bar.set(percent)
  else p.bar.unknown(running)
  setText(p.progressLabel, progressText(j))
  setText(p.command, shellLine(j.binary, j.args))
  p.timeline.replaceChildren(
    ...update.events.map((e) =>
      h(
        "li",
        null,
        h("time", { dateTime: new Date(e.at).toISOString() }, fmtClock(e.at)),
        h("span", { class: "muted small" }, `+${fmtDuration(e.at - j.createdAt)}`),
        badge(e.status, statusTone(e.status, e.status === "canceling")),
        e.workerId ? h("span", { class: "mono" }, e.workerId) : null,
        e.epoch ? h("span", { class: "muted small" }, `attempt ${e.epoch}`) : null,
        e.reason ? h("span", { class: "reason" }, ...linkedIds(e.reason)) : null,
      ),
    ),
  )
  renderLog(change)
}

function renderLog(change) {
  const p = jobPage
  const follow = !p.filled || atBottom(p.log)
  if (!change || change.reset || p.logLines.length + change.added.length > LOG_MAX_CHARS) p.logLines.data = app.log
  else if (change.added) p.logLines.appendData(change.added)
  p.logPartial.data = app.partial || (app.log ? "" : "(no output yet)")
  if (follow) p.log.scrollTop = p.log.scrollHeight
  else if (change?.added || change?.reset) p.jump.hidden = false
  p.filled = true
}

// ---------------------------------------------------------------- clock

/** Refreshes every relative time once a second, without waiting for the coordinator. */
function tick() {
  for (const el of document.querySelectorAll("[data-ago]")) setText(el, fmtAgo(Number(el.dataset.ago)))
  for (const el of document.querySelectorAll("[data-since]"))
    setText(el, `${el.dataset.prefix ?? ""}${fmtDuration(serverNow() - Number(el.dataset.since))}`)
}

// ---------------------------------------------------------------- routing and start

function parseRoute() {
  const m = /^#\/jobs\/([0-9A-Za-z]{26})$/.exec(location.hash)
  return m ? { name: "job", id: m[1].toUpperCase() } : { name: "overview" }
}

/** Shows the page the URL's hash names; a job page first loads its job, so an unknown one shows at once. */
async function openRoute() {
  const route = parseRoute()
  app.route = route
  app.job = null
  app.jobMissing = false
  app.log = ""
  app.partial = ""
  renderView()
  if (route.name === "job" && mayRead()) {
    try {
      const detail = await api(`dashboard/api/jobs/${encodeURIComponent(route.id)}`)
      if (app.route !== route) return
      onJob({ ...detail, log: { ...detail.log, reset: true } })
    } catch (err) {
      if (app.route !== route) return
      if (err.status === 404) {
        app.jobMissing = true
        renderView()
      }
    }
  }
  connect()
}

async function start() {
  applyTheme()
  darkQuery.addEventListener("change", applyTheme)
  $("theme").addEventListener("click", toggleTheme)
  $("sign").addEventListener("click", () => (signedIn() ? signOut() : openSignIn()))
  $("signin-form").addEventListener("submit", submitSignIn)
  $("signin-close").addEventListener("click", () => $("signin").close())
  window.addEventListener("hashchange", () => {
    window.scrollTo(0, 0)
    openRoute()
  })
  await refreshSession()
  await openRoute()
  if (!mayRead()) openSignIn()
  setInterval(tick, 1000)
}

start()
