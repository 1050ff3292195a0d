import { BODY_DIGEST_HEADER, FRAMES_DIGEST, HEADER, decodeKey, signRequest, sha256Hex } from "../auth/hmac.ts"
import {
  RESPONSE_HEADER,
  STREAMED,
  STREAMED_DIGESTS,
  StreamVerifier,
  bytesEqual,
  responseMac,
  verifiedStream,
} from "../auth/response.ts"
import { escapeControls } from "../text.ts"
import type { CoordinatorTarget } from "../config/load.ts"
import { createFailover, failoverStatus, notSent, onePass } from "./failover.ts"
import {
  AuthError,
  ConfigError,
  DffmpegError,
  ProtocolError,
  TrustError,
  UnavailableError,
  fromErrorBody,
} from "../errors.ts"

export interface ApiClient {
  /** The coordinator requests go to now (the one that last answered), as its base URL. */
  readonly url: string
  readonly client: string
  /**
   * A signed request whose reply is verified (docs/protocol.md): a body is checked against its
   * signature before it is returned, a frame stream's body yields only verified frames. Network failures
   * become UnavailableError, certificate and signature failures TrustError; HTTP errors are returned as is.
   */
  request(method: string, path: string, opts?: RequestOpts): Promise<Response>
  /** A signed request whose 2xx JSON body is returned; any other status throws the typed error. */
  json<T>(method: string, path: string, opts?: RequestOpts): Promise<T>
}

export interface RequestOpts {
  query?: Record<string, string | number | undefined>
  body?: Uint8Array | string
  json?: unknown
  contentType?: string
  /** A framed body signed by its frames' digests (`framesBodyHash`): the hash to sign instead of its SHA-256. */
  framesHash?: string
  signal?: AbortSignal
  /**
   * Milliseconds to wait for the response headers; default 10 s. A streamed body (`request`) is not
   * limited by it: a job's output stream lasts as long as the job. `json` also bounds the body read.
   */
  timeoutMs?: number
  /**
   * Repeating this request is harmless (the coordinator dedupes it: a submission's key, an upload's
   * sequence numbers, a cancel), so a connection lost after it was sent may go on to the next
   * coordinator. GET always may; any other request fails over only when it surely was not sent.
   */
  idempotent?: boolean
}

/**
 * Signed HTTP client for the coordinator API, shared by worker, client and proxy. `url` is the
 * coordinator base including any reverse-proxy `path_base`; signatures cover the route path only.
 */
export function createApiClient(opts: {
  /** The coordinators, in failover order (docs/protocol.md, "Several coordinators"). */
  coordinators?: readonly CoordinatorTarget[]
  /** One coordinator's base URL (instead of `coordinators`). */
  url?: string
  client: string
  key: string
  /** PEM of the CA that signs an https coordinator's certificate (with `url`). */
  ca?: string
  /**
   * Sends a request instead of the global fetch: the broker transports' tunnel (src/transports/broker/),
   * which carries the same signed request and signed reply over MQTT or RabbitMQ.
   */
  fetch?: (url: string, init: RequestInit & { tls?: { ca: string } }) => Promise<Response>
}): ApiClient {
  const send1 = opts.fetch ?? fetch
  let key: Buffer
  try {
    key = decodeKey(opts.key)
  } catch (err) {
    throw new ConfigError(`hmac_key: ${(err as Error).message}`)
  }
  const targets = (opts.coordinators ?? [{ url: opts.url ?? "", ca: opts.ca }]).map((t) => ({
    base: t.url.replace(/\/+$/, ""),
    ca: t.ca,
  }))
  const failover = createFailover(targets.length)

  /** Sends the request; `timer` aborts it until it is cleared (the caller decides when: headers or body). */
  const send = async (
    target: { base: string; ca?: string },
    method: string,
    path: string,
    o: RequestOpts,
    timer: { clear(): void; signal: AbortSignal },
  ): Promise<Response> => {
    const { base, ca } = target
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(o.query ?? {})) if (v !== undefined) params.set(k, String(v))
    const body = o.json !== undefined ? JSON.stringify(o.json) : o.body
    const headers: Record<string, string> = signRequest({
      key,
      client: opts.client,
      method,
      path,
      query: params,
      body,
      bodyHash: o.framesHash,
    })
    if (o.framesHash) headers[BODY_DIGEST_HEADER] = FRAMES_DIGEST
    if (body !== undefined)
      headers["content-type"] =
        o.contentType ?? (o.json !== undefined ? "application/json" : "application/octet-stream")
    const qs = params.size ? `?${params}` : ""
    const signal = o.signal ? AbortSignal.any([o.signal, timer.signal]) : timer.signal
    let res: Response
    try {
      res = await send1(`${base}${path}${qs}`, {
        method,
        headers,
        body,
        signal,
        redirect: "manual",
        ...(ca ? { tls: { ca } } : {}),
      })
    } catch (err) {
      timer.clear()
      if (o.signal?.aborted) throw err
      const e = err as Error & { code?: string }
      const tls = tlsReason(e.code)
      if (tls) throw Object.assign(new TrustError(`cannot trust the coordinator at ${base}: ${tls}`), { unsent: true })
      const why = timer.signal.aborted ? "timed out" : (e.code ?? e.message)
      throw Object.assign(new UnavailableError(`cannot reach the coordinator at ${base}: ${why}`), {
        unsent: notSent(e.code),
      })
    }
    try {
      return await verify(base, res, headers[HEADER.nonce]!)
    } catch (err) {
      if (err instanceof DffmpegError || o.signal?.aborted || !timer.signal.aborted) throw err
      throw new UnavailableError(`cannot reach the coordinator at ${base}: timed out reading the answer`)
    }
  }

  /** The reply, verified against the signature the coordinator made with our key for this nonce. */
  const verify = async (base: string, res: Response, nonce: string): Promise<Response> => {
    const sig = res.headers.get(RESPONSE_HEADER)
    const contentType = res.headers.get("content-type") ?? ""
    if (!sig) {
      // Refusals made before our identity was proven cannot be signed; they never carry data.
      if (UNSIGNED_OK(res.status)) return unsignedRefusal(res)
      await res.body?.cancel().catch(() => {})
      throw new TrustError(
        `the coordinator at ${base} sent an unsigned reply (HTTP ${res.status}); refusing it (is something between us and the coordinator changing replies?)`,
      )
    }
    const got = Buffer.from(sig, "base64")
    const input = { nonce, status: res.status, contentType, headers: res.headers }
    // A frame stream is sealed by its bytes or, when asked for (`digests=1`), by its frames' digests:
    // the signature says which (each form has its own seed).
    for (const digests of [false, true]) {
      const seed = responseMac(key, { ...input, bodyHash: digests ? STREAMED_DIGESTS : STREAMED })
      if (!bytesEqual(seed, got) || !res.body) continue
      const body = verifiedStream(res.body, new StreamVerifier(key, seed, `the coordinator at ${base}`, digests))
      return new Response(body, { status: res.status, headers: res.headers })
    }
    const bytes = new Uint8Array(await res.arrayBuffer())
    if (!bytesEqual(responseMac(key, { ...input, bodyHash: sha256Hex(bytes) }), got)) {
      throw new TrustError(
        `the coordinator at ${base} sent a reply whose signature does not verify (HTTP ${res.status}); refusing it (something between us and the coordinator changed it)`,
      )
    }
    return new Response(bytes, { status: res.status, headers: res.headers })
  }

  /**
   * One pass over the coordinators (failover.ts), each attempt signed afresh (its own nonce and time)
   * with its own deadline. The answer comes back with its attempt's timer still running (`json` bounds
   * the body read by it); the caller clears it.
   */
  const attempt = (method: string, path: string, o: RequestOpts) => {
    const repeatable = o.idempotent ?? (method === "GET" || method === "HEAD")
    return onePass<{ res: Response; timer: Timer }>(failover, async (i) => {
      const timer = deadline(o.timeoutMs ?? 10_000)
      try {
        const res = await send(targets[i]!, method, path, o, timer)
        if (!failoverStatus(res.status) || targets.length === 1) return { verdict: "done", value: { res, timer } }
        // Not this coordinator now; the last one's answer is the caller's if every one says so.
        const kept = new Response(await res.arrayBuffer(), { status: res.status, headers: res.headers })
        // Its body is read: nothing is left for the timer to bound.
        timer.clear()
        // A balancer's 502/504 may hide a coordinator that acted on the request; a 503 never acted.
        const verdict = res.status === 503 || repeatable ? "next" : "stop"
        return { verdict, error: undefined, value: { res: kept, timer } }
      } catch (err) {
        timer.clear()
        if (o.signal?.aborted) return { verdict: "stop", error: err }
        const unsent = (err as { unsent?: boolean }).unsent === true
        const lost = err instanceof UnavailableError || (!(err instanceof DffmpegError) && retryable(err))
        return { verdict: unsent || (lost && repeatable) ? "next" : "stop", error: err }
      }
    })
  }

  const request = async (method: string, path: string, o: RequestOpts = {}): Promise<Response> => {
    const { res, timer } = await attempt(method, path, o)
    // Headers are in: the body may stream for as long as the job runs.
    timer.clear()
    return res
  }

  return {
    get url() {
      return targets[failover.current]!.base
    },
    client: opts.client,
    request,
    async json<T>(method: string, path: string, o: RequestOpts = {}): Promise<T> {
      const { res, timer } = await attempt(method, path, o)
      const base = targets[failover.current]!.base
      try {
        return (await readJson(res).catch((err) => {
          if (timer.signal.aborted)
            throw new UnavailableError(`cannot reach the coordinator at ${base}: timed out reading the answer`)
          throw err
        })) as T
      } finally {
        timer.clear()
      }
    },
  }
}

type Timer = ReturnType<typeof deadline>

/**
 * Unsigned replies a client accepts (as errors only): 401 and 413 are sent before the caller's identity is
 * proven, 5xx may come from a reverse proxy in front of a coordinator that is down. Each is an error that
 * carries no data; a forged one can only stop a request, which a man in the middle can do anyway.
 */
const UNSIGNED_OK = (status: number) => status === 401 || status === 413 || status >= 500

/** Longest message kept from an unsigned refusal; the bytes read of its body are bounded too. */
export const UNSIGNED_MESSAGE_CHARS = 300
const UNSIGNED_BODY_BYTES = 16 * 1024

/**
 * An unsigned refusal rebuilt as a bare `{error:{message}}`: anyone on the path may have written it, so
 * only its message is kept, with every control and bidi character escaped (no ESC, BEL, CR or LF reaches
 * a terminal) and cut to UNSIGNED_MESSAGE_CHARS; its code and details are dropped, its status kept.
 */
async function unsignedRefusal(res: Response): Promise<Response> {
  const text = await readCapped(res.body, UNSIGNED_BODY_BYTES)
  let message: unknown
  try {
    message = (JSON.parse(text) as { error?: { message?: unknown } } | null)?.error?.message
  } catch {}
  const body =
    typeof message === "string"
      ? JSON.stringify({ error: { message: clip(escapeControls(message), UNSIGNED_MESSAGE_CHARS) } })
      : ""
  const headers = new Headers(res.headers)
  headers.set("content-type", "application/json")
  headers.delete("content-length")
  return new Response(body, { status: res.status, headers })
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`
}

/** Up to `max` bytes of a body as text; the rest is not read. */
async function readCapped(body: ReadableStream<Uint8Array> | null, max: number): Promise<string> {
  if (!body) return ""
  const reader = body.getReader()
  const parts: Uint8Array[] = []
  let size = 0
  try {
    while (size < max) {
      const { done, value } = await reader.read()
      if (done) break
      parts.push(value)
      size += value.length
    }
  } catch {
    return ""
  } finally {
    reader.cancel().catch(() => {})
  }
  return new TextDecoder().decode(Buffer.concat(parts).subarray(0, max))
}

/** What a TLS failure means, from the error code of fetch; undefined for errors that are not about TLS. */
export function tlsReason(code: string | undefined): string | undefined {
  if (!code) return undefined
  switch (code) {
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "CERT_UNTRUSTED":
    case "CERT_SIGNATURE_FAILURE":
      return `its certificate is not signed by a CA we trust (${code}; set coordinator.ca_file to the CA that signed it)`
    case "ERR_TLS_CERT_ALTNAME_INVALID":
    case "HOSTNAME_MISMATCH":
      return `its certificate is not valid for this host name or address (${code}; coordinator.host must be in the certificate's subjectAltName)`
    case "CERT_HAS_EXPIRED":
      return `its certificate has expired (${code})`
    case "CERT_NOT_YET_VALID":
      return `its certificate is not valid yet (${code}; check the clocks)`
    case "CERT_REVOKED":
      return `its certificate was revoked (${code})`
  }
  if (/^(ERR_SSL_|ERR_TLS_|CERT_|ERR_OSSL_)/.test(code)) return `the TLS handshake failed (${code})`
  return undefined
}

/** An abort signal that fires after `ms` unless cleared first. */
function deadline(ms: number) {
  const ac = new AbortController()
  const t = setTimeout(() => ac.abort(new DOMException("timed out", "TimeoutError")), ms)
  return { signal: ac.signal, clear: () => clearTimeout(t) }
}

/** The JSON body of a 2xx response, or the typed error of any other. */
export async function readJson(res: Response): Promise<unknown> {
  const text = await res.text()
  let body: unknown
  try {
    body = text ? JSON.parse(text) : undefined
  } catch {
    if (res.ok) throw new ProtocolError(`coordinator sent invalid JSON (HTTP ${res.status})`)
  }
  if (!res.ok) throw fromErrorBody(res.status, body)
  return body
}

/**
 * True for errors worth retrying (coordinator down or restarting): connection failures, 5xx, and a
 * connection dropped while a response body was being read (a system error such as ECONNRESET, which
 * reaches the reader of a streamed body as a plain error).
 */
export function retryable(err: unknown): boolean {
  if (err instanceof TrustError) return false
  if (err instanceof DffmpegError) return err instanceof UnavailableError || err.status >= 500
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === "string" && /^E[A-Z]+$/.test(code)
}

export { AuthError }

export { backoff } from "../pause.ts"
