import { readJson, type ApiClient } from "../../shared/http/client.ts"
import { readFrames } from "../../shared/protocol/frames.ts"
import type { Assignment, WorkerRegistration } from "../../shared/protocol/schemas.ts"
import type { RegisterReply, WorkerTransport } from "./types.ts"

const FRAMES = "application/vnd.dffmpeg.frames"

/** The default transport: signed HTTP to the coordinator, long poll for work, framed bodies for bytes. */
export function httpTransport(api: ApiClient): WorkerTransport {
  return {
    url: api.url,
    register: (reg: WorkerRegistration) => api.json<RegisterReply>("POST", "/api/v1/worker/register", { json: reg }),
    async poll(waitSeconds, signal) {
      const res = await api.json<{ jobs: Assignment[] }>("GET", "/api/v1/worker/poll", { query: { wait: waitSeconds }, signal, timeoutMs: (waitSeconds + 10) * 1000 })
      return res.jobs
    },
    async start(job, epoch) {
      await api.json("POST", `/api/v1/jobs/${job}/start`, { query: { epoch } })
    },
    async upload(job, epoch, frames) {
      await api.json("POST", `/api/v1/jobs/${job}/output`, { query: { epoch }, body: frames, contentType: FRAMES, timeoutMs: 30_000 })
    },
    async *input(job, epoch, after, signal) {
      const res = await api.request("GET", `/api/v1/jobs/${job}/input`, { query: { epoch, after }, signal })
      if (!res.ok || !res.body) await readJson(res)
      yield* readFrames(res.body!)
    },
  }
}
