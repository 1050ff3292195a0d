import type { Job } from "../protocol/schemas.ts"
import { readJson, type ApiClient } from "./client.ts"

/** Response header of a listing page that was cut (coordinator's `limits.max_page_size`): the next `before`. */
export const NEXT_PAGE_HEADER = "x-next-before"

/**
 * Up to `limit` jobs of `GET /api/v1/jobs`, newest first, paging on with the coordinator's cursor: a
 * coordinator serves at most `limits.max_page_size` jobs a request, whatever `limit` asks.
 */
export async function listJobPages(api: ApiClient, query: Record<string, string | number | undefined>, limit: number, signal?: AbortSignal): Promise<Job[]> {
  const out: Job[] = []
  let before = query.before
  while (out.length < limit) {
    const res = await api.request("GET", "/api/v1/jobs", { query: { ...query, before, limit: limit - out.length }, signal })
    const page = (await readJson(res)) as Job[]
    out.push(...page)
    const next = res.headers.get(NEXT_PAGE_HEADER)
    if (!next || !page.length) break
    before = next
  }
  return out
}
