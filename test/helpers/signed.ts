import { HEADER, decodeKey, signRequest } from "../../src/shared/auth/hmac.ts"

/** Changes applied to a request after it was signed (the signature still covers the original). */
export interface Tamper {
  /** Send this body instead of the signed one. */
  body?: Uint8Array | string
  /** Send this query string (without `?`) instead of the signed one. */
  query?: string
  /** Send to this route path instead of the signed one. */
  path?: string
  /** Replace headers after signing; `null` removes one (e.g. `{ [HEADER.nonce]: null }`). */
  headers?: Record<string, string | null>
}

export interface SignedOptions {
  client: string
  /** The identity key as stored/printed (standard base64). */
  key: string
  method: string
  /** Route path, e.g. `/api/v1/jobs` (this is what the signature covers). */
  path: string
  /** Query string without `?`, e.g. `limit=1`. */
  query?: string
  body?: Uint8Array | string
  /** Clock used for the timestamp header, in ms (default: now). */
  now?: number
  /** Extra unsigned headers (e.g. content-type). */
  headers?: Record<string, string>
  tamper?: Tamper
  /** Called with the exact headers sent (to capture a request for replay, or to collect signatures). */
  onHeaders?: (headers: Record<string, string>) => void
}

export interface RawOptions {
  method: string
  path: string
  query?: string
  body?: Uint8Array | string
  headers?: Record<string, string>
}

const full = (url: string, path: string, query?: string) =>
  `${url.replace(/\/+$/, "")}${path}${query ? `?${query}` : ""}`

/** The four signature headers for a request, as the real clients compute them. */
export function signedHeaders(
  o: Pick<SignedOptions, "client" | "key" | "method" | "path" | "query" | "body" | "now">,
): Record<string, string> {
  return signRequest({
    key: decodeKey(o.key),
    client: o.client,
    method: o.method,
    path: o.path,
    query: o.query ?? "",
    body: o.body,
    now: o.now,
  })
}

/** A request with exactly these headers (nothing added): for unsigned, hand-made or replayed requests. */
export function rawFetch(url: string, o: RawOptions): Promise<Response> {
  return fetch(full(url, o.path, o.query), {
    method: o.method,
    headers: o.headers ?? {},
    body: o.body,
    redirect: "manual",
  })
}

/** A signed request to the coordinator at `url`, optionally tampered with after signing. */
export function signedFetch(url: string, o: SignedOptions): Promise<Response> {
  const headers: Record<string, string> = { ...o.headers, ...signedHeaders(o) }
  if (o.body !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === "content-type"))
    headers["content-type"] = "application/octet-stream"
  for (const [k, v] of Object.entries(o.tamper?.headers ?? {})) {
    if (v === null) delete headers[k]
    else headers[k] = v
  }
  o.onHeaders?.({ ...headers })
  const t = o.tamper ?? {}
  return rawFetch(url, {
    method: o.method,
    path: t.path ?? o.path,
    query: t.query ?? o.query,
    body: "body" in t ? t.body : o.body,
    headers,
  })
}

export { HEADER }
