import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { chooseMode } from "./_backend.ts"

const dir = mkdtempSync(join(tmpdir(), "dffmpeg-mode-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, text: string) => {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}
const admin = file("admin.yaml", "client_id: ops\nhmac_key_file: ops.key\n")
const coordinator = file("coordinator.yaml", "port: 8000\ndatabase: { path: ./db }\n")
const broken = file("broken.yaml", "port: [\n")
const none = () => undefined
const found = () => admin

describe("chooseMode", () => {
  test.each([
    ["--local alone: the coordinator config search", { local: true }, found, { kind: "local" }],
    [
      "--local with a coordinator config",
      { local: true, config: coordinator },
      found,
      { kind: "local", file: coordinator },
    ],
    ["--config with client_id: remote as that identity", { config: admin }, none, { kind: "remote", file: admin }],
    [
      "--config without client_id: the coordinator's own database",
      { config: coordinator },
      found,
      { kind: "local", file: coordinator },
    ],
    [
      "--config that is not valid YAML: local, whose loader explains the error",
      { config: broken },
      none,
      { kind: "local", file: broken },
    ],
    ["nothing given, an admin config found: remote", {}, found, { kind: "remote", file: admin }],
    ["nothing given, no admin config: local with the coordinator config search", {}, none, { kind: "local" }],
  ] as const)("%s", (_, opts, find, mode) => {
    expect(chooseMode(opts, find)).toEqual(mode)
  })

  test("--local with an identity config is a usage error", () => {
    expect(() => chooseMode({ local: true, config: admin }, none)).toThrow(
      /--local works on the coordinator's own database, but .*admin\.yaml is an identity config/,
    )
  })

  test("a --config that does not exist is a config error", () => {
    expect(() => chooseMode({ config: join(dir, "missing.yaml") }, none)).toThrow(
      /config file .*missing\.yaml does not exist/,
    )
  })
})
