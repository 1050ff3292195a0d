import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto"

/**
 * Identity keys at rest: AES-256-GCM under the coordinator secret, the identity's name as additional
 * authenticated data (a row copied to another name does not open), a fresh 96-bit IV per sealing.
 * Stored text: `v1:<secret id>:<iv base64>:<ciphertext+tag base64>`. A key in clear (base64, which has
 * no ':') is told apart from a sealed one by its form alone, so no schema change marks the format.
 * The secret id (8 characters of a hash of the secret) names which secret sealed a row: it tells a
 * wrong secret file from a tampered row, and lets a rotation in another process be followed.
 */
export interface Secret {
  /** 8 base64url characters derived from the bytes; safe to log. */
  id: string
  bytes: Uint8Array
}

export const SECRET_BYTES = 32
const VERSION = "v1"
const SEALED = /^v1:([A-Za-z0-9_-]{8}):([A-Za-z0-9+/]{16}):([A-Za-z0-9+/]+={0,2})$/

export function toSecret(bytes: Uint8Array): Secret {
  if (bytes.length !== SECRET_BYTES) throw new Error(`a secret is ${SECRET_BYTES} bytes, not ${bytes.length}`)
  const id = createHash("sha256").update("dffmpeg secret id\0").update(bytes).digest("base64url").slice(0, 8)
  return { id, bytes }
}

export const newSecret = (): Secret => toSecret(new Uint8Array(randomBytes(SECRET_BYTES)))

/** Why a stored key cannot be used. */
export type KeyProblem = "clear" | "format" | "secret" | "tampered"

export class KeyError extends Error {
  constructor(
    readonly problem: KeyProblem,
    message: string,
    /** The secret id the row names (problem "secret"). */
    readonly secretId?: string,
  ) {
    super(message)
    this.name = "KeyError"
  }
}

export const isSealed = (stored: string) => stored.startsWith(`${VERSION}:`)

/** The id of the secret that sealed `stored`, undefined for a key in clear or an unknown format. */
export function sealedWith(stored: string): string | undefined {
  return SEALED.exec(stored)?.[1]
}

export function seal(secret: Secret, name: string, key: string): string {
  const iv = randomBytes(12)
  const c = createCipheriv("aes-256-gcm", secret.bytes, iv)
  c.setAAD(Buffer.from(name, "utf8"))
  const ct = Buffer.concat([c.update(key, "utf8"), c.final(), c.getAuthTag()])
  return `${VERSION}:${secret.id}:${iv.toString("base64")}:${ct.toString("base64")}`
}

/** The key `stored` holds for `name`; KeyError when it is in clear, malformed, under another secret or altered. */
export function open(find: (id: string) => Secret | undefined, name: string, stored: string): string {
  if (!isSealed(stored))
    throw new KeyError("clear", `the key of ${name} is stored in clear (the coordinator encrypts keys at its start)`)
  const m = SEALED.exec(stored)
  if (!m) throw new KeyError("format", `the stored key of ${name} is not in the v1 format`)
  const [, id, iv, body] = m
  const secret = find(id)
  if (!secret)
    throw new KeyError(
      "secret",
      `the key of ${name} was encrypted under secret ${id}, which is not the coordinator's secret`,
      id,
    )
  const raw = Buffer.from(body, "base64")
  if (raw.length < 17) throw new KeyError("format", `the stored key of ${name} is too short`)
  try {
    const d = createDecipheriv("aes-256-gcm", secret.bytes, Buffer.from(iv, "base64"))
    d.setAAD(Buffer.from(name, "utf8"))
    d.setAuthTag(raw.subarray(raw.length - 16))
    return Buffer.concat([d.update(raw.subarray(0, raw.length - 16)), d.final()]).toString("utf8")
  } catch {
    throw new KeyError(
      "tampered",
      `the stored key of ${name} does not authenticate under secret ${id}: the row was altered or copied from another identity`,
    )
  }
}

/**
 * The secrets a store seals and opens keys with: the current one, and any other it can find by id
 * (a rotation in progress in another process). `where` names the source for messages.
 */
export interface Keyring {
  readonly where: string
  current(): Secret
  /** The secret with this id, looking again at its source when it is not known yet. */
  find(id: string): Secret | undefined
  /** Makes `s` the current secret (a completed rotation), where it is kept for good. */
  promote?(s: Secret): void
}

/** A keyring that lives only in memory (`:memory:` databases, tests). */
export function memoryKeyring(...secrets: Secret[]): Keyring {
  const all = secrets.length ? [...secrets] : [newSecret()]
  return {
    where: "memory",
    current: () => all[0],
    find: (id) => all.find((s) => s.id === id),
    promote: (s) => void all.unshift(s),
  }
}
