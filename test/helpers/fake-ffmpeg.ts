import { chmodSync, writeFileSync } from "node:fs"
import { join } from "node:path"

/**
 * A shell wrapper around the real ffmpeg that imitates another build (issue 12's tests): it can report
 * another version, hide encoders from `-encoders`, claim hwaccels and decide which `-init_hw_device` types
 * initialise. Everything else runs the real binary, argument for argument.
 */
export interface WrapperOptions {
  /** The real binary (default /usr/bin/ffmpeg). */
  real?: string
  /** Replaces the version in the first line of `-version` (`6.0.1-Jellyfin`). */
  version?: string
  /** Encoder names left out of `-encoders`, and refused as ffmpeg refuses one it lacks (`Unknown encoder 'X'`, exit 1). */
  hideEncoders?: string[]
  /** `-hwaccels` and `-init_hw_device list` print these instead. */
  hwaccels?: string[]
  /** Device types whose `-init_hw_device TYPE` succeeds (exit 0 without running ffmpeg); others fail. */
  initialises?: string[]
  /** Device types whose initialisation hangs (to test the timeout). */
  hangs?: string[]
  /** Listings that fail (exit 1), e.g. `-encoders`. */
  failing?: string[]
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

export function writeFfmpegWrapper(dir: string, opts: WrapperOptions = {}, name = "ffmpeg"): string {
  const real = opts.real ?? "/usr/bin/ffmpeg"
  const lines = ["#!/bin/sh", `REAL=${q(real)}`]
  if (opts.failing?.length)
    lines.push(
      'for a in "$@"; do',
      ...opts.failing.map((f) => `  [ "$a" = ${q(f)} ] && { echo "failing on purpose" >&2; exit 1; }`),
      "done",
    )
  if (opts.hwaccels) {
    const list = opts.hwaccels.join("\\n")
    lines.push(
      'for a in "$@"; do [ "$a" = -hwaccels ] && { printf "Hardware acceleration methods:\\n' +
        list +
        '\\n\\n"; exit 0; }; done',
      'prev=""; for a in "$@"; do',
      `  if [ "$prev" = -init_hw_device ]; then`,
      `    [ "$a" = list ] && { printf "Supported hardware device types:\\n${list}\\n\\n"; exit 0; }`,
      ...(opts.hangs ?? []).map((t) => `    [ "$a" = ${q(t)} ] && exec sleep 60`),
      ...(opts.initialises ?? []).map((t) => `    [ "$a" = ${q(t)} ] && exit 0`),
      `    echo "Device creation failed: -1." >&2; exit 1`,
      "  fi",
      '  prev="$a"',
      "done",
    )
  }
  if (opts.version)
    lines.push(
      'for a in "$@"; do [ "$a" = -version ] && { "$REAL" "$@" | sed ' +
        q(`1s/ version [^ ]* / version ${opts.version} /`) +
        "; exit 0; }; done",
    )
  if (opts.hideEncoders?.length) {
    lines.push(
      'for a in "$@"; do',
      ...opts.hideEncoders.map((e) => `  [ "$a" = ${q(e)} ] && { echo "Unknown encoder '${e}'" >&2; exit 1; }`),
      "done",
    )
    const pattern = opts.hideEncoders.map((e) => e.replace(/[^A-Za-z0-9_]/g, ".")).join("\\|")
    lines.push(
      'for a in "$@"; do [ "$a" = -encoders ] && { "$REAL" "$@" | grep -v ' +
        q(`^ [A-Z.]\\{6\\} \\(${pattern}\\) `) +
        "; exit 0; }; done",
    )
  }
  lines.push('exec "$REAL" "$@"', "")
  const path = join(dir, name)
  writeFileSync(path, lines.join("\n"))
  chmodSync(path, 0o755)
  return path
}
