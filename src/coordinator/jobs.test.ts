import { afterEach, beforeEach, describe, expect, test } from "bun:test"
import { AuthError, ConflictError, NotFoundError } from "../shared/errors.ts"
import type { Store } from "../store/index.ts"
import { T0, memoryStore, newJob, registration } from "../../test/helpers/fixtures.ts"
import { cancelJob, cancelReason } from "./jobs.ts"

describe("cancelJob", () => {
  let store: Store
  beforeEach(async () => {
    store = await memoryStore()
    await store.upsertWorker("w1", registration(), "t", T0)
  })
  afterEach(async () => {
    await store.close()
  })

  const running = async (id: string) => {
    await store.createJob(newJob(id), T0)
    await store.assign(id, "w1", T0)
    await store.start(id, "w1", 1, T0)
  }

  test("the reason names who canceled, and from where", () => {
    expect(cancelReason({ name: "alice" })).toBe("canceled by alice")
    expect(cancelReason({ name: "boss", from: "dashboard" })).toBe("canceled by boss from the dashboard")
    expect(cancelReason({ name: null })).toBe("canceled by an administrator")
  })

  test("a queued job is canceled at once, with the reason", async () => {
    await store.createJob(newJob("q"), T0)
    expect(await cancelJob(store, "q", { name: "alice" }, T0 + 1)).toMatchObject({
      status: "canceled",
      error: "canceled by alice",
      finishedAt: T0 + 1,
    })
  })

  test("a running job is marked; asking again returns it unchanged, still running", async () => {
    await running("r")
    expect(await cancelJob(store, "r", { name: "boss", from: "dashboard" }, T0 + 1)).toMatchObject({
      status: "running",
      cancelRequestedAt: T0 + 1,
      error: "canceled by boss from the dashboard",
    })
    const again = await cancelJob(store, "r", { name: "alice" }, T0 + 2)
    expect(again).toMatchObject({ status: "running", cancelRequestedAt: T0 + 1 })
    expect((await store.events("r")).filter((e) => e.status === "canceling")).toHaveLength(1)
  })

  test("an ended job is a conflict naming its state; an unknown one is not found", async () => {
    await store.createJob(newJob("e"), T0)
    await cancelJob(store, "e", { name: null }, T0)
    const err = await cancelJob(store, "e", { name: null }, T0).catch((e) => e)
    expect(err).toBeInstanceOf(ConflictError)
    expect(err).toMatchObject({ message: "job e already ended: canceled", details: { status: "canceled" } })
    await expect(cancelJob(store, "nope", { name: null }, T0)).rejects.toBeInstanceOf(NotFoundError)
  })

  test("a refusal by `authorize` changes nothing", async () => {
    await store.createJob(newJob("a"), T0)
    const refuse = () => {
      throw new AuthError("no", 403)
    }
    await expect(cancelJob(store, "a", { name: "mallory" }, T0, { authorize: refuse })).rejects.toBeInstanceOf(
      AuthError,
    )
    expect((await store.getJob("a"))?.status).toBe("queued")
  })
})
