import { describe, expect, test } from "bun:test"
import { TrustError } from "../errors.ts"
import type { ApiClient } from "./client.ts"
import { NEXT_PAGE_HEADER, listJobPages } from "./pages.ts"

/** A client serving `pages` in turn, each with its next cursor; records the `before` of every request. */
function pager(pages: { ids: string[]; next?: string }[]) {
  const asked: (string | number | undefined)[] = []
  let i = 0
  const api = {
    url: "http://127.0.0.1:1",
    client: "admin",
    async request(_m: string, _p: string, o?: { query?: Record<string, string | number | undefined> }) {
      asked.push(o?.query?.before)
      const p = pages[i++] ?? { ids: [] }
      const headers: Record<string, string> = { "content-type": "application/json" }
      if (p.next !== undefined) headers[NEXT_PAGE_HEADER] = p.next
      return new Response(JSON.stringify(p.ids.map((id) => ({ id }))), { headers })
    },
  } as unknown as ApiClient
  return { api, asked }
}

describe("listJobPages", () => {
  test("follows the cursor, which is the last id of each page", async () => {
    const { api, asked } = pager([
      { ids: ["J8", "J7", "J6"], next: "J6" },
      { ids: ["J5", "J4", "J3"], next: "J3" },
      { ids: ["J2", "J1"] },
    ])
    const jobs = await listJobPages(api, {}, 100)
    expect(jobs.map((j) => j.id)).toEqual(["J8", "J7", "J6", "J5", "J4", "J3", "J2", "J1"])
    expect(asked).toEqual([undefined, "J6", "J3"])
  })

  test("a cursor that is not the last id of its page (jobs would be skipped) is refused", async () => {
    const { api } = pager([{ ids: ["J8", "J7", "J6"], next: "J2" }, { ids: ["J1"] }])
    const err = await listJobPages(api, {}, 100).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TrustError)
    expect((err as Error).message).toContain("J2")
  })
})
