import type { Context } from "hono"
import { createMiddleware } from "hono/factory"
import { HEADER } from "../../../shared/auth/hmac.ts"
import { RESPONSE_HEADER, StreamSealer, signResponse } from "../../../shared/auth/response.ts"
import type { AuthEnv } from "./hmac.ts"

/**
 * Signs every reply to an authenticated request with the caller's own key (shared/auth/response.ts),
 * errors included. Mounted outside `hmacAuth`, so it sees the final response, after `onError`. A request
 * refused before its identity was proven (401, an early 413) has no key to sign with and goes unsigned;
 * receivers accept an unsigned reply only as such a refusal. Frame streams sign themselves (they set
 * the header in `frameStream`) and are left alone here.
 */
export function signResponses() {
  return createMiddleware<AuthEnv>(async (c, next) => {
    await next()
    const key = c.get("key")
    if (!key || c.res.headers.has(RESPONSE_HEADER)) return
    const body = new Uint8Array(await c.res.arrayBuffer())
    const headers = new Headers(c.res.headers)
    const input = {
      nonce: c.req.header(HEADER.nonce) ?? "",
      status: c.res.status,
      contentType: headers.get("content-type") ?? "",
      headers,
    }
    headers.set(RESPONSE_HEADER, signResponse(key, input, body))
    const res = new Response(body, { status: c.res.status, headers })
    // Cleared first: assigning over an existing response would merge the old headers back in.
    c.res = undefined
    c.res = res
  })
}

/**
 * The sealer of a frame stream answering this request (its header is set here), or undefined when
 * unauthenticated. A request with `digests=1` (signed, like its whole query) gets the stream sealed by its
 * frames' digests (shared/auth/response.ts, STREAMED_DIGESTS).
 */
export function streamSealer(c: Context<AuthEnv>, contentType: string): StreamSealer | undefined {
  const key = c.get("key")
  if (!key) return undefined
  // No signed header (SIGNED_HEADERS) is set on a frame stream: the signature covers them as absent.
  const sealer = new StreamSealer(
    key,
    { nonce: c.req.header(HEADER.nonce) ?? "", status: 200, contentType },
    c.req.query("digests") === "1",
  )
  c.header(RESPONSE_HEADER, sealer.header)
  return sealer
}
