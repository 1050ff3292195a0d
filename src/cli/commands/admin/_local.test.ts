import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import type { StreamRow } from "../../../store/types.ts"
import { RouteHarness, T0 } from "../../../../test/helpers/routes.ts"
import type { AdminBackend } from "./_backend.ts"
import { localBackend } from "./_local.ts"

/** The local backend on a `:memory:` store (the remote one is covered end to end in test/e2e/cli*.ts). */
let h: RouteHarness
let b: AdminBackend
beforeEach(async () => {
  h = await RouteHarness.open()
  b = localBackend(h.store, ":memory:", () => T0)
})
afterEach(async () => {
  await h.close()
})

const ID = "01M8DFWF4PCGSZBYEVT8TNJN46"
const text = (rows: StreamRow[]) => new TextDecoder().decode(Buffer.concat(rows.map((r) => r.data)))

describe("users", () => {
  test("add returns a key that the store verifies; rotate replaces it; rm removes the user", async () => {
    const { user, key } = await b.addUser("jellyfin", "client")
    expect(user).toEqual({ name: "jellyfin", role: "client", createdAt: T0 })
    expect((await h.store.getCredential("jellyfin"))?.key).toBe(key)
    const next = await b.rotateKey("jellyfin")
    expect((await h.store.getCredential("jellyfin"))?.key).toBe(next)
    expect(await b.removeUser("jellyfin")).toEqual(user)
    expect(await b.listUsers()).toEqual([])
  })

  test("unknown users are NotFoundError in every verb", async () => {
    for (const call of [() => b.getUser("x"), () => b.removeUser("x"), () => b.rotateKey("x")])
      await expect(call()).rejects.toThrow("no user x")
  })
})

describe("jobs", () => {
  test("output pages, stderr tail and follow return what the worker wrote; follow ends with the job", async () => {
    await h.worker("w1")
    await h.job(ID)
    await h.run(
      ID,
      "w1",
      [
        { stream: "stderr", data: "one\n" },
        { stream: "stdout", data: "x" },
        { stream: "stderr", data: "two\rthree\n" },
      ],
      { code: 0 },
    )
    expect(text(await b.output(ID, 0))).toBe("one\nxtwo\rthree\n")
    expect(await b.stderrTail(ID, 5)).toEqual({ lines: ["one", "three"], truncated: false })
    const seen: StreamRow[] = []
    await b.follow(ID, 0, async (r) => void seen.push(r), new AbortController().signal)
    expect(text(seen)).toBe("one\nxtwo\rthree\n")
  })

  test("cancel ends a queued job at once and refuses one that already ended", async () => {
    await h.job(ID)
    expect((await b.cancelJob(ID)).status).toBe("canceled")
    await expect(b.cancelJob(ID)).rejects.toThrow(`job ${ID} already ended: canceled`)
    await expect(b.cancelJob("01M8DFWFMJ6MS7ZZYSM5GE9EPT")).rejects.toThrow("no job 01M8DFWFMJ6MS7ZZYSM5GE9EPT")
  })
})

describe("workers and janitor", () => {
  test("drain is sticky and reported with the load; unknown workers are NotFoundError", async () => {
    await h.worker("w1")
    expect(await b.setDrain("w1", true)).toMatchObject({ id: "w1", status: "draining", drainRequested: true, load: 0 })
    expect((await b.listWorkers())[0]).toMatchObject({ status: "draining", drainRequested: true })
    await expect(b.setDrain("ghost", true)).rejects.toThrow("no worker ghost")
    await expect(b.getWorker("ghost")).rejects.toThrow("no worker ghost")
  })

  test("a janitor pass needs the remote mode", async () => {
    await expect(b.janitor()).rejects.toThrow(/^janitor run needs the remote mode/)
  })
})
