import { errorExit } from "../shared/error-exit.ts"
import { UnavailableError } from "../shared/errors.ts"
import { pause } from "../shared/pause.ts"
import { stdoutLost } from "../shared/stdio.ts"
import { untilInterrupted } from "./interrupt.ts"
import { time } from "./table.ts"

/** One state of a live view: `text` for people, `data` for --json. */
export interface Frame {
  title: string
  text: string
  data: unknown
  /** What must differ for the state to count as changed (default: `data`); leaves out heartbeat-like fields. */
  key?: string
}

export interface WatchOptions {
  intervalMs: number
  /** Redraw in place (a terminal) rather than print each change below the last. */
  tty: boolean
  json: boolean
  /** Reads the current state; an UnavailableError is shown and retried, any other error ends the view. */
  read: (signal: AbortSignal) => Promise<Frame>
  out?: Pick<NodeJS.WriteStream, "write" | "columns">
  /** Ends the view like Ctrl-C does (callers other than a person at a terminal). */
  signal?: AbortSignal
}

const ESC = "\x1b["
const ALT_SCREEN = `${ESC}?1049h`
const MAIN_SCREEN = `${ESC}?1049l`
const HIDE_CURSOR = `${ESC}?25l`
const SHOW_CURSOR = `${ESC}?25h`
const HOME = `${ESC}H`
const CLEAR_LINE = `${ESC}K`
const CLEAR_BELOW = `${ESC}J`

/**
 * A live view until Ctrl-C (exit 0). On a terminal it redraws in place on the alternate screen, line by
 * line (no full clear, so no flicker), and gives the terminal back as it was on exit. Elsewhere (a
 * pipe, a log file) it prints a timestamped copy only when the data changed, and with --json one
 * JSON object per change.
 */
export async function watch(o: WatchOptions): Promise<void> {
  const out = o.out ?? process.stdout
  const inPlace = o.tty && !o.json
  await untilInterrupted(async (interrupted) => {
    // A reader that went away (`| head`) ends the view too; main.ts then exits non-zero.
    const signal = AbortSignal.any([interrupted, ...(o.signal ? [o.signal] : []), ...(o.out ? [] : [stdoutLost])])
    if (inPlace) out.write(ALT_SCREEN + HIDE_CURSOR)
    try {
      let last: string | undefined
      while (!signal.aborted) {
        const frame = await readOrExplain(o.read, signal)
        if (!frame) break
        const key = frame.key ?? JSON.stringify(frame.data)
        if (inPlace)
          out.write(
            redraw(
              `${frame.title} · ${time(Date.now())} · every ${o.intervalMs / 1000}s, Ctrl-C to quit\n\n${frame.text}`,
              out.columns,
            ),
          )
        else if (key !== last)
          out.write(
            o.json
              ? JSON.stringify({ at: Date.now(), ...(frame.data as object) }) + "\n"
              : `--- ${time(Date.now())} ${frame.title}\n${frame.text}\n`,
          )
        last = key
        await pause(o.intervalMs, signal)
      }
    } finally {
      if (inPlace) out.write(SHOW_CURSOR + MAIN_SCREEN)
    }
  })
}

/** The frame, or one explaining that the coordinator is unreachable (the view keeps retrying); undefined once interrupted. */
async function readOrExplain(read: WatchOptions["read"], signal: AbortSignal): Promise<Frame | undefined> {
  try {
    return await read(signal)
  } catch (err) {
    if (signal.aborted) return undefined
    if (!(err instanceof UnavailableError)) throw err
    return {
      title: "unavailable",
      // The same line the command would end with, escaped the same way.
      text: `${errorExit(err, "command").line} (retrying)\n`,
      data: { error: { code: err.code, message: err.message } },
    }
  }
}

/** Cursor home, every line cut to the terminal's width and cleared to its end, then the rest of the screen cleared. */
function redraw(text: string, columns: number | undefined): string {
  const lines = text.replace(/\n$/, "").split("\n")
  const cut = (l: string) => (columns && l.length > columns ? l.slice(0, columns - 1) + "…" : l)
  return HOME + lines.map((l) => cut(l) + CLEAR_LINE).join("\n") + "\n" + CLEAR_BELOW
}
