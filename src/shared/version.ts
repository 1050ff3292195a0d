import pkg from "../../package.json"

declare const DFFMPEG_VERSION: string | undefined

/** Set by scripts/build.ts through `define`; falls back to package.json when run from source. */
export const VERSION: string = typeof DFFMPEG_VERSION === "string" ? DFFMPEG_VERSION : pkg.version
