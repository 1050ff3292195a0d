import type { WorkerRegistration } from "../../shared/protocol/schemas.ts"
import { IdentityInUseError } from "../../shared/errors.ts"
import type { WorkerInstance } from "../../shared/protocol/host-load.ts"
import type { HeldJob, InstanceLiveness, Store, StoreChange } from "../types.ts"
import type { Worker } from "../../shared/protocol/schemas.ts"
import type { Database } from "./schema.ts"
import { deepFreeze, toWorker, type Sql } from "./shared.ts"
import type { Writer } from "./writer.ts"

/** Workers: joining in two stages, liveness, drain, reaping, and the heartbeat for the jobs they hold. */
export function workerMethods(
  c: Sql,
  w: Writer,
): Pick<
  Store,
  | "upsertWorker"
  | "workerToken"
  | "verifyWorker"
  | "touchWorker"
  | "setWorkerStatus"
  | "getWorker"
  | "listWorkers"
  | "requestDrain"
  | "reapWorkers"
  | "heartbeat"
> {
  const { db, tx } = c
  const { told } = w
  /**
   * Each worker's parsed tools (its ffmpeg's codecs, filters, formats: ~35 KB of JSON) at its stored
   * revision: a scheduling pass and a submission read every worker, and reading and parsing all their
   * tools each time was most of the coordinator's CPU with 50 workers (bench:drain). A row is read
   * without its tools; they are read, parsed and frozen (no reader can change what the next one gets)
   * only for a worker whose revision this store has not seen, which a registration bumps when its tools
   * differ. At most TOOLS_MEMO workers: the oldest entry goes first.
   */
  const memo = new Map<string, { rev: number; tools: Worker["tools"] }>()
  const withTools = async (rows: Row[]): Promise<Worker[]> => {
    const missing = rows.filter((r) => memo.get(r.id)?.rev !== Number(r.tools_rev)).map((r) => r.id)
    for (let i = 0; i < missing.length; i += 500) {
      const got = await db
        .selectFrom("workers")
        .select(["id", "tools", "tools_rev"])
        .where("id", "in", missing.slice(i, i + 500))
        .execute()
      for (const g of got) {
        memo.delete(g.id)
        memo.set(g.id, { rev: Number(g.tools_rev), tools: deepFreeze(JSON.parse(g.tools) as Worker["tools"]) })
        if (memo.size > TOOLS_MEMO) memo.delete(memo.keys().next().value!)
      }
    }
    // A row whose tools changed between the two reads takes the newer ones: a registration's own.
    return rows.map((r) => toWorker(r, memo.get(r.id)?.tools ?? {}))
  }
  const rowsOf = () => db.selectFrom("workers").select(WITHOUT_TOOLS)
  const getWorker = async (id: string) => {
    const r = await rowsOf().where("id", "=", id).executeTakeFirst()
    return r ? (await withTools([r]))[0] : undefined
  }
  return {
    async upsertWorker(id, reg, token, now, transport = "http_polling", liveness) {
      const values = {
        binaries: JSON.stringify(reg.binaries),
        paths: JSON.stringify(reg.paths),
        max_jobs: reg.maxJobs,
        version: reg.version,
        capabilities: JSON.stringify(reg.capabilities ?? {}),
        tools: JSON.stringify(reg.tools ?? {}),
        labels: JSON.stringify(reg.labels ?? {}),
        weight: reg.weight ?? 1,
        max_probe_jobs: reg.maxProbeJobs ?? 4,
        last_seen: now,
        self_draining: reg.draining ? 1 : 0,
        transport,
        // The id first, always: setWorkerStatus matches the column's start.
        ...(reg.instance
          ? { instance: JSON.stringify({ id: reg.instance.id, host: reg.instance.host, pid: reg.instance.pid }) }
          : {}),
      }
      await tx(async (t) => {
        const cur = await t
          .selectFrom("workers")
          .select(["status", "drain_requested", "transport", "instance", "last_seen", "poll_closed_at"])
          .where("id", "=", id)
          .executeTakeFirst()
        if (cur && reg.instance && liveness) refuseLiveOther(id, cur, reg.instance.id, now, liveness)
        // A known, verified worker keeps its state (re-registration); a new or offline one must verify,
        // and so must one that changed transport: the token proves the new channel works.
        // So must a new process taking the identity over (its own token: the old one's channel proves nothing).
        const sameProcess = !reg.instance || !cur?.instance || instanceId(cur.instance) === reg.instance.id
        const verified =
          cur && cur.status !== "offline" && cur.status !== "registering" && cur.transport === transport && sameProcess
        // An administrator's drain outlives the worker's own view of itself (restarts included).
        const status = !verified
          ? "registering"
          : reg.draining || Number(cur.drain_requested) === 1
            ? "draining"
            : "online"
        if (cur)
          await t
            .updateTable("workers")
            // The revision first: MySQL evaluates SET left to right (the others compare the old value).
            .set((eb) => ({
              tools_rev: eb
                .case()
                .when("tools", "=", values.tools)
                .then(eb.ref("tools_rev"))
                .else(eb("tools_rev", "+", 1))
                .end(),
              ...values,
              status,
              ...(verified ? {} : { token }),
            }))
            .where("id", "=", id)
            .execute()
        else
          await t
            .insertInto("workers")
            .values({ id, registered_at: now, ...values, status, token, drain_requested: 0, tools_rev: 0 })
            .execute()
      })
      return told((await getWorker(id))!, { type: "worker", worker: id, what: "registered" })
    },
    async workerToken(id) {
      const w = await db.selectFrom("workers").select("token").where("id", "=", id).executeTakeFirst()
      return w?.token ?? undefined
    },
    async verifyWorker(id, token, now) {
      const w = await db.selectFrom("workers").select(["status", "token"]).where("id", "=", id).executeTakeFirst()
      if (!w || w.status === "offline" || w.token !== token) return false
      if (w.status !== "registering") return true
      const res = await db
        .updateTable("workers")
        .set((eb) => ({
          status: eb.case().when("drain_requested", "=", 1).then("draining").else("online").end(),
          token: null,
          last_seen: now,
        }))
        .where("id", "=", id)
        .where("token", "=", token)
        .executeTakeFirst()
      const verified = res.numUpdatedRows > 0n
      return told(verified, verified && { type: "worker", worker: id, what: "verified" })
    },
    async touchWorker(id, now, poll) {
      let q = db
        .updateTable("workers")
        .set(poll ? { last_seen: now, poll_closed_at: poll === "open" ? null : now } : { last_seen: now })
        .where("id", "=", id)
        .where("status", "!=", "offline")
      // A close recorded late (the coordinator waits before writing it) must not undo a poll the worker
      // opened since, on another coordinator sharing the database: that one wrote a later last_seen.
      if (poll === "closed") q = q.where("last_seen", "<=", now)
      const res = await q.executeTakeFirst()
      told(undefined, res.numUpdatedRows > 0n && { type: "worker", worker: id, what: "seen" })
    },
    async setWorkerStatus(id, status, now, instance) {
      let q = db.updateTable("workers").set({ status, last_seen: now }).where("id", "=", id)
      // Another process's stop never changes the state of the one serving the identity.
      if (instance)
        q = q.where((eb) => eb.or([eb("instance", "is", null), eb("instance", "like", instancePattern(instance))]))
      const res = await q.executeTakeFirst()
      const set = res.numUpdatedRows > 0n
      return told(set, set && { type: "worker", worker: id, what: "status" })
    },
    getWorker,
    async listWorkers() {
      return withTools(await rowsOf().orderBy("id").execute())
    },
    async requestDrain(id, on, now) {
      const done = await tx(async (t) => {
        const cur = await t
          .selectFrom("workers")
          .select(["status", "self_draining"])
          .where("id", "=", id)
          .executeTakeFirst()
        if (!cur) return false
        // Only a serving worker changes state now; a registering or offline one picks the flag up when
        // it is verified. An undrain never revives a worker that is draining because it is stopping.
        const serving = cur.status === "online" || cur.status === "draining"
        const status = serving ? (on || Number(cur.self_draining) === 1 ? "draining" : "online") : cur.status
        await t
          .updateTable("workers")
          .set({ drain_requested: on ? 1 : 0, status })
          .where("id", "=", id)
          .execute()
        return true
      })
      if (!done) return undefined
      return told(await getWorker(id), { type: "worker", worker: id, what: "drain" })
    },
    async reapWorkers(before) {
      const stale = await db
        .selectFrom("workers")
        .select("id")
        .where("status", "!=", "offline")
        .where("last_seen", "<", before)
        .execute()
      const out: string[] = []
      for (const w of stale) {
        const res = await db
          .updateTable("workers")
          .set({ status: "offline" })
          .where("id", "=", w.id)
          .where("status", "!=", "offline")
          .where("last_seen", "<", before)
          .executeTakeFirst()
        if (res.numUpdatedRows > 0n) out.push(w.id)
      }
      return told(out, ...out.map((worker): StoreChange => ({ type: "worker", worker, what: "reaped" })))
    },
    async heartbeat(worker, held, now, hostLoad) {
      const stale: HeldJob[] = []
      await tx(async (t) => {
        await t
          .updateTable("workers")
          .set(hostLoad ? { last_seen: now, host_load: JSON.stringify(hostLoad) } : { last_seen: now })
          .where("id", "=", worker)
          .where("status", "!=", "offline")
          .execute()
        for (const h of held) {
          const res = await t
            .updateTable("jobs")
            .set({ heartbeat_at: now })
            .where("id", "=", h.id)
            .where("worker_id", "=", worker)
            .where("epoch", "=", h.epoch)
            .where("status", "in", ["assigned", "running"])
            .executeTakeFirst()
          if (res.numUpdatedRows === 0n) stale.push(h)
        }
      })
      return stale
    },
  }
}

const instanceId = (json: string) => (JSON.parse(json) as WorkerInstance).id

/** `{"id":"<ULID>",…`: an instance column of that process (ULIDs hold no LIKE wildcard). */
const instancePattern = (instance: string) => `{"id":"${instance}"%`

/**
 * IdentityInUseError when the row's process is another one and not gone (InstanceLiveness): its id,
 * host and pid, and how long until it would count as gone if it stays silent (`retryAfterSeconds`).
 */
function refuseLiveOther(
  id: string,
  cur: { status: string; instance: string | null; last_seen: number; poll_closed_at: number | null },
  instance: string,
  now: number,
  l: InstanceLiveness,
): void {
  if (!cur.instance || cur.status === "offline") return
  const other = JSON.parse(cur.instance) as WorkerInstance
  if (other.id === instance) return
  const lastSeen = Number(cur.last_seen)
  const pollOpen = cur.poll_closed_at === null
  const goneAt = lastSeen + (pollOpen ? l.staleMs : l.quietMs)
  if (now > goneAt) return
  throw new IdentityInUseError(
    `worker identity ${id} is already served by a live worker on host ${other.host} (pid ${other.pid}, instance ${other.id}); give this worker its own client_id, or stop the other one`,
    {
      identity: id,
      instance: other.id,
      host: other.host,
      pid: other.pid,
      lastSeen,
      pollOpen,
      pollClosedAt: cur.poll_closed_at === null ? null : Number(cur.poll_closed_at),
      retryAfterSeconds: Math.ceil((goneAt - now) / 1000),
    },
  )
}

const TOOLS_MEMO = 1024
type Row = Omit<Database["workers"], "tools">
/** Every column of a worker but its tools. */
const WITHOUT_TOOLS = [
  "id",
  "binaries",
  "paths",
  "max_jobs",
  "version",
  "capabilities",
  "registered_at",
  "last_seen",
  "status",
  "token",
  "drain_requested",
  "self_draining",
  "labels",
  "weight",
  "max_probe_jobs",
  "poll_closed_at",
  "tools_rev",
  "transport",
  "instance",
  "host_load",
] as const satisfies readonly (keyof Row)[]
