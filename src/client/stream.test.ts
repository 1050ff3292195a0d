import { afterAll, expect, test } from "bun:test"
import { NotFoundError } from "../shared/errors.ts"
import { createApiClient } from "../shared/http/client.ts"
import { Kind, encodeFrame, encodeJsonFrame, type Frame } from "../shared/protocol/frames.ts"
import { jobFrames } from "./stream.ts"

const enc = new TextEncoder()
const JOB = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const afters: string[] = []

/** A coordinator whose first stream breaks after two chunks; later ones resume from `after`. */
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const url = new URL(req.url)
    if (!url.pathname.includes(JOB)) return Response.json({ error: { code: "E_NOT_FOUND", message: "no job" } }, { status: 404 })
    const after = Number(url.searchParams.get("after"))
    afters.push(`${after}${url.searchParams.get("progress") ? "+progress" : ""}`)
    const chunks = ["a", "b", "c"].map((d, i) => encodeFrame(Kind.stdout, i + 1, enc.encode(d))).filter((_, i) => i + 1 > after)
    if (afters.length === 1) {
      // Two chunks, then the connection drops without an outcome.
      return new Response(new Blob([chunks[0], chunks[1]]).stream())
    }
    return new Response(new Blob([...chunks, encodeJsonFrame(Kind.exit, 3, { status: "completed", code: 0, signal: null, error: null })]))
  },
})
afterAll(() => server.stop(true))
const api = createApiClient({ url: `http://127.0.0.1:${server.port}`, client: "c", key: Buffer.alloc(32, 1).toString("base64") })

test("a dropped stream is re-opened after the last chunk taken: nothing lost or repeated, and it ends with the exit frame", async () => {
  const got: Frame[] = []
  for await (const f of jobFrames(api, { job: JOB, query: { progress: 1 } })) got.push(f)
  expect(got.map((f) => (f.kind === Kind.exit ? "exit" : new TextDecoder().decode(f.data)))).toEqual(["a", "b", "c", "exit"])
  expect(afters).toEqual(["0+progress", "2+progress"])
})

test("a refusal is not retried", async () => {
  const err = await (async () => {
    for await (const _ of jobFrames(api, { job: "01ARZ3NDEKTSV4RRFFQ69G5FAW" }));
  })().catch((e: unknown) => e)
  expect(err).toBeInstanceOf(NotFoundError)
})
