import { describe, expect, test } from "bun:test"
import { createSqliteStore } from "../store/sqlite/index.ts"
import type { Store } from "../store/index.ts"
import { NONCE_KEEP_MS, NONCE_PRUNE_BATCH, NONCE_PRUNE_BATCHES, pruneNonces } from "./nonces.ts"

describe("pruneNonces", () => {
  test("deletes stored nonces older than NONCE_KEEP_MS and keeps younger ones", async () => {
    const store = createSqliteStore({ path: ":memory:" })
    await store.migrate()
    const now = 1_700_000_000_000
    for (let i = 0; i < 5; i++) await store.rememberNonce("a", `old-${i}`.padEnd(16, "x"), now - NONCE_KEEP_MS - 1 - i)
    await store.rememberNonce("a", "young".padEnd(16, "x"), now - NONCE_KEEP_MS + 1)
    expect(await pruneNonces(store, now)).toBe(5)
    expect(await store.rememberNonce("a", "young".padEnd(16, "x"), now)).toBe(false)
    expect(await store.rememberNonce("a", "old-0".padEnd(16, "x"), now)).toBe(true)
    await store.close()
  })

  test("a pass is bounded: at most NONCE_PRUNE_BATCHES batches, however many are left", async () => {
    let calls = 0
    const store = {
      async pruneNonces(_before: number, limit: number) {
        calls++
        return limit
      },
    } as unknown as Store
    expect(await pruneNonces(store, 0)).toBe(NONCE_PRUNE_BATCH * NONCE_PRUNE_BATCHES)
    expect(calls).toBe(NONCE_PRUNE_BATCHES)
  })
})
