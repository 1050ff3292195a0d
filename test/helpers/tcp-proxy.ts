import type { Socket } from "bun"

/**
 * A TCP proxy on 127.0.0.1 (port 0) in front of a database, to cut a client's connection without
 * touching the server: `cut()` closes every connection through it and closes each new one at once,
 * `restore()` lets connections through again.
 */
export interface TcpProxy {
  port: number
  cut(): void
  restore(): void
  close(): void
}

interface Pipe {
  peer?: Socket<Pipe>
  /** Bytes not yet written to `peer` (it was not connected yet, or pushed back). */
  queued: Uint8Array[]
  cut?: boolean
}

const write = (to: Socket<Pipe>, from: Pipe) => {
  while (from.queued.length) {
    const chunk = from.queued[0]
    const n = to.write(chunk)
    if (n < chunk.length) {
      from.queued[0] = chunk.subarray(n)
      return
    }
    from.queued.shift()
  }
}

export function tcpProxy(target: { host: string; port: number }): TcpProxy {
  let refusing = false
  const sockets = new Set<Socket<Pipe>>()
  const end = (s: Socket<Pipe> | undefined) => {
    if (!s) return
    sockets.delete(s)
    s.end()
  }
  const server = Bun.listen<Pipe>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        client.data = { queued: [] }
        if (refusing) return void client.end()
        sockets.add(client)
        Bun.connect<Pipe>({
          hostname: target.host,
          port: target.port,
          data: { queued: [], peer: client },
          socket: {
            open(upstream) {
              if (client.data.cut || refusing) return void upstream.end()
              sockets.add(upstream)
              client.data.peer = upstream
              write(upstream, client.data)
            },
            data(upstream, chunk) {
              upstream.data.queued.push(new Uint8Array(chunk))
              write(client, upstream.data)
            },
            drain(upstream) {
              write(upstream, client.data)
            },
            close(upstream) {
              sockets.delete(upstream)
              end(client)
            },
            error(upstream) {
              sockets.delete(upstream)
              end(client)
            },
          },
        }).catch(() => end(client))
      },
      data(client, chunk) {
        client.data.queued.push(new Uint8Array(chunk))
        if (client.data.peer) write(client.data.peer, client.data)
      },
      drain(client) {
        const up = client.data.peer
        if (up) write(client, up.data)
      },
      close(client) {
        client.data.cut = true
        sockets.delete(client)
        end(client.data.peer)
      },
      error(client) {
        client.data.cut = true
        sockets.delete(client)
        end(client.data.peer)
      },
    },
  })
  return {
    port: server.port,
    cut() {
      refusing = true
      for (const s of [...sockets]) {
        s.data.cut = true
        end(s)
      }
    },
    restore() {
      refusing = false
    },
    close() {
      this.cut()
      server.stop(true)
    },
  }
}
