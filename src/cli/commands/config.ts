import { accessSync, constants, existsSync, statSync } from "node:fs"
import { basename, isAbsolute, join, resolve } from "node:path"
import type * as v from "valibot"
import { maskUrl } from "../../shared/config/database-url.ts"
import { Env } from "../../shared/config/env.ts"
import { loadConfig, searchPaths } from "../../shared/config/load.ts"
import { ClientConfig } from "../../shared/config/schema.ts"
import { CoordinatorConfig, WorkerConfig } from "../../shared/config/server-schema.ts"
import { explainYaml } from "../../shared/config/yaml-explain.ts"
import { ConfigError, UsageError } from "../../shared/errors.ts"
import { ExitCode } from "../../shared/exit-codes.ts"
import { defineCommand } from "citty"
import { verb } from "../command.ts"
import { exitStatus } from "../run.ts"

/** `dffmpeg config check`: where each role's config is found, what it resolves to, and what is wrong with it. */

const ROLES = ["coordinator", "worker", "client"] as const
type Role = (typeof ROLES)[number]
const SCHEMAS: Record<Role, v.GenericSchema> = {
  coordinator: CoordinatorConfig,
  worker: WorkerConfig,
  client: ClientConfig,
}

/** One place a config is looked for, in the search order of docs/configuration.md. */
export interface Candidate {
  path: string
  /** `--config`/FILE, the DFFMPEG_<ROLE>_CONFIG variable, or the search. */
  source: "argument" | "environment" | "search"
  exists: boolean
  used: boolean
}

/** A file a key names: shown with whether it can be read, never with what it holds. */
export interface FileRef {
  key: string
  path: string
  readable: boolean
  problem?: string
}

export interface RoleReport {
  role: Role
  /** The file that won, if any (a role with none runs on its defaults, or fails on a required key). */
  file?: string
  candidates: Candidate[]
  valid: boolean
  /** Every resolved value (defaults included) by dotted key, secrets masked. */
  values: Record<string, unknown>
  files: FileRef[]
  warnings: string[]
  errors: string[]
}

/** Files a config names that the role reads at start; a missing `secret_key_file` is created by the coordinator. */
const READ_FILES = new Set(["hmac_key_file", "password_file", "ca_file", "cert_file", "key_file"])
const CREATED_FILES = new Set(["secret_key_file"])
/** Keys whose value is a secret itself (never shown). */
const SECRET = /^(hmac_key|password|secret|token|api_key)$/

/** Where `role`'s config is looked for, in order, and which one wins (docs/configuration.md). */
export function candidates(role: Role, explicit?: string): Candidate[] {
  const named = explicit ?? Env.configPath(role)
  const list: Omit<Candidate, "used">[] = named
    ? [{ path: resolve(named), source: explicit ? "argument" : "environment", exists: existsSync(named) }]
    : searchPaths(role).map((p) => ({ path: resolve(p), source: "search", exists: existsSync(p) }))
  const won = list.findIndex((c) => c.exists)
  return list.map((c, i) => ({ ...c, used: i === won }))
}

/** `value` as dotted keys; secrets masked, URLs without their password. */
export function flatten(value: unknown, prefix = "", out: Record<string, unknown> = {}): Record<string, unknown> {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      const key = prefix + k
      if (SECRET.test(k) && v !== undefined && v !== null) out[key] = "***"
      else flatten(v, `${key}.`, out)
    }
    return out
  }
  if (Array.isArray(value) && value.some((x) => x && typeof x === "object")) {
    value.forEach((x, i) => flatten(x, `${prefix}${i}.`, out))
    return out
  }
  const key = prefix.replace(/\.$/, "")
  out[key] = Array.isArray(value)
    ? value.map((x) => (typeof x === "string" ? maskUrl(x) : x))
    : typeof value === "string"
      ? maskUrl(value)
      : value
  return out
}

/** The files the resolved config names, each checked for reading (relative ones against `base`). */
function fileRefs(values: Record<string, unknown>, base: string): FileRef[] {
  const refs: FileRef[] = []
  for (const [key, value] of Object.entries(values)) {
    const last = key.split(".").pop()!
    if (typeof value !== "string" || !(READ_FILES.has(last) || CREATED_FILES.has(last))) continue
    const path = isAbsolute(value) ? value : join(base, value)
    try {
      if (statSync(path).isDirectory()) throw Object.assign(new Error("EISDIR"), { code: "EISDIR" })
      accessSync(path, constants.R_OK)
      refs.push({ key, path, readable: true })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
      const created = CREATED_FILES.has(last) && code === "ENOENT"
      refs.push({
        key,
        path,
        readable: false,
        problem: created ? "not created yet (the coordinator creates it)" : code,
      })
    }
  }
  return refs
}

/** Checks one role's config as that role's start would read it. */
export async function checkRole(role: Role, explicit?: string): Promise<RoleReport> {
  const list = candidates(role, explicit)
  const report: RoleReport = {
    role,
    file: list.find((c) => c.used)?.path,
    candidates: list,
    valid: false,
    values: {},
    files: [],
    warnings: [],
    errors: [],
  }
  try {
    const loaded = await loadConfig(role, SCHEMAS[role], explicit, {}, explainYaml)
    report.warnings = loaded.warnings
    report.values = flatten(loaded.config)
    report.files = fileRefs(report.values, loaded.base)
    if (role !== "coordinator" && report.values.hmac_key === undefined && report.values.hmac_key_file === undefined)
      report.errors.push("hmac_key or hmac_key_file is required")
    for (const f of report.files)
      if (!f.readable && !CREATED_FILES.has(f.key.split(".").pop()!))
        report.errors.push(`${f.key} ${f.path} cannot be read: ${f.problem}`)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    report.errors.push(err.message, ...err.issues.map((i) => `  ${i}`))
  }
  report.valid = report.errors.length === 0
  return report
}

/** The role a FILE given without --role is for, from its name (`coordinator.yaml`, `dffmpeg-worker.yaml`). */
function roleOfFile(file: string): Role {
  const name = basename(file)
  const hit = ROLES.filter((r) => name.includes(r))
  if (hit.length === 1) return hit[0]!
  throw new UsageError(`cannot tell which role ${file} is for from its name: add --role coordinator|worker|client`)
}

function human(reports: RoleReport[]): string {
  const out: string[] = []
  for (const r of reports) {
    const state = r.valid ? "valid" : "INVALID"
    out.push(`${r.role}: ${r.file ?? "no config file found"} (${state})`)
    out.push("  looked for, in order:")
    for (const c of r.candidates) {
      const how =
        c.source === "environment"
          ? ` (DFFMPEG_${r.role.toUpperCase()}_CONFIG)`
          : c.source === "argument"
            ? " (given)"
            : ""
      out.push(
        `    ${c.used ? "*" : "-"} ${c.path}${how}: ${c.used ? "used" : c.exists ? "exists, not used" : "not found"}`,
      )
    }
    if (r.errors.length) {
      out.push("  errors:")
      for (const e of r.errors) out.push(`    ${e}`)
    }
    if (r.warnings.length) {
      out.push("  warnings:")
      for (const w of r.warnings) out.push(`    ${w}`)
    }
    if (r.files.length) {
      out.push("  files:")
      for (const f of r.files) out.push(`    ${f.key}  ${f.path}  ${f.readable ? "readable" : f.problem}`)
    }
    const keys = Object.keys(r.values)
    if (keys.length) {
      out.push("  values:")
      const width = Math.min(40, Math.max(...keys.map((k) => k.length)))
      for (const k of keys) out.push(`    ${k.padEnd(width)}  ${JSON.stringify(r.values[k]) ?? "-"}`)
    }
    out.push("")
  }
  return out.join("\n")
}

const check = verb(
  "check",
  "Show where each role's config is found (the search order, and which file won), its resolved values with secrets masked, and every warning; exit 0 when valid, 3 when not",
  {
    file: { type: "positional", description: "a config file to check (default: each role's search)", required: false },
    role: { type: "string", description: "coordinator | worker | client (default: every role; from FILE's name)" },
    json: { type: "boolean", description: "print JSON: {valid, roles: [...]}" },
  },
  async (args) => {
    if (args.role !== undefined && !(ROLES as readonly string[]).includes(args.role))
      throw new UsageError(`--role must be one of ${ROLES.join(", ")}`)
    const file = args.file as string | undefined
    const roles: Role[] = args.role ? [args.role as Role] : file ? [roleOfFile(file)] : [...ROLES]
    let reports = await Promise.all(roles.map((r) => checkRole(r, file)))
    // Without --role or FILE, a role configured nowhere on this host is not checked (nothing runs as it).
    if (!args.role && !file) {
      const found = reports.filter((r) => r.file)
      if (!found.length)
        throw new ConfigError(
          `no config file found for any role (looked in ${roles.flatMap((r) => candidates(r).map((c) => c.path)).join(", ")})`,
        )
      reports = found
    }
    const valid = reports.every((r) => r.valid)
    process.stdout.write(args.json ? JSON.stringify({ valid, roles: reports }) + "\n" : human(reports))
    const bad = reports.filter((r) => !r.valid)
    if (bad.length)
      process.stderr.write(
        `dffmpeg: invalid configuration: ${bad.map((r) => `${r.role} (${r.file ?? "no file"})`).join(", ")}\n`,
      )
    return exitStatus(valid ? ExitCode.OK : ExitCode.CONFIG)
  },
)

export default defineCommand({
  meta: { name: "config", description: "Check the config files of this host's roles" },
  subCommands: { check },
})
