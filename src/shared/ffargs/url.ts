/**
 * How FFmpeg reads a URL argument (libavformat `url_find_protocol`): a leading `scheme:` made of
 * letters, digits, `+`, `-`, `.` names the protocol, `subfile,,opts,,:inner` too; anything else is a
 * file path. Wrapper protocols name the URLs they open inside.
 */

export interface ParsedUrl {
  /** Protocol name, lowercase (`file` for a plain path); nested schemes (`crypto+file:`) give `crypto`. */
  protocol: string
  /** The path for `file` and plain paths; the rest after the scheme otherwise. */
  rest: string
  /** URLs a wrapper opens: concat parts, the subfile/cache/crypto/async target. */
  inner: string[]
}

/** Network protocols of FFmpeg 5.1 (Debian build), for the allow_network rule. */
export const NETWORK_PROTOCOLS = new Set([
  "http",
  "https",
  "httpproxy",
  "tcp",
  "udp",
  "udplite",
  "tls",
  "unix",
  "rtmp",
  "rtmps",
  "rtmpt",
  "rtmpts",
  "rtmpe",
  "rtmpte",
  "ffrtmphttp",
  "ffrtmpcrypt",
  "rtp",
  "srtp",
  "rtsp",
  "rtsps",
  "srt",
  "rist",
  "sctp",
  "ftp",
  "sftp",
  "gopher",
  "gophers",
  "mmsh",
  "mmst",
  "icecast",
  "prompeg",
  "amqp",
  "zmq",
  "ipfs",
  "ipns",
  "libssh",
  "smb",
  "librtmp",
])

/** Protocols that wrap other URLs (checked through what they open). */
export const WRAPPER_PROTOCOLS = new Set(["concat", "subfile", "cache", "crypto", "async"])

/** Every protocol name FFmpeg 5.1 knows, so a look-alike (`title:`) is not taken for one. */
export const KNOWN_PROTOCOLS = new Set([
  ...NETWORK_PROTOCOLS,
  ...WRAPPER_PROTOCOLS,
  "file",
  "pipe",
  "fd",
  "data",
  "concatf",
  "hls",
  "md5",
  "tee",
  "bluray",
  "android_content",
])

const SCHEME = /^([A-Za-z0-9+.-]+):/

/**
 * The file `subfile,<sep>key<sep>value<sep>...<sep><sep>:target` opens, as url_alloc_for_protocol and
 * subfile_open read it: the character after `subfile,` separates the options (`,` usually, `:` too), an
 * empty key ends them and a `:` must follow. Otherwise ffmpeg opens no file the URL names (it fails, or
 * opens a relative name starting with `subfile`): none is returned.
 */
function subfileTarget(url: string): string | undefined {
  const sep = url[8]
  let p = 9
  for (;;) {
    const key = url.indexOf(sep, p)
    if (key <= p) break
    const value = url.indexOf(sep, key + 1)
    if (value === -1) return undefined
    p = value + 1
  }
  return sep !== undefined && url[p] === sep && url[p + 1] === ":" ? url.slice(p + 2) : undefined
}

export function parseUrl(url: string): ParsedUrl {
  if (url.startsWith("subfile,") && url.indexOf(":", 8) !== -1) {
    const target = subfileTarget(url)
    return { protocol: "subfile", rest: url.slice(8), inner: target === undefined ? [] : [target] }
  }
  const m = SCHEME.exec(url)
  if (!m) return { protocol: "file", rest: url, inner: [] }
  const scheme = m[1].toLowerCase()
  const rest = url.slice(m[0].length)
  const plus = scheme.indexOf("+")
  // `crypto+file:/x`, `hls+http://...`: the nested scheme belongs to the inner URL.
  if (plus !== -1) return { protocol: scheme.slice(0, plus), rest, inner: [url.slice(plus + 1)] }
  if (scheme === "file") return { protocol: "file", rest, inner: [] }
  if (scheme === "concat") return { protocol: scheme, rest, inner: rest.split("|") }
  if (scheme === "cache" || scheme === "crypto" || scheme === "async" || scheme === "subfile")
    return { protocol: scheme, rest, inner: [rest] }
  return { protocol: scheme, rest, inner: [] }
}

/**
 * The URL with each file it wraps passed through `map` (the parts of `concat:a|b`, the file of
 * `subfile,,start,0,,:f`, `cache:f`, `crypto:f`, `crypto+file:f`, `async:f`): only plain paths and `file:`
 * paths are given to `map`; the scheme, the options and every other byte stay as written. Other URLs
 * are returned unchanged. concat's `|` takes no escape in FFmpeg (concat_open splits on every `|`).
 */
export function rewriteUrl(url: string, map: (path: string) => string): string {
  const u = parseUrl(url)
  if (!WRAPPER_PROTOCOLS.has(u.protocol) || !u.inner.length) return url
  const joined = u.protocol === "concat" ? u.inner.join("|") : u.inner[0]
  const head = url.slice(0, url.length - joined.length)
  const parts = u.protocol === "concat" ? u.inner : [joined]
  return head + parts.map((p) => (parseUrl(p).protocol === "file" ? map(p) : p)).join("|")
}

/** `host` and `port` of a network URL (`tcp://h:1`, `rtmp://[::1]:1935/app`, `udp://@:1234`). */
export function urlHost(rest: string): { host: string; port?: number } | undefined {
  const m = /^\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)(?::(\d+))?/.exec(rest)
  if (!m) return undefined
  const host = m[1].replace(/^\[(.*)\]$/, "$1").toLowerCase()
  return { host, port: m[2] === undefined ? undefined : Number(m[2]) }
}
