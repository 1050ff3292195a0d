// A child process for src/transports/broker/link.test.ts: opens one broker link, uses or fails it, and
// never calls process.exit, so it ends by itself only if the link left no timers or sockets behind.
// argv: <kind> <settings JSON> <"fail" | "use">
import { ulid } from "ulid"
import { openLink } from "../../src/transports/broker/index.ts"
import type { BrokerKind } from "../../src/transports/broker/types.ts"

const [kind, json, mode] = process.argv.slice(2) as [BrokerKind, string, "fail" | "use"]
const self = { identity: "alice", instance: ulid() }
let got = 0
const link = await openLink(kind, JSON.parse(json), {
  self,
  serveRequests: true,
  onMessage: async () => void got++,
})
try {
  await link.ready(mode === "fail" ? 1_000 : 10_000)
  await link.publish(self, new TextEncoder().encode("hi"))
  const deadline = Date.now() + 10_000
  while (got === 0 && Date.now() < deadline) await Bun.sleep(10)
  await link.close()
  process.stderr.write(`closed got=${got}\n`)
} catch (e) {
  // Like the CLI's one error line; the failed ready already closed the link.
  process.stderr.write(`dffmpeg: ${(e as Error).message}\n`)
}
