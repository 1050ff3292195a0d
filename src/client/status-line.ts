import type { Progress } from "../shared/protocol/schemas.ts"
import { clock } from "../shared/time.ts"

/** What the coordinator says about a followed job (a `status` event of a `?progress=1` stream). */
export interface JobStatusEvent {
  status: string
  workerId: string | null
  progress: Progress | null
}

/**
 * One line on a terminal's stderr saying where a followed job is (`queued`, `running on w1 · 42% ·
 * 1.8× · ETA 0:31`). It only ever draws while the job's own output is quiet, and erases itself before
 * any of the job's bytes are written, so it never mixes with ffmpeg's output. Only for `dffmpeg client`
 * on a TTY; the ffmpeg/ffprobe proxy never shows it.
 */
export interface StatusLine {
  update(ev: JobStatusEvent): void
  /** Call before writing job output to the terminal. */
  clear(): void
  stop(): void
}

/** Quiet time before the line is drawn, so it does not flicker between ffmpeg's own status lines. */
const QUIET_MS = 1000

export function formatStatus(ev: JobStatusEvent): string {
  const parts = [ev.workerId && ev.status !== "queued" ? `${ev.status} on ${ev.workerId}` : ev.status]
  const p = ev.progress
  if (p && ev.status === "running") {
    if (p.percent !== null) parts.push(`${p.percent.toFixed(p.percent < 10 ? 1 : 0)}%`)
    else parts.push(clock(p.timeMs))
    if (p.speed !== null) parts.push(`${p.speed.toFixed(p.speed < 10 ? 2 : 1)}×`)
    if (p.etaMs !== null) parts.push(`ETA ${clock(p.etaMs)}`)
  }
  return `dffmpeg: ${parts.join(" · ")}`
}

export function createStatusLine(
  write: (s: string) => void,
  now: () => number = Date.now,
  columns: () => number = () => process.stderr.columns ?? 80,
): StatusLine {
  let text = ""
  let drawn = false
  let lastOutput = 0
  let shown = ""
  const draw = () => {
    if (!text || (drawn && shown === text) || now() - lastOutput < QUIET_MS) return
    // Never wider than the terminal: a wrapped line could not be erased with one \r. A pseudo-terminal
    // that reports no size (0 columns) gets the classic 80.
    const width = (columns() || 80) - 1
    write(`\r\x1b[K${text.length > width ? text.slice(0, width - 1) + "…" : text}`)
    drawn = true
    shown = text
  }
  const timer = setInterval(draw, 250)
  timer.unref?.()
  return {
    update(ev) {
      text = formatStatus(ev)
      draw()
    },
    clear() {
      lastOutput = now()
      if (!drawn) return
      write("\r\x1b[K")
      drawn = false
    },
    stop() {
      clearInterval(timer)
      if (drawn) write("\r\x1b[K")
      drawn = false
    },
  }
}
