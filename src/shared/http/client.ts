import { decodeKey, signRequest } from "../auth/hmac.ts"
import { AuthError, ConfigError, DffmpegError, UnavailableError, fromErrorBody } from "../errors.ts"

export interface ApiClient {
  readonly url: string
  readonly client: string
  /** A signed request; network failures become UnavailableError, HTTP errors are returned as is. */
  request(method: string, path: string, opts?: RequestOpts): Promise<Response>
  /** A signed request whose 2xx JSON body is returned; any other status throws the typed error. */
  json<T>(method: string, path: string, opts?: RequestOpts): Promise<T>
}

export interface RequestOpts {
  query?: Record<string, string | number | undefined>
  body?: Uint8Array | string
  json?: unknown
  contentType?: string
  signal?: AbortSignal
  /**
   * Milliseconds to wait for the response headers; default 10 s. A streamed body (`request`) is not
   * limited by it: a job's output stream lasts as long as the job. `json` also bounds the body read.
   */
  timeoutMs?: number
}

/**
 * Signed HTTP client for the coordinator API, shared by worker, client and proxy. `url` is the
 * coordinator base including any reverse-proxy `path_base`; signatures cover the route path only.
 */
export function createApiClient(opts: { url: string; client: string; key: string }): ApiClient {
  let key: Buffer
  try {
    key = decodeKey(opts.key)
  } catch (err) {
    throw new ConfigError(`hmac_key: ${(err as Error).message}`)
  }
  const base = opts.url.replace(/\/+$/, "")

  /** Sends the request; `timer` aborts it until it is cleared (the caller decides when: headers or body). */
  const send = async (method: string, path: string, o: RequestOpts, timer: { clear(): void; signal: AbortSignal }): Promise<Response> => {
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(o.query ?? {})) if (v !== undefined) params.set(k, String(v))
    const body = o.json !== undefined ? JSON.stringify(o.json) : o.body
    const headers: Record<string, string> = signRequest({ key, client: opts.client, method, path, query: params, body })
    if (body !== undefined) headers["content-type"] = o.contentType ?? (o.json !== undefined ? "application/json" : "application/octet-stream")
    const qs = params.size ? `?${params}` : ""
    const signal = o.signal ? AbortSignal.any([o.signal, timer.signal]) : timer.signal
    try {
      return await fetch(`${base}${path}${qs}`, { method, headers, body, signal, redirect: "manual" })
    } catch (err) {
      timer.clear()
      if (o.signal?.aborted) throw err
      const e = err as Error & { code?: string }
      const why = timer.signal.aborted ? "timed out" : (e.code ?? e.message)
      throw new UnavailableError(`cannot reach the coordinator at ${base}: ${why}`)
    }
  }

  const request = async (method: string, path: string, o: RequestOpts = {}): Promise<Response> => {
    const timer = deadline(o.timeoutMs ?? 10_000)
    try {
      return await send(method, path, o, timer)
    } finally {
      // Headers are in: the body may stream for as long as the job runs.
      timer.clear()
    }
  }

  return {
    url: base,
    client: opts.client,
    request,
    async json<T>(method: string, path: string, o: RequestOpts = {}): Promise<T> {
      const timer = deadline(o.timeoutMs ?? 10_000)
      try {
        const res = await send(method, path, o, timer)
        return (await readJson(res).catch((err) => {
          if (timer.signal.aborted) throw new UnavailableError(`cannot reach the coordinator at ${base}: timed out reading the answer`)
          throw err
        })) as T
      } finally {
        timer.clear()
      }
    },
  }
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
    if (res.ok) throw new DffmpegError(`coordinator sent invalid JSON (HTTP ${res.status})`, "E_PROTOCOL", 502, 1)
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
  if (err instanceof DffmpegError) return err instanceof UnavailableError || err.status >= 500
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === "string" && /^E[A-Z]+$/.test(code)
}

export { AuthError }

/** Jittered exponential backoff: 100 ms doubling to `max`, ±25 %. */
export function backoff(attempt: number, max = 5000): number {
  const d = Math.min(max, 100 * 2 ** Math.min(attempt, 16))
  return d * (0.75 + Math.random() * 0.5)
}
