/**
 * The relaying half of a man in the middle on loopback: sends `req` on to the coordinator at `port` and
 * gives back its reply, with the headers a re-framed body must not keep, for the test to pass on or
 * change.
 */
export async function relay(req: Request, port: number): Promise<{ res: Response; headers: Headers }> {
  const url = new URL(req.url)
  const headers = new Headers(req.headers)
  headers.delete("host")
  const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer()
  const res = await fetch(`http://127.0.0.1:${port}${url.pathname}${url.search}`, {
    method: req.method,
    headers,
    body,
    redirect: "manual",
  })
  const out = new Headers(res.headers)
  out.delete("content-length")
  out.delete("transfer-encoding")
  return { res, headers: out }
}
