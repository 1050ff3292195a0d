import { sql, type Kysely, type Selectable } from "kysely"
import { isTerminal, type ExitReport, type JobStatus, type ProgressReport } from "../../shared/protocol/schemas.ts"
import type { HeldOutput } from "../held.ts"
import { Kind } from "../../shared/protocol/frames.ts"
import { step, type JobEvent as MachineEvent } from "../machine.ts"
import type { InputChunk, InputRow, OutputBounds, OutputChunk, Store, StreamRow, UploadResult } from "../types.ts"
import type { Database } from "./schema.ts"
import { STREAM, bytes, toJob, type Sql } from "./shared.ts"
import type { Effects, Writer } from "./writer.ts"

/**
 * A job's output (with the end of its run, in the same transaction as the last bytes) and its
 * downlink (stdin, end of stdin, signals). With `held` (the coordinator's in-memory stdout,
 * store/held.ts), an attached job's stdout from a worker that keeps what it sent is held in memory
 * rather than stored: its row keeps its position and size, not its bytes.
 */
export function streamMethods(
  c: Sql,
  w: Writer,
  held?: HeldOutput,
): Pick<
  Store,
  | "appendOutput"
  | "ackOutput"
  | "readOutput"
  | "lastOutput"
  | "lastOutputBytes"
  | "appendInput"
  | "readInput"
  | "inputBytes"
> {
  const { db, dialect } = c
  const { txEmit, apply, lost, told } = w
  const jobEnded = async (id: string) => {
    const r = await db.selectFrom("jobs").select("status").where("id", "=", id).executeTakeFirst()
    return !r || isTerminal(r.status as JobStatus)
  }
  /** One page of a job's stream after `after`, in order of `cursor` (output by position, input by sequence). */
  const pageAfter = <T extends "job_output" | "job_input">(
    table: T,
    cursor: T extends "job_output" ? "pos" : "seq",
    id: string,
    after: number,
    limit: number,
  ) =>
    // One query for both tables; Kysely cannot narrow a column name through a union of tables.
    (db.selectFrom(table as "job_output") as any)
      .selectAll()
      .where("job_id", "=", id)
      .where(cursor, ">", after)
      .orderBy(cursor)
      .limit(limit)
      .execute() as Promise<Selectable<Database[T]>[]>
  return {
    async appendOutput(
      id,
      worker,
      epoch,
      chunks: OutputChunk[],
      exit: ExitReport | undefined,
      now,
      report?: ProgressReport,
      bounds?: OutputBounds,
      opts?: { retain?: boolean },
    ): Promise<UploadResult> {
      const progress = report ? JSON.stringify({ ...report, at: now }) : undefined
      const holder = opts?.retain ? held : undefined
      /** Payloads this call held: released again unless it committed them. */
      const taken: number[] = []
      const release = () => {
        for (const seq of taken) holder?.drop(id, epoch, seq)
      }
      return txEmit(async (tx, out): Promise<UploadResult> => {
        let q = tx.selectFrom("jobs").selectAll().where("id", "=", id)
        if (dialect.forUpdate) q = q.forUpdate()
        const row = await q.executeTakeFirst()
        if (!row) return { ok: false, reason: "not-found" }
        const job = toJob(row)
        if (job.workerId !== worker || job.epoch !== epoch) return { ok: false, reason: "stale", job }
        if (job.status !== "running") {
          // A retried final upload after the job already ended is a success, not a conflict.
          if (job.finishedAt !== null && chunks.every((c) => c.seq <= Number(row.out_seq)))
            return { ok: true, job, finished: true, durable: Number(row.out_seq) }
          return { ok: false, reason: "stale", job }
        }
        let last = Number(row.out_seq)
        const fresh: OutputChunk[] = []
        const again = new Map<number, OutputChunk>()
        for (const c of chunks) {
          if (c.seq <= last) {
            again.set(c.seq, c)
            continue
          }
          if (c.seq !== last + 1) return { ok: false, reason: "gap", job, expected: last + 1 }
          fresh.push(c)
          last = c.seq
        }
        // Nothing of the attempt is stored before its first upload (an attached job is never re-queued
        // after it started; a re-queued detached one starts with no output): no row to look at.
        const first = Number(row.out_seq) === 0
        if (holder && job.attached && first) holder.markComplete(id, epoch)
        if (holder && job.attached && !holder.complete(id, epoch)) {
          // Once per attempt and process: rows held by a coordinator that restarted have no payload any
          // more. Those this upload carries again are taken back; the first one still missing is asked for.
          const lost = await restoreHeld(tx, holder, id, epoch, again)
          if (lost.restored) out.push({ type: "output", job: id })
          if (lost.first !== undefined) return { ok: false, reason: "resend", job, expected: lost.first }
          holder.markComplete(id, epoch)
        }
        // Held in memory: an attached job's stdout, unless its caller is leaving (dropped below) or this
        // upload ends the run (its end stores everything anyway).
        const holding = holder && job.attached && job.cancelRequestedAt === null && !exit ? holder : undefined
        const insert = (rows: OutputChunk[]) => insertChunks(tx, id, epoch, rows, holding && { holder: holding, taken })
        let truncation: Record<string, number> = {}
        if (!bounds || !fresh.length) await insert(fresh)
        else if (job.attached) {
          // The window counts what the caller has not acknowledged (held or stored); an empty one takes
          // any upload, so a batch larger than the window still moves (the body cap bounds it).
          const held = first ? 0 : await sumBytes(tx, id, { after: Number(row.acked_pos) })
          if (held === 0 || held + size(fresh) <= bounds.windowBytes) await insert(fresh)
          // Nobody reads what a job being stopped still writes (its caller is gone, or asked to stop): its
          // stdout is dropped rather than waited for, so its end, and its worker's slot, never wait
          // behind a window that no acknowledgement will open again.
          else if (job.cancelRequestedAt !== null) await insert(fresh.filter((c) => c.stream === "stderr"))
          else return { ok: false, reason: "window-full", job }
        } else truncation = await appendCapped(tx, id, epoch, row, fresh, bounds)
        if (fresh.length || progress) out.push({ type: "output", job: id })
        if (!exit) {
          if (fresh.length || progress)
            await tx
              .updateTable("jobs")
              .set({
                out_seq: last,
                heartbeat_at: now,
                updated_at: now,
                ...truncation,
                ...(progress ? { progress } : {}),
              })
              .where("id", "=", id)
              .execute()
          const low = holder?.lowest(id, epoch)
          return { ok: true, job, finished: false, durable: low === undefined ? last : low - 1 }
        }
        // A truncated job's marker says, once it ended, how much was dropped.
        const mark = truncation.trunc_pos ?? (row.trunc_pos === null ? null : Number(row.trunc_pos))
        if (bounds && mark !== null)
          await tx
            .updateTable("job_output")
            .set({ data: truncationMarker(bounds.detachedBytes, truncation.out_dropped ?? Number(row.out_dropped)) })
            .where("job_id", "=", id)
            .where("pos", "=", mark)
            .execute()
        // The end goes through the machine like every transition, in this transaction: a reader never
        // sees the job ended before its last bytes.
        const ev: MachineEvent = exit.abandoned
          ? { type: "lose", epoch, worker }
          : { type: "exit", worker, epoch, code: exit.code, signal: exit.signal, error: exit.error }
        const s = step(job, ev)
        if (!s) return { ok: false, reason: "stale", job }
        let fx: Effects
        if (exit.abandoned) fx = lost(job, s, exit.abandoned, now)
        else {
          const reason = s.to === "canceled" ? (job.error ?? "canceled") : (exit.error ?? null)
          fx = { set: { exit_code: exit.code, exit_signal: exit.signal, error: reason, finished_at: now }, reason }
        }
        // A re-queued attempt starts its output and progress again (its effects say so); an end keeps them.
        if (s.to !== "queued") fx.set = { ...fx.set, out_seq: last, ...truncation, ...(progress ? { progress } : {}) }
        const next = await apply(tx, out, job, s, fx, now)
        if (!next) return { ok: false, reason: "stale", job }
        return { ok: true, job: next, finished: true, ended: true, durable: last }
      }).then(
        (res) => {
          // Refused uploads change nothing (the exit's refusal after its inserts is never a held row's).
          if (!res.ok) release()
          return res
        },
        (err) => {
          release()
          throw err
        },
      )
    },
    ackOutput(id, pos, tailBytes) {
      let freed: { epoch: number; seq: number }[] = []
      return txEmit(async (tx, out) => {
        // Never past what is stored: rows written later get higher positions and are not acknowledged
        // yet (the highest stored position at most `pos`, read with the job in one statement).
        const row = await tx
          .selectFrom("jobs")
          .select((eb) => [
            "attached",
            "acked_pos",
            eb
              .selectFrom("job_output")
              .select(sql<number | null>`max(pos)`.as("top"))
              .where("job_id", "=", id)
              .where("pos", "<=", pos)
              .as("top"),
          ])
          .where("id", "=", id)
          .executeTakeFirst()
        if (!row) return undefined
        const acked = Number(row.acked_pos)
        if (!row.attached) return acked
        const to = Math.min(pos, Number(row.top ?? 0))
        if (to <= acked) return acked
        await tx.updateTable("jobs").set({ acked_pos: to }).where("id", "=", id).execute()
        // The payloads of held rows deleted here are released once this committed (nothing to look
        // for when this process holds none of the job's: a finished job's were stored at its end).
        if (held?.holds(id))
          freed = await tx
            .selectFrom("job_output")
            .select(["epoch", "seq"])
            .where("job_id", "=", id)
            .where("pos", ">", acked)
            .where("pos", "<=", to)
            .where("held", ">", 0)
            .execute()
        await tx
          .deleteFrom("job_output")
          .where("job_id", "=", id)
          .where("stream", "=", STREAM.stdout)
          .where("pos", "<=", to)
          .execute()
        await trimStderr(tx, id, 0, to, tailBytes)
        out.push({ type: "acked", job: id })
        return to
      }).then((to) => {
        for (const r of freed) held?.drop(id, Number(r.epoch), Number(r.seq))
        return to
      })
    },
    async readOutput(id, after, limit): Promise<StreamRow[]> {
      // A held row is served from memory. One whose payload is not here (a restarted coordinator, or a
      // reader without the coordinator's memory: `admin --local`) is not there yet while the job runs: the
      // page ends before it and the reader waits for the worker to send it again. Once the job ended
      // (its worker lost with it) it never comes: it is skipped.
      // Pages past skipped rows fill the answer: one shorter than `limit` says nothing more is readable
      // now (Store.readOutput), which a follower trusts to stop reading.
      let ended: boolean | undefined
      const out: StreamRow[] = []
      for (let from = after; ; ) {
        const want = limit - out.length
        const rows = await pageAfter("job_output", "pos", id, from, want)
        for (const r of rows) {
          const stream = r.stream === STREAM.stdout ? "stdout" : "stderr"
          if (Number(r.held) > 0) {
            const got = held?.get(id, Number(r.epoch), Number(r.seq))
            if (!got) {
              ended ??= await jobEnded(id)
              if (!ended) return out
              continue
            }
            out.push({ pos: Number(r.pos), stream, ...got })
          } else out.push({ pos: Number(r.pos), stream, data: bytes(r.data) })
        }
        // Lost rows left the answer short: what follows them is read too.
        if (out.length === limit || rows.length < want) return out
        from = Number(rows.at(-1)!.pos)
      }
    },
    async lastOutput(id, stream, limit): Promise<StreamRow[]> {
      const rows = await db
        .selectFrom("job_output")
        .select(["pos", "data"])
        .where("job_id", "=", id)
        .where("stream", "=", STREAM[stream])
        .orderBy("pos", "desc")
        .limit(limit)
        .execute()
      return rows.reverse().map((r) => ({ pos: Number(r.pos), stream, data: bytes(r.data) }))
    },
    async lastOutputBytes(id, stream, limit, maxBytes) {
      const sizes = await db
        .selectFrom("job_output")
        .select(["pos", sql<number>`length(data)`.as("n")])
        .where("job_id", "=", id)
        .where("stream", "=", STREAM[stream])
        .orderBy("pos", "desc")
        .limit(limit)
        .execute()
      // Newest first: whole chunks while they fit, then the last bytes of the one that does not.
      let total = 0
      let kept = 0
      let cut: { pos: number; keep: number } | undefined
      for (const r of sizes) {
        const n = Number(r.n)
        if (total + n > maxBytes) {
          if (maxBytes > total) cut = { pos: Number(r.pos), keep: maxBytes - total }
          break
        }
        total += n
        kept++
      }
      const truncated = kept < sizes.length
      const rows: StreamRow[] = []
      if (cut) {
        const r = await db
          .selectFrom("job_output")
          .select(dialect.tailBytes("data", cut.keep).as("tail"))
          .where("job_id", "=", id)
          .where("pos", "=", cut.pos)
          .executeTakeFirst()
        if (r) rows.push({ pos: cut.pos, stream, data: bytes(r.tail) })
      }
      if (kept) {
        const oldest = Number(sizes[kept - 1].pos)
        const full = await db
          .selectFrom("job_output")
          .select(["pos", "data"])
          .where("job_id", "=", id)
          .where("stream", "=", STREAM[stream])
          .where("pos", ">=", oldest)
          .where("pos", "<=", Number(sizes[0].pos))
          .orderBy("pos")
          .execute()
        for (const r of full) rows.push({ pos: Number(r.pos), stream, data: bytes(r.data) })
      }
      return { rows, truncated }
    },
    async appendInput(id, chunks: InputChunk[]) {
      // The worker and stdin come with the existence check: who is woken needs no read per signal.
      const job = await db
        .selectFrom("jobs")
        .select(["id", "worker_id", "stdin"])
        .where("id", "=", id)
        .executeTakeFirst()
      if (!job) return false
      if (!chunks.length) return true
      const q = db
        .insertInto("job_input")
        .values(chunks.map((c) => ({ job_id: id, seq: c.seq, kind: c.kind, data: c.data })))
      await dialect.insertIgnore(q, ["job_id", "seq"]).execute()
      return told(true, { type: "input", job: id, worker: job.worker_id, stdin: Boolean(job.stdin) })
    },
    async readInput(id, after, limit): Promise<InputRow[]> {
      const rows = await pageAfter("job_input", "seq", id, after, limit)
      return rows.map((r) => ({
        seq: Number(r.seq),
        kind: Number(r.kind),
        data: r.data === null ? new Uint8Array(0) : bytes(r.data),
      }))
    },
    async inputBytes(id) {
      // length() of a blob is read from the record header: the data itself is not loaded.
      const r = await db
        .selectFrom("job_input")
        .select([
          sql<number | null>`sum(case when kind = ${Kind.stdin} then length(data) else 0 end)`.as("bytes"),
          sql<number | null>`max(seq)`.as("last"),
        ])
        .where("job_id", "=", id)
        .executeTakeFirst()
      return { bytes: Number(r?.bytes ?? 0), lastSeq: Number(r?.last ?? 0) }
    },
  }
}

const NOTHING = new Uint8Array(0)

/**
 * Inserts the chunks as rows; with `holding`, each stdout chunk the holder has room for is held in
 * memory (its row stores its size and no bytes) and its sequence added to `taken`.
 */
async function insertChunks(
  tx: Kysely<Database>,
  id: string,
  epoch: number,
  rows: OutputChunk[],
  holding?: { holder: HeldOutput; taken: number[] },
) {
  if (!rows.length) return
  const values = rows.map((c) => {
    if (holding && c.stream === "stdout" && c.data.length && holding.holder.hold(id, epoch, c.seq, c.data, c.digest)) {
      holding.taken.push(c.seq)
      return { job_id: id, epoch, seq: c.seq, stream: STREAM.stdout, data: NOTHING, held: c.data.length }
    }
    // Every row names every column: a multi-row insert fills a column some rows leave out with null.
    return { job_id: id, epoch, seq: c.seq, stream: STREAM[c.stream], data: c.data, held: 0 }
  })
  await tx.insertInto("job_output").values(values).execute()
}

/**
 * Takes back the payloads of the attempt's held rows that this process does not hold (it restarted)
 * from chunks the worker sent again (same sequence, same size), held again or, over the budget, stored.
 * Returns whether any came back and the first sequence still missing.
 */
async function restoreHeld(
  tx: Kysely<Database>,
  holder: HeldOutput,
  id: string,
  epoch: number,
  again: Map<number, OutputChunk>,
): Promise<{ restored: boolean; first?: number }> {
  const rows = await tx
    .selectFrom("job_output")
    .select(["seq", "held"])
    .where("job_id", "=", id)
    .where("epoch", "=", epoch)
    .where("held", ">", 0)
    .orderBy("seq")
    .execute()
  let restored = false
  for (const r of rows) {
    const seq = Number(r.seq)
    if (holder.get(id, epoch, seq)) continue
    const c = again.get(seq)
    if (!c || c.stream !== "stdout" || c.data.length !== Number(r.held)) return { restored, first: seq }
    restored = true
    if (!holder.hold(id, epoch, seq, c.data, c.digest))
      await tx
        .updateTable("job_output")
        .set({ data: c.data, held: 0 })
        .where("job_id", "=", id)
        .where("epoch", "=", epoch)
        .where("seq", "=", seq)
        .execute()
  }
  return { restored }
}

const size = (chunks: OutputChunk[]) => chunks.reduce((n, c) => n + c.data.length, 0)

/**
 * Bytes of a job's output, stored or held (after position `after`); length() of a blob reads only its
 * record header.
 */
async function sumBytes(tx: Kysely<Database>, id: string, o: { after?: number } = {}): Promise<number> {
  let q = tx
    .selectFrom("job_output")
    .select(sql<number | null>`sum(length(data) + held)`.as("n"))
    .where("job_id", "=", id)
  if (o.after !== undefined) q = q.where("pos", ">", o.after)
  return Number((await q.executeTakeFirst())?.n ?? 0)
}

/**
 * Deletes the job's stderr rows in positions (from, to] that are not among its newest `tailBytes` of
 * stderr (whole rows: the tail holds at most that much).
 */
async function trimStderr(tx: Kysely<Database>, id: string, from: number, to: number, tailBytes: number) {
  // One statement: up to the newest row that does not fit in the tail, counting from the newest one
  // back (none: the whole stderr fits, the bound is null and nothing is deleted). The subquery is a
  // derived table, which MySQL also accepts beside a delete from the same table.
  await sql`
    delete from job_output where job_id = ${id} and stream = ${STREAM.stderr} and pos > ${from} and pos <= ${to}
    and pos <= (select pos from (
      select pos, sum(length(data)) over (order by pos desc) as acc
      from job_output where job_id = ${id} and stream = ${STREAM.stderr}
    ) sized where acc > ${tailBytes} order by pos desc limit 1)`.execute(tx)
}

const enc = new TextEncoder()

/** The marker row's text while the job runs, and once its end says how much was dropped. */
export const truncationMarker = (capBytes: number, dropped?: number) =>
  enc.encode(
    dropped === undefined
      ? `dffmpeg: output truncated: the job's stored output reached relay.detached_output_mb (${capBytes} bytes); later stdout is dropped\n`
      : `dffmpeg: output truncated: ${dropped} bytes of stdout dropped past relay.detached_output_mb (${capBytes} bytes)\n`,
  )

/**
 * A detached job's fresh chunks under its cap: whole while the stored output fits (stdout to the cap's
 * exact byte), then a marker row (stderr, sequence 0) where truncation began, stdout dropped and
 * counted, stderr kept as its tail. Returns the job columns to set (`trunc_pos`, `out_dropped`) once
 * anything was dropped or marked.
 */
async function appendCapped(
  tx: Kysely<Database>,
  id: string,
  epoch: number,
  row: { trunc_pos: number | null; out_dropped: number },
  fresh: OutputChunk[],
  bounds: OutputBounds,
): Promise<Record<string, number>> {
  const insert = (rows: OutputChunk[]) => insertChunks(tx, id, epoch, rows)
  let mark = row.trunc_pos === null ? null : Number(row.trunc_pos)
  let dropped = Number(row.out_dropped)
  let stored = mark === null ? await sumBytes(tx, id) : 0
  let i = 0
  if (mark === null) {
    const kept: OutputChunk[] = []
    while (i < fresh.length && stored + fresh[i].data.length <= bounds.detachedBytes) {
      stored += fresh[i].data.length
      kept.push(fresh[i++])
    }
    if (i === fresh.length) {
      await insert(kept)
      return {}
    }
    // Stdout is kept to the exact byte of the cap: a reader gets the output's true beginning.
    const cross = fresh[i]
    const room = bounds.detachedBytes - stored
    if (cross.stream === "stdout" && room > 0) {
      kept.push({ ...cross, data: cross.data.subarray(0, room) })
      dropped += cross.data.length - room
      i++
    }
    await insert(kept)
    await insert([{ seq: 0, stream: "stderr", data: truncationMarker(bounds.detachedBytes) }])
    const m = await tx
      .selectFrom("job_output")
      .select("pos")
      .where("job_id", "=", id)
      .where("epoch", "=", epoch)
      .where("seq", "=", 0)
      .executeTakeFirstOrThrow()
    mark = Number(m.pos)
  }
  const rest = fresh.slice(i)
  for (const c of rest) if (c.stream === "stdout") dropped += c.data.length
  await insert(rest.filter((c) => c.stream === "stderr"))
  await trimStderr(tx, id, mark, Number.MAX_SAFE_INTEGER, bounds.stderrTailBytes)
  return { trunc_pos: mark, out_dropped: dropped }
}
