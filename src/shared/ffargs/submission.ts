import { InvalidError } from "../errors.ts"
import { formatName, parseArgv, toolOf } from "./argv.ts"
import { KNOWN_PROTOCOLS, NETWORK_PROTOCOLS, parseUrl } from "./url.ts"

/** Protocols a worker's argument policy may allow (network ones only with allow_network). */
const ALLOWABLE = new Set([...NETWORK_PROTOCOLS, "file", "pipe", "data", "concat", "subfile", "cache", "crypto"])

/**
 * The coordinator's cheap check at submission: inputs and outputs whose protocol no worker would
 * accept (`concatf:`, `tee:`, `md5:`, `fd:`, `async:`...) are refused with a 400 at once, naming the
 * argument. Everything that depends on a worker (paths, network, hosts) is left to its policy.
 */
export function checkSubmittedArgs(binary: string, args: string[]): void {
  for (const f of parseArgv(toolOf(binary), args).files) {
    if (f.options.some((o) => o.name === "f" && formatName(o.value) === "lavfi")) continue
    const { protocol } = parseUrl(f.url)
    if (!KNOWN_PROTOCOLS.has(protocol) || ALLOWABLE.has(protocol)) continue
    const shown = JSON.stringify(f.url.length > 60 ? f.url.slice(0, 57) + "..." : f.url)
    throw new InvalidError(
      `argument ${f.index + 1} ${shown}: protocol ${protocol} is not allowed on any worker (allowed: file, pipe, data, concat, subfile, cache, crypto, and network protocols where a worker allows them)`,
      { argument: f.index + 1 },
    )
  }
}
