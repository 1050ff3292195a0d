import type { Socket } from "bun"

/**
 * A TCP proxy on 127.0.0.1 (port 0) to `target`, to cut a process's connections to a database in a test
 * without touching the database: `cut()` closes every open connection and refuses new ones (accepted and
 * closed at once), `restore()` lets them through again. Bytes are queued while the other side is not open
 * yet or its socket is full.
 */
export class TcpProxy {
  readonly port: number
  private refusing = false
  private readonly open = new Set<Socket<unknown>>()
  private readonly server: { port: number; stop(force?: boolean): void }
  /** Connections accepted in all (refused ones included). */
  accepted = 0

  private constructor(target: { host: string; port: number }) {
    type Side = { peer?: Socket<Side>; queue: Uint8Array[]; closed: boolean }
    const flush = (to: Socket<Side>, side: Side) => {
      while (side.queue.length) {
        const chunk = side.queue[0]!
        const n = to.write(chunk)
        if (n < chunk.length) {
          side.queue[0] = chunk.subarray(n)
          return
        }
        side.queue.shift()
      }
    }
    const proxy = this
    this.server = Bun.listen<Side>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(client) {
          proxy.accepted++
          if (proxy.refusing) {
            client.end()
            return
          }
          client.data = { queue: [], closed: false }
          proxy.open.add(client as never)
          // What the client sends before the upstream connection is open waits in `up.queue`.
          const up: Side = { queue: [], closed: false, peer: client }
          client.data.peer = undefined
          Bun.connect<Side>({
            hostname: target.host,
            port: target.port,
            data: up,
            socket: {
              open(server) {
                if (client.data.closed) {
                  server.end()
                  return
                }
                client.data.peer = server
                proxy.open.add(server as never)
                flush(server, up)
              },
              data(_server, chunk) {
                client.data.queue.push(new Uint8Array(chunk))
                flush(client, client.data)
              },
              drain(server) {
                flush(server, up)
              },
              close(server) {
                proxy.open.delete(server as never)
                client.end()
              },
              error() {
                client.end()
              },
            },
          }).catch(() => client.end())
          ;(client.data as Side & { up?: Side }).up = up
        },
        data(client, chunk) {
          const up = (client.data as Side & { up?: Side }).up!
          up.queue.push(new Uint8Array(chunk))
          if (client.data.peer) flush(client.data.peer, up)
        },
        drain(client) {
          flush(client, client.data)
        },
        close(client) {
          client.data && (client.data.closed = true)
          proxy.open.delete(client as never)
          client.data?.peer?.end()
        },
        error(client) {
          client.end()
        },
      },
    })
    this.port = this.server.port
  }

  static start(target: { host: string; port: number }): TcpProxy {
    return new TcpProxy(target)
  }

  /** Closes every connection through the proxy and refuses new ones until `restore`. */
  cut(): void {
    this.refusing = true
    for (const s of this.open) s.terminate()
    this.open.clear()
  }

  restore(): void {
    this.refusing = false
  }

  stop(): void {
    this.cut()
    this.server.stop(true)
  }
}
