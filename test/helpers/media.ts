import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { ROOT } from "./bin.ts"

const CACHE = join(ROOT, "test", ".media")

/**
 * Test media made with the real local ffmpeg (Debian's), cached between runs. Returns the cached file;
 * tests copy it into their cluster's storage.
 */
export async function sample(name: "av.mkv" | "av10s.mkv"): Promise<string> {
  mkdirSync(CACHE, { recursive: true })
  const out = join(CACHE, name)
  if (existsSync(out)) return out
  const seconds = name === "av10s.mkv" ? 10 : 2
  const tmp = `${out}.${process.pid}.tmp.mkv`
  const p = Bun.spawnSync([
    "ffmpeg",
    "-v",
    "error",
    "-y",
    "-f",
    "lavfi",
    "-i",
    `testsrc=duration=${seconds}:size=320x240:rate=25`,
    "-f",
    "lavfi",
    "-i",
    `sine=frequency=440:duration=${seconds}`,
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-c:a",
    "aac",
    "-shortest",
    tmp,
  ])
  if (p.exitCode !== 0) throw new Error(`making ${name} failed: ${p.stderr.toString()}`)
  const { renameSync } = await import("node:fs")
  renameSync(tmp, out)
  return out
}

/** Runs local ffmpeg (`-v error -y` first) to make a test's own media; throws with its stderr on failure. */
export function makeMedia(args: string[]): void {
  const r = Bun.spawnSync(["ffmpeg", "-v", "error", "-y", ...args])
  if (r.exitCode !== 0) throw new Error(r.stderr.toString())
}

/** The font `film()` attaches (Debian's fonts-dejavu-core, installed with ffmpeg's dependencies). */
export const FILM_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
/** The one line of the subtitle stream `film()` holds. */
export const FILM_SUBTITLE = "Hello from dffmpeg"

/**
 * A film as a media server meets them, written to `out`: the 2 s sample's video and audio, a SubRip
 * subtitle stream (stream 2) and a font attachment (stream 3).
 */
export async function film(out: string): Promise<void> {
  const srt = `${out}.srt`
  await Bun.write(srt, `1\n00:00:00,000 --> 00:00:01,500\n${FILM_SUBTITLE}\n`)
  makeMedia(
    ["-i", await sample("av.mkv"), "-i", srt, "-map", "0", "-map", "1", "-c", "copy", "-c:s", "srt"].concat([
      "-attach",
      FILM_FONT,
      "-metadata:s:t",
      "mimetype=application/x-truetype-font",
      out,
    ]),
  )
  const { rmSync } = await import("node:fs")
  rmSync(srt)
}

/** The md5 of some bytes, as tests compare outputs with local ffmpeg's. */
export const md5 = (b: Uint8Array): string => new Bun.CryptoHasher("md5").update(b).digest("hex")

/**
 * Arguments of a real ffmpeg that runs in real time (`-re`) for `seconds`, writing `name` under `media`
 * (a tiny x264 encode, light on CPU): a job that holds a slot for as long as a test needs.
 */
export const slowEncode = (media: string, name: string, seconds = 60, size = "160x120") => [
  "-hide_banner",
  "-nostats",
  "-re",
  "-f",
  "lavfi",
  "-i",
  `testsrc=size=${size}:rate=10:duration=${seconds}`,
  "-c:v",
  "libx264",
  "-preset",
  "ultrafast",
  "-y",
  join(media, name),
]
