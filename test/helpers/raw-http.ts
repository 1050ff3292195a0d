/**
 * Writes `bytes` as they are to a TCP connection on 127.0.0.1:`port` and collects what comes back until
 * the headers of the first answer arrived, the server hung up, or `ms` passed. For malformed HTTP that
 * `fetch` cannot send. `status` is 0 when no status line came back.
 */
export async function rawHttp(
  port: number,
  bytes: Uint8Array | string,
  ms = 2000,
): Promise<{ status: number; text: string }> {
  let text = ""
  const done = Promise.withResolvers<void>()
  const dec = new TextDecoder()
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, chunk) {
        text += dec.decode(chunk, { stream: true })
        const head = text.indexOf("\r\n\r\n")
        // Headers and, when a Content-Length says how much, the whole body.
        const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, head))
        if (head !== -1 && (!len || Buffer.byteLength(text.slice(head + 4)) >= Number(len[1]))) done.resolve()
      },
      close: () => done.resolve(),
      error: () => done.resolve(),
    },
  })
  socket.write(bytes)
  const timer = setTimeout(() => done.resolve(), ms)
  await done.promise
  clearTimeout(timer)
  socket.end()
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text)
  return { status: m ? Number(m[1]) : 0, text }
}
