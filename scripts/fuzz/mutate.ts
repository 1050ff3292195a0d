import { Gen, badId, badJson, badNumber, frameBody } from "./gen.ts"
import type { Req } from "./routes.ts"
import { IDENTITIES, type IdentityName } from "./cluster.ts"

/** How a signed request is spoiled after (or instead of) signing; applied by the sender. */
export type AuthTamper =
  | "unsigned"
  | "drop-header"
  | "bad-key"
  | "unknown-client"
  | "stale-ts"
  | "future-ts"
  | "ts-garbage"
  | "nonce-short"
  | "nonce-long"
  | "sig-garbage"
  | "dup-signature"
  | "tamper-body"
  | "tamper-query"
  | "tamper-path"
  | "replay"

export interface Mutated extends Req {
  auth?: AuthTamper
  /** One of the set-up requests before the run (logged). */
  setup?: boolean
}

const XFF = [
  "8.8.8.8",
  "8.8.8.8:4711",
  "[2001:db8::1]:443",
  "unknown",
  "garbage",
  "",
  "127.0.0.1, 8.8.8.8",
  "10.0.0.1,,, ",
  "::ffff:8.8.8.8",
  "1.2.3.4".repeat(2000),
]

/** Applies one or two mutations to `req` (in place), recording each as a label. */
export function mutate(g: Gen, req: Mutated): void {
  if (req.raw) return
  const signed = req.as !== null
  const options: [number, string][] = [
    [req.id !== undefined ? 4 : 0, "bad-id"],
    [req.bodyKind === "json" ? 4 : 0, "body-json"],
    [req.bodyKind === "json" ? 4 : 0, "body-field"],
    [req.bodyKind === "frames" ? 4 : 0, "body-frames"],
    [req.method !== "GET" && req.method !== "HEAD" && req.bodyKind === "none" ? 1 : 0, "body-unexpected"],
    [3, "query"],
    [2, "headers"],
    [signed ? 3 : 0, "role"],
    [signed ? 5 : 0, "auth"],
    [1, "method"],
    [req.method === "POST" ? 0.4 : 0, "body-oversized"],
    [!signed && req.route.startsWith("POST /dashboard") ? 3 : 0, "csrf"],
    [!signed ? 1 : 0, "xff"],
  ]
  for (let i = g.chance(0.3) ? 2 : 1; i > 0; i--) apply(g, req, g.weighted(options))
}

function apply(g: Gen, req: Mutated, what: string) {
  const label = (l: string) => req.labels.push(l)
  switch (what) {
    case "bad-id":
      req.id = badId(g)
      return label("bad-id")
    case "body-json": {
      const { label: l, body } = badJson(g, g.chance(0.1))
      req.body = body
      req.submit = undefined
      return label(`json:${l}`)
    }
    case "body-field": {
      let o: Record<string, unknown>
      try {
        o = JSON.parse(typeof req.body === "string" ? req.body : new TextDecoder().decode(req.body))
      } catch {
        return label("field:unparsable")
      }
      if (!o || typeof o !== "object" || Array.isArray(o)) return label("field:not-object")
      const keys = Object.keys(o)
      const k = keys.length ? g.pick(keys) : "x"
      const how = g.pick(["drop", "null", "number", "string", "array", "object", "huge-string", "extra", "bool"])
      if (how === "drop") delete o[k]
      else if (how === "null") o[k] = null
      else if (how === "number") o[k] = g.pick([0, -1, 1.5, 1e308, 2 ** 53 + 1])
      else if (how === "string") o[k] = g.word(20)
      else if (how === "array") o[k] = [o[k], o[k]]
      else if (how === "object") o[k] = { value: o[k] }
      else if (how === "huge-string") o[k] = "z".repeat(g.pick([10_000, 200_000]))
      else if (how === "bool") o[k] = true
      else o[g.pick(["__proto__", "constructor", "extra", "", "role", "requester"])] = g.word()
      try {
        req.body = JSON.stringify(o)
      } catch {
        // A 100,000-deep body from an earlier mutation parses, but does not serialize again: keep it.
        return label("field:too-deep")
      }
      req.submit = undefined
      return label(`field:${how}`)
    }
    case "body-frames": {
      const { label: l, body } = g.chance(0.5)
        ? frameBody(g, req.frameKinds ?? [1], () => g.int(0, 100))
        : { label: "random-bytes", body: g.bytes(g.int(1, 65_536)) }
      req.body = body
      return label(`frames:${l}`)
    }
    case "body-oversized":
      // Over the 8 MiB request cap: the answer must be a 413, not a dropped connection.
      req.body = new Uint8Array(g.pick([8 * 1024 * 1024 + 1, 10 * 1024 * 1024, 12 * 1024 * 1024])).fill(0x61)
      req.submit = undefined
      return label("body-oversized")
    case "body-unexpected":
      req.body = g.bytes(g.int(1, 4096))
      return label("body-unexpected")
    case "query": {
      const how = g.pick(["huge", "dup", "number", "garbage", "encoded"])
      if (how === "huge")
        req.query.push([
          g.pick(["limit", "after", "epoch", "wait", "x", "status", "since"]),
          "9".repeat(g.pick([1000, 8000, 60_000])),
        ])
      else if (how === "dup")
        req.query.push(req.query.length ? [g.pick(req.query)[0], badNumber(g)] : ["limit", "1"], ["limit", "2"])
      else if (how === "number") {
        const keys = req.query.map(([k]) => k)
        const k = keys.length ? g.pick(keys) : g.pick(["limit", "after", "epoch", "tail", "wait"])
        req.query = req.query.filter(([q]) => q !== k)
        req.query.push([k, badNumber(g)])
      } else if (how === "garbage") req.query.push([g.word(), g.word()])
      else req.query.push(["%zz", "%"], ["a[b]", "1"], ["", ""])
      return label(`query:${how}`)
    }
    case "headers": {
      const how = g.pick([
        "dup-content-type",
        "odd-content-type",
        "huge-header",
        "many-headers",
        "content-encoding",
        "expect",
        "cookie-garbage",
        "accept",
      ])
      if (how === "dup-content-type") req.headers.push(["content-type", "text/plain"])
      else if (how === "odd-content-type")
        req.headers = [
          ...req.headers.filter(([k]) => k !== "content-type"),
          [
            "content-type",
            g.pick([
              "",
              "application/json; charset=utf-16",
              "multipart/form-data; boundary=x",
              "application/x-www-form-urlencoded",
              "\u00ff",
            ]),
          ],
        ]
      else if (how === "huge-header") req.headers.push(["x-fuzz", "h".repeat(g.pick([1000, 8000, 30_000]))])
      else if (how === "many-headers")
        for (let i = 0; i < g.pick([50, 200]); i++) req.headers.push([`x-fuzz-${i}`, String(i)])
      else if (how === "content-encoding")
        req.headers.push(["content-encoding", g.pick(["gzip", "br", "deflate", "identity, gzip"])])
      else if (how === "expect") req.headers.push(["expect", "100-continue"])
      else if (how === "cookie-garbage")
        req.headers.push([
          "cookie",
          g.pick([
            "dffmpeg_session=garbage",
            "dffmpeg_session=" + "A".repeat(4000),
            "dffmpeg_session=fzadmin.1.x; dffmpeg_session=y",
            ";;;=",
          ]),
        ])
      else req.headers.push(["accept", "text/event-stream"])
      return label(`headers:${how}`)
    }
    case "role": {
      const others = (Object.keys(IDENTITIES) as IdentityName[]).filter(
        (n) => n !== req.as && !(req.workerRoute && n === "fw1"),
      )
      req.as = g.pick(others)
      return label(`role:${req.as}`)
    }
    case "auth": {
      req.auth = g.pick<AuthTamper>([
        "unsigned",
        "drop-header",
        "bad-key",
        "unknown-client",
        "stale-ts",
        "future-ts",
        "ts-garbage",
        "nonce-short",
        "nonce-long",
        "sig-garbage",
        "dup-signature",
        "tamper-body",
        "tamper-query",
        "tamper-path",
        "replay",
      ])
      return label(`auth:${req.auth}`)
    }
    case "method": {
      req.method = g.pick(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"].filter((m) => m !== req.method))
      return label(`method:${req.method}`)
    }
    case "csrf": {
      const how = g.pick(["no-header", "cross-site", "origin", "origin-garbage"])
      if (how === "no-header") req.headers = req.headers.filter(([k]) => k !== "x-dffmpeg-dashboard")
      else if (how === "cross-site") req.headers.push(["sec-fetch-site", "cross-site"])
      else if (how === "origin") req.headers.push(["origin", "http://evil.example"])
      else req.headers.push(["origin", g.pick(["null", "::::", "http://[::1", ""])])
      return label(`csrf:${how}`)
    }
    default:
      req.headers.push(["x-forwarded-for", g.pick(XFF)])
      return label("xff")
  }
}
