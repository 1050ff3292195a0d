import { createApiClient, readJson, type ApiClient } from "../../src/shared/http/client.ts"
import { Kind, frameJson, readFrames } from "../../src/shared/protocol/frames.ts"
import type { Job, Outcome } from "../../src/shared/protocol/schemas.ts"
import type { Cluster } from "./cluster.ts"

/** A signed API client for one identity of a test cluster. */
export function apiFor(c: Cluster, name: string): ApiClient {
  return createApiClient({ url: c.url, client: name, key: c.key(name) })
}

/** Submits a raw job (already path-mapped) and follows it to the end, collecting its output. */
export async function submitRaw(
  api: ApiClient,
  body: {
    binary: string
    args: string[]
    paths: string[]
    cwd: string | null
    stdin?: boolean
    files?: { arg: number; content: string }[]
  },
) {
  const res = await api.request("POST", "/api/v1/jobs", { query: { attach: 1 }, json: { stdin: false, ...body } })
  if (!res.ok) return { status: res.status, error: (await res.json()) as { error: { code: string; message: string } } }
  let job: Job | undefined
  let outcome: Outcome | undefined
  const stdout: Uint8Array[] = []
  const stderr: Uint8Array[] = []
  for await (const f of readFrames(res.body!)) {
    if (f.kind === Kind.event) job = (frameJson(f) as { job: Job }).job
    else if (f.kind === Kind.stdout) stdout.push(f.data)
    else if (f.kind === Kind.stderr) stderr.push(f.data)
    else if (f.kind === Kind.exit) outcome = frameJson(f) as Outcome
  }
  const dec = new TextDecoder()
  return {
    status: res.status,
    job: job!,
    outcome: outcome!,
    stdout: dec.decode(Buffer.concat(stdout)),
    stderr: dec.decode(Buffer.concat(stderr)),
  }
}

export { readJson }
