import { afterAll, expect, test } from "bun:test"
import { HEADER } from "../shared/auth/hmac.ts"
import { RESPONSE_HEADER, StreamSealer, signResponse } from "../shared/auth/response.ts"
import { NotFoundError } from "../shared/errors.ts"
import { createApiClient } from "../shared/http/client.ts"
import { Kind, encodeFrame, encodeJsonFrame, type Frame } from "../shared/protocol/frames.ts"
import { jobFrames } from "./stream.ts"

const enc = new TextEncoder()
const JOB = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const afters: string[] = []
const key = Buffer.alloc(32, 1)
const FRAMES = "application/vnd.dffmpeg.frames"

/** A coordinator (replies signed as the real one signs them) whose first stream breaks after two chunks; later ones resume from `after`. */
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const url = new URL(req.url)
    const nonce = req.headers.get(HEADER.nonce)!
    if (!url.pathname.includes(JOB)) {
      const body = JSON.stringify({ error: { code: "E_NOT_FOUND", message: "no job" } })
      return new Response(body, {
        status: 404,
        headers: {
          "content-type": "application/json",
          [RESPONSE_HEADER]: signResponse(key, { nonce, status: 404, contentType: "application/json" }, body),
        },
      })
    }
    const after = Number(url.searchParams.get("after"))
    afters.push(`${after}${url.searchParams.get("progress") ? "+progress" : ""}`)
    const sealer = new StreamSealer(key, { nonce, status: 200, contentType: FRAMES })
    const headers = { "content-type": FRAMES, [RESPONSE_HEADER]: sealer.header }
    const chunks = ["a", "b", "c"]
      .map((d, i) => encodeFrame(Kind.stdout, i + 1, enc.encode(d)))
      .filter((_, i) => i + 1 > after)
      .map((c) => sealer.seal(c))
    if (afters.length === 1) {
      // Two chunks, then the connection drops without an outcome.
      return new Response(new Blob([chunks[0]!, chunks[1]!]).stream(), { headers })
    }
    return new Response(
      new Blob([
        ...chunks,
        sealer.seal(encodeJsonFrame(Kind.exit, 3, { status: "completed", code: 0, signal: null, error: null })),
        sealer.end(),
      ]),
      { headers },
    )
  },
})
afterAll(() => server.stop(true))
const api = createApiClient({ url: `http://127.0.0.1:${server.port}`, client: "c", key: key.toString("base64") })

test("a dropped stream is re-opened after the last chunk taken: nothing lost or repeated, and it ends with the exit frame", async () => {
  const got: Frame[] = []
  for await (const f of jobFrames(api, { job: JOB, query: { progress: 1 } })) got.push(f)
  expect(got.map((f) => (f.kind === Kind.exit ? "exit" : new TextDecoder().decode(f.data)))).toEqual([
    "a",
    "b",
    "c",
    "exit",
  ])
  expect(afters).toEqual(["0+progress", "2+progress"])
})

test("a refusal is not retried", async () => {
  const err = await (async () => {
    for await (const _ of jobFrames(api, { job: "01ARZ3NDEKTSV4RRFFQ69G5FAW" }));
  })().catch((e: unknown) => e)
  expect(err).toBeInstanceOf(NotFoundError)
})
