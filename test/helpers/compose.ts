/**
 * deploy/compose.yaml as the tests read it (with the `yaml` package, merge keys resolved), and the install
 * layout's paths it must agree with.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { parse } from "yaml"
import { ROOT } from "./bin.ts"

export const DEPLOY = join(ROOT, "deploy")
// The install layout (shared by scripts/install.sh, the image and the guides).
export const SHIM_DIR = "/usr/local/lib/dffmpeg"
export const BINARY = "/usr/local/bin/dffmpeg"
export const CONFIG_DIR = "/etc/dffmpeg"

export type Service = {
  image?: string
  build?: { context: string; dockerfile?: string; target?: string; args?: Record<string, string> }
  command?: string[]
  entrypoint?: string[]
  user?: string
  environment?: Record<string, string>
  volumes?: string[]
  ports?: string[]
  security_opt?: string[]
  depends_on?: Record<string, { condition: string }>
  healthcheck?: { disable?: boolean }
}
export const compose = parse(readFileSync(join(DEPLOY, "compose.yaml"), "utf8"), { merge: true }) as {
  services: Record<string, Service>
  volumes: Record<string, unknown>
}
export const svc = (name: string): Service => {
  const s = compose.services[name]
  if (!s) throw new Error(`deploy/compose.yaml has no service ${name}`)
  return s
}

/** `${VAR:-default}` as compose reads it with VAR unset. */
export const defaults = (s: string) => s.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, "$1")

export interface Mount {
  /** A named volume's name, or a host path resolved against deploy/. */
  source: string
  named: boolean
  ro: boolean
}

/** A service's mounts by target. */
export function mounts(s: Service): Map<string, Mount> {
  const out = new Map<string, Mount>()
  for (const v of s.volumes ?? []) {
    const [src, target, mode] = defaults(v).split(":")
    const named = !src.startsWith(".") && !src.startsWith("/")
    out.set(target, { source: named ? src : join(DEPLOY, src), named, ro: mode === "ro" })
  }
  return out
}

/** The `admin …` commands the compose file tells the operator to run (`docker compose run --rm coordinator admin …`). */
export const adminRuns = (): string[][] =>
  [
    ...readFileSync(join(DEPLOY, "compose.yaml"), "utf8").matchAll(
      /docker compose run --rm coordinator (admin [^\n]+)/g,
    ),
  ].map((m) => m[1].trim().split(/\s+/))
