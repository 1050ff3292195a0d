import { TrustError } from "../errors.ts"
import { escapeControls } from "../text.ts"
import type { Job } from "../protocol/schemas.ts"
import { readJson, type ApiClient } from "./client.ts"

/** Response header of a listing page that was cut (coordinator's `limits.max_page_size`): the next `before`. */
export const NEXT_PAGE_HEADER = "x-next-before"

/**
 * Up to `limit` jobs of `GET /api/v1/jobs`, newest first, paging on with the coordinator's cursor: a
 * coordinator serves at most `limits.max_page_size` jobs a request, whatever `limit` asks.
 */
export async function listJobPages(
  api: ApiClient,
  query: Record<string, string | number | undefined>,
  limit: number,
  signal?: AbortSignal,
): Promise<Job[]> {
  const out: Job[] = []
  let before = query.before
  while (out.length < limit) {
    const res = await api.request("GET", "/api/v1/jobs", {
      query: { ...query, before, limit: limit - out.length },
      signal,
    })
    const page = (await readJson(res)) as Job[]
    out.push(...page)
    const next = res.headers.get(NEXT_PAGE_HEADER)
    if (!next || !page.length) break
    // The coordinator's cursor is the last id it sent; anything else would skip or repeat jobs.
    if (next !== page[page.length - 1]!.id)
      throw new TrustError(
        `the coordinator sent a next-page cursor (${escapeControls(next.slice(0, 64))}) that is not the last job of its page; refusing the listing`,
      )
    before = next
  }
  return out
}
