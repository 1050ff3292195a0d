import { afterAll, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { checkSpawns, readSpawns, writeWrapper, type Spawn } from "./cluster.ts"

const dir = mkdtempSync(join(tmpdir(), "dffmpeg-fuzz-unit-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

test("the recording wrapper keeps every argument exactly and execs the real binary under the same pid", async () => {
  const spawns = join(dir, "spawns")
  mkdirSync(spawns)
  const out = join(dir, "out.txt")
  // The "real binary" is a script that proves it ran (with the same argv) by writing it out.
  const real = join(dir, "real it's.sh")
  await Bun.write(real, `#!/bin/sh\nprintf '%s\\n' "$$" "$@" > '${out}'\n`)
  Bun.spawnSync(["chmod", "+x", real])
  const wrapper = join(dir, "ffmpeg")
  writeWrapper(wrapper, "ffmpeg", real, spawns)
  const args = ["-i", "$Media/a b.wav", "", "x\ny", 'it\'s "quoted"', "ü😀", "-f", "null", "-", "%d\\0"]
  const cwd = join(dir)
  const p = Bun.spawn([wrapper, ...args], { cwd, stdout: "ignore", stderr: "inherit" })
  expect(await p.exited).toBe(0)
  const [rec] = readSpawns(spawns)
  expect({ pid: rec.pid, ppid: rec.ppid, cwd: rec.cwd, tool: rec.tool, argv: rec.argv }).toEqual({
    pid: p.pid,
    ppid: process.pid,
    cwd,
    tool: "ffmpeg",
    argv: args,
  })
  const ran = (await Bun.file(out).text()).split("\n")
  expect(ran[0]).toBe(String(p.pid))
  expect(ran.slice(1, -1).join("\n")).toBe(args.join("\n"))
})

test("a spawn counts only when the worker started it for a job the coordinator accepted", () => {
  const spawn = (pid: number): Spawn => ({
    pid,
    ppid: 1,
    cwd: "/",
    tool: "ffmpeg",
    argv: ["-version"],
    file: String(pid),
  })
  const started = new Map([
    [10, "JOB_OK"],
    [11, "JOB_HOSTILE"],
    [12, "JOB_REJECTED"],
  ])
  const accepted = new Map([
    ["JOB_OK", { hostile: false }],
    ["JOB_HOSTILE", { hostile: true }],
  ])
  const res = checkSpawns([spawn(10), spawn(11), spawn(12), spawn(13)], started, accepted)
  expect({ fromAccepted: res.fromAccepted, hostile: res.hostile }).toEqual({ fromAccepted: 2, hostile: 1 })
  expect(res.unexplained).toHaveLength(2)
  expect(res.unexplained[0]).toContain("ran job JOB_REJECTED, which the coordinator never accepted")
  expect(res.unexplained[1]).toContain("pid 13 was spawned but the worker logged no job")
})
