import { readJson, type ApiClient } from "../../shared/http/client.ts"
import { readFrames } from "../../shared/protocol/frames.ts"
import type { WorkerRegistration } from "../../shared/protocol/schemas.ts"
import type { HeartbeatReply, PollReply, RegisterReply, WorkerTransport } from "./types.ts"

const FRAMES = "application/vnd.dffmpeg.frames"

/** The default transport: signed HTTP to the coordinator, long poll for work, framed bodies for bytes. */
export function httpTransport(api: ApiClient): WorkerTransport {
  return {
    url: api.url,
    register: (reg: WorkerRegistration) => api.json<RegisterReply>("POST", "/api/v1/worker/register", { json: reg }),
    async verify(token) {
      await api.json("POST", "/api/v1/worker/verify", { json: { token } })
    },
    async deregister() {
      await api.json("POST", "/api/v1/worker/deregister", { timeoutMs: 3000 })
    },
    poll: (waitSeconds, signal) =>
      api.json<PollReply>("GET", "/api/v1/worker/poll", {
        query: { wait: waitSeconds },
        signal,
        timeoutMs: (waitSeconds + 10) * 1000,
      }),
    heartbeat: (held) =>
      api.json<HeartbeatReply>("POST", "/api/v1/worker/heartbeat", { json: { jobs: held }, timeoutMs: 5000 }),
    async reject(job, epoch) {
      await api.json("POST", `/api/v1/jobs/${job}/reject`, { query: { epoch } })
    },
    async start(job, epoch) {
      await api.json("POST", `/api/v1/jobs/${job}/start`, { query: { epoch } })
    },
    async upload(job, epoch, frames) {
      await api.json("POST", `/api/v1/jobs/${job}/output`, {
        query: { epoch },
        body: frames,
        contentType: FRAMES,
        timeoutMs: 30_000,
      })
    },
    async *input(job, epoch, after, signal) {
      const res = await api.request("GET", `/api/v1/jobs/${job}/input`, { query: { epoch, after }, signal })
      if (!res.ok || !res.body) await readJson(res)
      yield* readFrames(res.body!)
    },
  }
}
