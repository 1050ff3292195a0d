import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BIN } from "../helpers/bin.ts"
import { Cluster, SANDBOX_USER } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"
import { Proc } from "../helpers/proc.ts"
import { makePki, type TestPki } from "../helpers/tls.ts"

/** HTTPS coordinator (certificates made by openssl for this run), clients and workers trusting its CA through `ca_file`. */
let pki: TestPki
let pkiDir: string
let c: Cluster
const PROBE = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
const json = (o: unknown) => JSON.stringify(o, null, 2)
const dffmpegLines = (err: string) => err.split("\n").filter((l) => l.startsWith("dffmpeg:"))

beforeAll(async () => {
  pkiDir = mkdtempSync(join(tmpdir(), "dffmpeg-pki-"))
  pki = makePki(pkiDir)
  c = await Cluster.start({
    workers: 1,
    coordinatorConfig: { tls: { cert_file: pki.cert, key_file: pki.key } },
    link: (port) => ({ scheme: "https", port, ca_file: pki.ca }),
  })
  copyFileSync(await sample("av.mkv"), join(c.storage, "av.mkv"))
}, 60_000)

afterAll(async () => {
  await c?.stop()
  rmSync(pkiDir, { recursive: true, force: true })
})

/** A client config for the same identity with another `coordinator:` block. */
function clientWith(link: Record<string, unknown>): string {
  const file = join(c.dir, `client-${Math.random().toString(36).slice(2)}.yaml`)
  writeFileSync(
    file,
    json({ client_id: "client1", hmac_key_file: "client1.key", coordinator: link, paths: { Media: c.clientMedia } }),
  )
  return file
}

describe("an https coordinator", () => {
  test("says https in its ready line", () => {
    expect(c.url).toBe(`https://127.0.0.1:${c.port}`)
  })

  test("ffprobe through the proxy over TLS with ca_file equals local ffprobe", async () => {
    const remote = await c.run("ffprobe", [...PROBE, join(c.clientMedia, "av.mkv")])
    if (remote.code !== 0) throw new Error(`exit ${remote.code}: ${remote.err}\n${c.logs()}`)
    const local = await c.local("ffprobe", [...PROBE, join(c.storage, "av.mkv")])
    const a = JSON.parse(remote.out)
    const b = JSON.parse(local.out)
    delete a.format.filename
    delete b.format.filename
    expect(a).toEqual(b)
  })

  test("the proxy refuses a certificate from another CA with one dffmpeg: line naming the coordinator and the reason", async () => {
    const r = await c.run("ffprobe", [...PROBE, join(c.clientMedia, "av.mkv")], {
      env: { DFFMPEG_CLIENT_CONFIG: clientWith({ scheme: "https", port: c.port, ca_file: pki.wrongCa }) },
    })
    expect(r.code).toBe(1)
    expect(r.out).toBe("")
    expect(r.err.trim().split("\n")).toEqual([
      `dffmpeg: cannot trust the coordinator at https://127.0.0.1:${c.port}: its certificate is not signed by a CA we trust (UNABLE_TO_VERIFY_LEAF_SIGNATURE; set coordinator.ca_file to the CA that signed it)`,
    ])
  })

  test("without ca_file (system CAs only) the client refuses the certificate too: exit 5, one line", async () => {
    const r = await c.exec([BIN, "client", "jobs", "--config", clientWith({ scheme: "https", port: c.port })], {})
    expect(r.code).toBe(5)
    expect(dffmpegLines(r.err)).toHaveLength(1)
    expect(r.err).toContain(
      `cannot trust the coordinator at https://127.0.0.1:${c.port}: its certificate is not signed by a CA we trust`,
    )
  })

  test("a name the certificate does not cover is refused (localhost is not in its subjectAltName)", async () => {
    const r = await c.exec(
      [
        BIN,
        "client",
        "jobs",
        "--config",
        clientWith({ scheme: "https", host: "localhost", port: c.port, ca_file: pki.ca }),
      ],
      {},
    )
    expect(r.code).toBe(5)
    expect(dffmpegLines(r.err)).toHaveLength(1)
    expect(r.err).toContain(
      `cannot trust the coordinator at https://localhost:${c.port}: its certificate is not valid for this host name or address (ERR_TLS_CERT_ALTNAME_INVALID`,
    )
  })

  test("the remote admin CLI works over TLS with ca_file", async () => {
    await c.enableAdmin()
    const r = await c.remote(["workers", "ls", "--json"])
    if (r.code !== 0) throw new Error(r.err)
    expect((JSON.parse(r.out) as { id: string }[]).map((w) => w.id)).toEqual(["worker1"])
  })

  test("a worker trusting another CA never registers and says why at error level, again and again", async () => {
    await c.addUser("worker9", "worker")
    const dir = join(c.dir, "worker9")
    const cfg = join(c.dir, "worker9.yaml")
    writeFileSync(
      cfg,
      json({
        client_id: "worker9",
        hmac_key_file: "worker9.key",
        coordinator: { scheme: "https", port: c.port, ca_file: pki.wrongCa },
        paths: { Media: c.storage },
        run_as: SANDBOX_USER,
      }),
    )
    const w = new Proc(
      "worker9",
      Bun.spawn([BIN, "worker", "--config", cfg], {
        cwd: c.dir,
        env: { PATH: process.env.PATH!, HOME: dir },
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      }),
    )
    try {
      const reason = `cannot trust the coordinator at https://127.0.0.1:${c.port}: its certificate is not signed by a CA we trust`
      await w.waitForLine(
        new RegExp(`coordinator not trusted; retrying.*${reason.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`),
      )
      // It keeps trying (and keeps saying so) rather than exiting.
      await c.waitFor(() => w.stderrText.filter((l) => l.includes("coordinator not trusted")).length >= 2, {
        timeoutMs: 10_000,
        what: "a second refusal",
      })
      expect(w.stderrText.some((l) => l.includes("worker registered"))).toBe(false)
      const r = await c.remote(["workers", "ls", "--json"])
      expect((JSON.parse(r.out) as { id: string }[]).map((x) => x.id)).toEqual(["worker1"])
    } finally {
      await w.stop("SIGKILL")
    }
  })
})

describe("coordinator TLS configuration errors", () => {
  const start = async (tls: Record<string, unknown>) => {
    const cfg = join(c.dir, `bad-tls-${Math.random().toString(36).slice(2)}.yaml`)
    writeFileSync(cfg, json({ host: "127.0.0.1", port: 0, database: { path: ":memory:" }, tls }))
    return c.exec([BIN, "coordinator", "--config", cfg], { timeoutMs: 20_000 })
  }

  test("an unreadable certificate file: one line, exit 3", async () => {
    const r = await start({ cert_file: join(pkiDir, "missing.pem"), key_file: pki.key })
    expect(r.code).toBe(3)
    expect(dffmpegLines(r.err)).toEqual([
      `dffmpeg: tls.cert_file ${join(pkiDir, "missing.pem")} cannot be read: ENOENT`,
    ])
  })

  test("a file that is not PEM, and a key that does not match the certificate: one line each, exit 3", async () => {
    const notPem = join(pkiDir, "not.pem")
    writeFileSync(notPem, "hello\n")
    const a = await start({ cert_file: pki.cert, key_file: notPem })
    expect(a.code).toBe(3)
    expect(dffmpegLines(a.err)).toEqual([`dffmpeg: tls.key_file ${notPem} is not a PEM private key`])
    const b = await start({ cert_file: pki.cert, key_file: join(pkiDir, "wrong-ca.key") })
    expect(b.code).toBe(3)
    expect(dffmpegLines(b.err)).toHaveLength(1)
    expect(b.err).toContain(
      `dffmpeg: tls: cannot use cert_file ${pki.cert} with key_file ${join(pkiDir, "wrong-ca.key")}`,
    )
  })
})
