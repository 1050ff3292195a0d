import { afterEach, expect, test } from "bun:test"
import { Hono } from "hono"
import { createConsola } from "consola/core"
import { waitFor } from "../../../test/helpers/bin.ts"
import { newId } from "../../shared/ids.ts"
import type { Store } from "../../store/index.ts"
import { createSqliteStore } from "../../store/sqlite/index.ts"
import type { AuthEnv } from "../api/middleware/hmac.ts"
import { Hub } from "../hub.ts"
import { liveEvents } from "./live.ts"

const stores: Store[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
})

/** The event stream alone, with short timings; the store is not wired to the hub (as for a change made by another coordinator). */
async function stream() {
  const store = createSqliteStore({ path: ":memory:" })
  await store.migrate()
  stores.push(store)
  const hub = new Hub()
  const deps = { store, hub, log: createConsola({ level: 0 }), now: Date.now, staleMs: 30_000 }
  const app = new Hono<AuthEnv>().get("/events", (c) => liveEvents(c, deps, { timing: { minGapMs: 10, refreshMs: 60, keepaliveMs: 150 } }))
  const res = await app.request("/events")
  const reader = res.body!.getReader()
  const dec = new TextDecoder()
  let text = ""
  return {
    store,
    hub,
    /** Reads until `re` matches the text received so far. */
    async until(re: RegExp) {
      while (!re.test(text)) {
        const { value, done } = await reader.read()
        if (done) throw new Error("stream ended")
        text += dec.decode(value, { stream: true })
      }
      return text
    },
    close: () => reader.cancel(),
  }
}

test("a quiet stream gets keep-alive comments, and a change nobody announced shows on the refresh round", async () => {
  const s = await stream()
  await s.until(/event: state/)
  await s.until(/^: keep-alive$/m)
  const id = newId()
  await s.store.createJob({ id, requester: "c", binary: "ffmpeg", args: [], paths: [], cwd: null, stdin: false, attached: false, retries: 0 }, Date.now())
  await s.until(new RegExp(id))
  await s.close()
  await waitFor(() => s.hub.size === 0, { what: "the stream to stop waiting" })
})
