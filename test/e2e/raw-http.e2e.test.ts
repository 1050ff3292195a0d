import { afterAll, beforeAll, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BIN, requireBinary } from "../helpers/bin.ts"
import { Proc } from "../helpers/proc.ts"
import { rawHttp } from "../helpers/raw-http.ts"

/** HTTP that `fetch` cannot send, against the compiled coordinator (found by `bun run fuzz`). */

let dir: string
let coordinator: Proc
let port: number

beforeAll(async () => {
  requireBinary()
  dir = mkdtempSync(join(tmpdir(), "dffmpeg-raw-http-"))
  writeFileSync(
    join(dir, "coordinator.yaml"),
    JSON.stringify({ host: "127.0.0.1", port: 0, database: { path: "./c.db" } }),
  )
  coordinator = new Proc(
    "coordinator",
    Bun.spawn([BIN, "coordinator", "--config", join(dir, "coordinator.yaml")], {
      cwd: dir,
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    }),
  )
  port = Number((await coordinator.waitForLine(/listening on http:\/\/127\.0\.0\.1:(\d+)/))[1])
})

afterAll(async () => {
  await coordinator?.stop()
  rmSync(dir, { recursive: true, force: true })
})

test.each(["/health", "/api/v1/jobs", "/", "/dashboard/api/state", "/nope"])(
  "HTTP/1.0 without Host on %s: 400 JSON, never a 500 or Bun's error page",
  async (path) => {
    const res = await rawHttp(port, `GET ${path} HTTP/1.0\r\n\r\n`)
    const body = res.text.slice(res.text.indexOf("\r\n\r\n") + 4)
    expect({ status: res.status, body: JSON.parse(body) }).toEqual({
      status: 400,
      body: { error: { code: "E_INVALID", message: "the request has no Host header" } },
    })
    expect(res.text).toMatch(/\r\ncontent-type: application\/json/i)
    expect(res.text).not.toContain(dir)
  },
)

test("HTTP/1.0 with a Host header is served as before", async () => {
  const res = await rawHttp(port, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
  expect(res.status).toBe(200)
  expect(JSON.parse(res.text.slice(res.text.indexOf("\r\n\r\n") + 4)).status).toBe("ok")
})

test("the coordinator is still up and healthy afterwards", async () => {
  expect(coordinator.proc.exitCode).toBeNull()
  expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200)
})
