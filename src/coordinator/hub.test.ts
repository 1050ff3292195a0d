import { describe, expect, test } from "bun:test"
import type { Job } from "../shared/protocol/schemas.ts"
import { Hub } from "./hub.ts"
import { testNotifier } from "../../test/conformance/notifier.ts"

/** Resolves to "woken" when `p` settles before `ms`, else "timer" (the wait's own timer is far longer). */
const race = (p: Promise<unknown>, ms = 200) => Promise.race([p.then(() => "woken"), Bun.sleep(ms).then(() => "timer")])

describe("in-memory notifier", () => {
  test("wait resolves at the next notify of its topic, not of another", async () => {
    const hub = new Hub()
    const w = hub.wait("a", 60_000)
    hub.notify("b")
    expect(await race(w, 50)).toBe("timer")
    hub.notify("a")
    expect(await race(w)).toBe("woken")
    expect(hub.size).toBe(0)
  })

  test("wait resolves on its timer and on abort, and forgets its topic", async () => {
    const hub = new Hub()
    expect(await race(hub.wait("a", 10))).toBe("woken")
    const ac = new AbortController()
    const w = hub.wait("a", 60_000, ac.signal)
    expect(hub.size).toBe(1)
    ac.abort()
    expect(await race(w)).toBe("woken")
    expect(hub.size).toBe(0)
  })

  test("a subscription keeps a notification that came while its owner was reading", async () => {
    const hub = new Hub()
    const sub = hub.subscribe("a")
    // The change commits between the read and the wait: the wait must not sleep through it.
    hub.notify("a")
    expect(await race(sub.wait(60_000))).toBe("woken")
    // Consumed: the next wait sleeps until the next notification.
    const next = sub.wait(60_000)
    expect(await race(next, 50)).toBe("timer")
    hub.notify("a")
    expect(await race(next)).toBe("woken")
    sub.close()
    expect(hub.size).toBe(0)
  })

  test("closing a subscription ends its wait and stops listening", async () => {
    const hub = new Hub()
    const sub = hub.subscribe("a")
    const w = sub.wait(60_000)
    sub.close()
    expect(await race(w)).toBe("woken")
    hub.notify("a")
    expect(hub.size).toBe(0)
  })

  describe("hints", () => {
    const job = (status: string) => ({ id: "j", status }) as Job

    test("a wake-up hands what it was told since the last wait: the latest job, and whether output came", async () => {
      const hub = new Hub()
      const sub = hub.subscribe("a")
      hub.notify("a", { job: job("assigned") })
      hub.notify("a", { job: job("running") })
      expect(await sub.wait(60_000)).toEqual({ job: job("running") })
      // Told while it waits, in one go (the changes of one commit): one wake-up hears all of them.
      const next = sub.wait(60_000)
      hub.notify("a", { output: true })
      hub.notify("a", { job: job("completed") })
      expect(await next).toEqual({ job: job("completed"), output: true })
      sub.close()
    })

    test("one notification without a hint, or a wake-up by the timer, says nothing: read everything", async () => {
      const hub = new Hub()
      const sub = hub.subscribe("a")
      hub.notify("a", { job: job("running") })
      hub.notify("a")
      hub.notify("a", { output: true })
      expect(await sub.wait(60_000)).toBeUndefined()
      hub.notify("a", {})
      expect(await sub.wait(60_000)).toBeUndefined()
      expect(await sub.wait(5)).toBeUndefined()
      // What a hintless notification hid is not carried over to the next wake-up.
      hub.notify("a", { output: true })
      expect(await sub.wait(60_000)).toEqual({ output: true })
      sub.close()
    })
  })
})

// The notifier contract, on the in-memory hub: its "other coordinator" is itself.
testNotifier("memory", {
  remote: false,
  async pair() {
    const hub = new Hub()
    return { a: hub, b: hub }
  },
})
