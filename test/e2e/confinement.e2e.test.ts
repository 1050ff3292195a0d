import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmodSync, copyFileSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { apiFor, submitRaw } from "../helpers/api.ts"
import { Cluster } from "../helpers/cluster.ts"
import { sample } from "../helpers/media.ts"

/**
 * The injection corpus of issue 9 (F1–F3), submitted with the signed API as a hostile client would
 * (the proxy refuses unmapped absolute paths itself), run three times on one cluster:
 * - with the argument policy (and the sandbox): every case is refused with one line naming the
 *   argument and the rule;
 * - with `argument_policy: false`: the sandbox alone holds, ffmpeg fails to open what it was given;
 * - a control on an unconfined worker (`sandbox: none`, no policy), proving each case does leak,
 *   write or connect when nothing stops it (so the two runs above can fail).
 * Every run checks that the canary's bytes never reach stdout or stderr, that nothing appears in the
 * write folder outside the roots, and that the loopback servers saw no connection.
 */
const CANARY = `canary-${crypto.randomUUID()}`

let c: Cluster
let canary: string
let secretMkv: string
let writes: string
let httpHits = 0
let tcpHits = 0
let http: ReturnType<typeof Bun.serve>
let tcp: import("bun").TCPSocketListener<undefined>

type Proof = "stdout" | "stderr" | "write" | "exit0" | "hit"
interface Case {
  name: string
  args: () => string[]
  /** The refusal's rule, after `argument N "value": `. */
  rule: RegExp
  proof: Proof
  /** Null: the job runs in its scratch directory. */
  cwd?: null
}

const ff = (...a: string[]) => ["-v", "error", "-nostdin", "-y", ...a]
/** ffmpeg's data muxer copies an input's bytes to stdout: the canary's, if it could be opened. */
const dump = (input: string) => ff("-f", "data", "-i", input, "-map", "0", "-c", "copy", "-f", "data", "-")

const cases: Case[] = [
  {
    name: "relative path from a $Var cwd",
    args: () => dump("../canary.txt"),
    rule: /leaves the job's directories/,
    proof: "stdout",
  },
  {
    name: "relative path from the scratch cwd",
    args: () => dump(`${"../".repeat(12)}${canary.slice(1)}`),
    rule: /leaves the job's directories/,
    proof: "stdout",
    cwd: null,
  },
  { name: "file:../x", args: () => dump("file:../canary.txt"), rule: /leaves the job's directories/, proof: "stdout" },
  {
    name: "output ../x.mkv",
    args: () => ff("-i", "av.mkv", "-t", "0.2", "-c", "copy", "../writes/x.mkv"),
    rule: /leaves the job's directories/,
    proof: "write",
  },
  {
    name: "-f image2 ../x%d.png",
    args: () => ff("-i", "av.mkv", "-frames:v", "1", "-f", "image2", "../writes/x%d.png"),
    rule: /leaves the job's directories/,
    proof: "write",
  },
  {
    name: "concat:/abs",
    args: () => dump(`concat:${canary}`),
    rule: /^concat may only read files under a path variable$/,
    proof: "stdout",
  },
  {
    name: "subfile,,start,0,end,0,,:/abs",
    args: () => dump(`subfile,,start,0,end,0,,:${canary}`),
    rule: /^subfile may only read files under a path variable$/,
    proof: "stdout",
  },
  {
    name: "cache:/abs",
    args: () => dump(`cache:${canary}`),
    rule: /^cache may only read files under a path variable$/,
    proof: "stdout",
  },
  {
    name: "lavfi movie=",
    args: () => ff("-f", "lavfi", "-i", `movie=${secretMkv}`, "-frames:v", "1", "-f", "framecrc", "-"),
    rule: /^filter movie ".*" is outside the job's path variables$/,
    proof: "exit0",
  },
  {
    name: "lavfi amovie=",
    args: () => ff("-f", "lavfi", "-i", `amovie=${secretMkv}`, "-t", "0.1", "-f", "framecrc", "-"),
    rule: /^filter amovie /,
    proof: "exit0",
  },
  {
    name: "movie= inside -vf",
    args: () => ff("-i", "av.mkv", "-vf", `movie=${secretMkv}[m];[in][m]overlay`, "-frames:v", "1", "-f", "null", "-"),
    rule: /^filter movie /,
    proof: "exit0",
  },
  {
    name: "-attach ../x",
    args: () =>
      ff(
        "-i",
        "av.mkv",
        "-t",
        "0.1",
        "-c",
        "copy",
        "-attach",
        "../canary.txt",
        "-metadata:s:t",
        "mimetype=text/plain",
        "-f",
        "matroska",
        "-",
      ),
    rule: /^-attach relative path/,
    proof: "stdout",
  },
  {
    name: "-filter_script ../x",
    args: () => ff("-i", "av.mkv", "-filter_script:v", "../canary.txt", "-f", "null", "-"),
    rule: /^-filter_script relative path/,
    proof: "stderr",
  },
  {
    name: "HLS playlist in the root whose segment is ../../secret",
    args: () => ff("-i", "hls/list.m3u8", "-c", "copy", "-f", "mpegts", "-"),
    rule: /^line 5 of "hls\/list\.m3u8" names a file outside the job's directories$/,
    proof: "exit0",
  },
  {
    name: "-f concat -safe 0 with absolute entries",
    args: () => ff("-f", "concat", "-safe", "0", "-i", "list.txt", "-c", "copy", "-f", "matroska", "-"),
    rule: /^-safe 0 lets the input name files outside/,
    proof: "exit0",
  },
  {
    name: "-f tee [f=matroska]/abs",
    args: () =>
      ff("-i", "av.mkv", "-t", "0.2", "-map", "0", "-c", "copy", "-f", "tee", `[f=matroska]${writes}/tee.mkv`),
    rule: /^tee output ".*" is outside the job's path variables$/,
    proof: "write",
  },
  {
    name: "-dump_attachment:t:0 ../x",
    args: () => ff("-dump_attachment:t:0", "../writes/dump.ttf", "-i", "att.mkv"),
    rule: /^-dump_attachment may not contain "\.\."$/,
    proof: "write",
  },
  {
    name: '-dump_attachment:t "" (name from the media)',
    args: () => ff("-dump_attachment:t", "", "-i", "evil-att.mkv"),
    rule: /^-dump_attachment without a name would write "\.\.\/writes\/evil\.ttf"/,
    proof: "write",
  },
  // The red team's bypasses (format names matched case-insensitively, glob braces, what a list entry is, unquoted HLS attributes).
  {
    name: "-f LAVFI movie=",
    args: () => ff("-f", "LAVFI", "-i", `movie=${secretMkv}`, "-frames:v", "1", "-f", "framecrc", "-"),
    rule: /^filter movie ".*" is outside the job's path variables$/,
    proof: "exit0",
  },
  {
    name: "-f TEE [f=matroska]/abs",
    args: () =>
      ff("-i", "av.mkv", "-t", "0.2", "-map", "0", "-c", "copy", "-f", "TEE", `[f=matroska]${writes}/tee2.mkv`),
    rule: /^tee output ".*" is outside the job's path variables$/,
    proof: "write",
  },
  {
    name: "-pattern_type glob {/abs,}",
    args: () =>
      ff(
        "-f",
        "image2",
        "-pattern_type",
        "glob",
        "-video_size",
        "1x1",
        "-pixel_format",
        "gray",
        "-c:v",
        "rawvideo",
        "-i",
        `{${canary},}`,
        "-c",
        "copy",
        "-f",
        "rawvideo",
        "-",
      ),
    rule: /^-pattern_type glob patterns may not contain braces/,
    proof: "stdout",
  },
  {
    name: "ffconcat list whose entry is an HLS playlist naming ../../secret",
    args: () => ff("-f", "concat", "-i", "hls3/list.txt", "-c", "copy", "-f", "mpegts", "-"),
    rule: /^line \d+ of "hls3\/inner\.m3u8" names a file outside the job's directories$/,
    proof: "exit0",
  },
  {
    name: "HLS #EXT-X-MAP:URI=../../secret (unquoted)",
    args: () => ff("-i", "hls3/map.m3u8", "-c", "copy", "-f", "mpegts", "-"),
    rule: /^line 4 of "hls3\/map\.m3u8" names a file outside the job's directories$/,
    proof: "exit0",
  },
  // Review of the argument model (issue 11): positions read differently by the policy than by ffmpeg.
  {
    name: "subfile with ':' as its option separator (subfile,:::/abs)",
    args: () => dump(`subfile,:::${canary}`),
    rule: /^subfile may only read files under a path variable$/,
    proof: "stdout",
  },
  {
    name: "a tee inside a tee slave ([f=tee]a\\|b)",
    args: () =>
      ff("-i", "av.mkv", "-t", "0.2", "-map", "0", "-c", "copy", "-f", "tee", "[f=tee]nest.mkv\\|../writes/nest.mkv"),
    rule: /^tee output format tee names the tee muxer inside another muxer; not allowed$/,
    proof: "write",
  },
  {
    name: "-f fifo -fifo_format tee",
    args: () =>
      ff(
        "-i",
        "av.mkv",
        "-t",
        "0.2",
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "fifo",
        "-fifo_format",
        "tee",
        "f.mkv|../writes/f.mkv",
      ),
    rule: /names the tee muxer inside another muxer; only a -f tee output may$/,
    proof: "write",
  },
  {
    name: "-hls_enc_key_url ../x (hlsenc writes the key there)",
    args: () =>
      ff(
        "-i",
        "av.mkv",
        "-t",
        "0.5",
        "-map",
        "0:v",
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_enc",
        "1",
        "-hls_enc_key",
        "00112233445566778899aabbccddeeff",
        "-hls_enc_key_url",
        "../writes/k.key",
        "hk.m3u8",
      ),
    rule: /^-hls_enc_key_url may not contain "\.\."$/,
    proof: "write",
  },
  {
    name: "-f concat list starting #EXTM3U whose entry is a symlink out",
    args: () => ff("-f", "concat", "-i", "m3u-list.txt", "-c", "copy", "-f", "matroska", "-"),
    rule: /^line 2 of "m3u-list\.txt" names a file outside the job's directories$/,
    proof: "exit0",
  },
  {
    name: "filter script naming a symlink out up to a NUL byte",
    args: () => ff("-filter_complex_script", "nul-script.txt", "-frames:v", "1", "-f", "framecrc", "-"),
    rule: /^"nul-script\.txt" \(the -filter_complex_script file\) names a file outside the job's directories$/,
    proof: "exit0",
  },
  {
    name: "movie= of an HLS playlist whose segment is ../../secret",
    args: () => ff("-f", "lavfi", "-i", "movie=hls/list.m3u8", "-frames:v", "1", "-f", "framecrc", "-"),
    rule: /^line 5 of "hls\/list\.m3u8" names a file outside the job's directories$/,
    proof: "exit0",
  },
  {
    name: "DASH manifest found by ffmpeg's probe after 6000 bytes, segments outside",
    args: () => ff("-i", "padded-mpd.xml", "-c", "copy", "-f", "matroska", "-"),
    rule: /^input is a DASH or IMF manifest that lists other files; not allowed$/,
    proof: "exit0",
  },
  {
    name: "-- -- before an option name: both are outputs for ffmpeg",
    args: () =>
      ff("-i", "av.mkv", "-t", "0.2", "-c", "copy", "-f", "matroska", "--", "--", "-metadata", "../writes/dd.mkv"),
    rule: /^relative path "\.\.\/writes\/dd\.mkv" leaves the job's directories$/,
    proof: "write",
  },
  {
    name: "HLS entry file:../x, which ffmpeg opens from its working directory, not the playlist's",
    args: () => ff("-i", "hls4/a/list.m3u8", "-c", "copy", "-f", "mpegts", "-"),
    rule: /^line 5 of "hls4\/a\/list\.m3u8" names a file outside the job's directories$/,
    proof: "exit0",
  },
  {
    name: "relative path whose '..' follows a link to the root (the kernel follows the link first)",
    args: () => dump("deep/up/../canary.txt"),
    rule: /^relative path "deep\/up\/\.\.\/canary\.txt" leaves the job's directories$/,
    proof: "stdout",
  },
  {
    name: "SSRF: http://127.0.0.1",
    args: () => ff("-i", `http://127.0.0.1:${http.port}/x`, "-f", "null", "-"),
    rule: /^network protocol http is not allowed on this worker \(allow_network is off\)$/,
    proof: "hit",
  },
  {
    name: "SSRF: tcp://127.0.0.1",
    args: () => ff("-f", "data", "-i", `tcp://127.0.0.1:${tcp.port}`, "-map", "0", "-c", "copy", "-f", "data", "-"),
    rule: /^network protocol tcp is not allowed/,
    proof: "hit",
  },
]

beforeAll(async () => {
  c = await Cluster.start({ workers: 1, maxJobs: 2 })
  const av = join(c.storage, "av.mkv")
  copyFileSync(await sample("av.mkv"), av)
  // Outside every mapping, readable and writable by the job's user if nothing stopped it.
  canary = join(c.dir, "canary.txt")
  writeFileSync(canary, CANARY)
  writes = join(c.dir, "writes")
  mkdirSync(writes)
  chmodSync(writes, 0o777)
  const local = (args: string[]) => {
    const p = Bun.spawnSync(["ffmpeg", "-v", "error", "-y", ...args])
    if (p.exitCode !== 0) throw new Error(`ffmpeg ${args.join(" ")}: ${p.stderr.toString()}`)
  }
  secretMkv = join(c.dir, "secret.mkv")
  local(["-i", av, "-c", "copy", "-metadata", `title=${CANARY}`, secretMkv])
  local(["-i", av, "-c", "copy", "-f", "mpegts", join(c.dir, "secret.ts")])
  mkdirSync(join(c.storage, "hls"))
  writeFileSync(
    join(c.storage, "hls", "list.m3u8"),
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.0,\n../../secret.ts\n#EXT-X-ENDLIST\n",
  )
  writeFileSync(join(c.storage, "list.txt"), `file '${secretMkv}'\n`)
  symlinkSync(secretMkv, join(c.storage, "out-link.mkv"))
  mkdirSync(join(c.storage, "deep"))
  symlinkSync("..", join(c.storage, "deep", "up"))
  mkdirSync(join(c.storage, "hls4", "a"), { recursive: true })
  writeFileSync(
    join(c.storage, "hls4", "a", "list.m3u8"),
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.0,\nfile:../secret.ts\n#EXT-X-ENDLIST\n",
  )
  // A DASH stream outside the root, and a manifest in it naming its segments, padded past the 4 KiB first read.
  mkdirSync(join(c.dir, "dash"))
  local(["-i", av, "-map", "0:v", "-c", "copy", "-f", "dash", join(c.dir, "dash", "out.mpd")])
  const mpd = (await Bun.file(join(c.dir, "dash", "out.mpd")).text())
    .replace('initialization="', `initialization="${c.dir}/dash/`)
    .replace('media="', `media="${c.dir}/dash/`)
  const cut = mpd.indexOf("\n") + 1
  writeFileSync(join(c.storage, "padded-mpd.xml"), `${mpd.slice(0, cut)}<!--${" ".repeat(6000)}-->\n${mpd.slice(cut)}`)
  writeFileSync(join(c.storage, "m3u-list.txt"), "#EXTM3U\nfile out-link.mkv\n")
  writeFileSync(join(c.storage, "nul-script.txt"), "movie=out-link.mkv\0x")
  mkdirSync(join(c.storage, "hls3"))
  local(["-i", av, "-t", "1", "-c", "copy", "-f", "mpegts", join(c.storage, "hls3", "seg.ts")])
  writeFileSync(
    join(c.storage, "hls3", "inner.m3u8"),
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.0,\n../../secret.ts\n#EXT-X-ENDLIST\n",
  )
  writeFileSync(join(c.storage, "hls3", "list.txt"), "ffconcat version 1.0\nfile inner.m3u8\n")
  writeFileSync(
    join(c.storage, "hls3", "map.m3u8"),
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=../../secret.ts\n#EXTINF:1.0,\nseg.ts\n#EXT-X-ENDLIST\n",
  )
  // A secret inside the root: one the job's user may read (the refusal must not quote it), one only root may.
  writeFileSync(join(c.storage, "leak.txt"), `root:${CANARY}:0:0\n`)
  chmodSync(join(c.storage, "leak.txt"), 0o644)
  writeFileSync(join(c.storage, "rootonly.txt"), `root:${CANARY}:0:0\n`)
  chmodSync(join(c.storage, "rootonly.txt"), 0o600)
  // Attached from outside the storage, so that a dump in the root is a new file there.
  mkdirSync(join(c.dir, "fonts"))
  const font = join(c.dir, "fonts", "att-font.ttf")
  writeFileSync(font, "FONTDATA")
  local([
    "-i",
    av,
    "-t",
    "0.2",
    "-c",
    "copy",
    "-attach",
    font,
    "-metadata:s:t",
    "mimetype=application/x-truetype-font",
    join(c.storage, "att.mkv"),
  ])
  local([
    "-i",
    av,
    "-t",
    "0.2",
    "-c",
    "copy",
    "-attach",
    font,
    "-metadata:s:t",
    "mimetype=application/x-truetype-font",
    "-metadata:s:t:0",
    "filename=../writes/evil.ttf",
    join(c.storage, "evil-att.mkv"),
  ])
  for (const f of readdirSync(c.dir)) if (/^(canary\.txt|secret\.)/.test(f)) chmodSync(join(c.dir, f), 0o644)
  http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (httpHits++, new Response(CANARY)) })
  tcp = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => {
        tcpHits++
        s.end(CANARY)
      },
      data: () => {},
    },
  })
}, 90_000)

afterAll(async () => {
  http?.stop(true)
  tcp?.stop(true)
  await c?.stop()
})

/**
 * Options for the real proxy with a client that sends /etc/passwd as it is (a passthrough path): the
 * stock client refuses `concat:/etc/passwd` itself, before submission.
 */
const passwdClient = () => ({
  cwd: c.clientMedia,
  timeoutMs: 30_000,
  env: c.clientWith("passwd-client", { passthrough_paths: ["/dev/null", "/etc/passwd"] }),
})

async function runCase(k: Case) {
  httpHits = tcpHits = 0
  const r = await submitRaw(apiFor(c, "client1"), {
    binary: "ffmpeg",
    args: k.args(),
    paths: ["Media"],
    cwd: k.cwd === null ? null : "$Media",
  })
  if (!("outcome" in r) || !r.outcome) throw new Error(`submission refused: ${JSON.stringify(r)}`)
  const written = readdirSync(writes)
  for (const f of written) rmSync(join(writes, f), { recursive: true, force: true })
  return { outcome: r.outcome, stdout: r.stdout, stderr: r.stderr, written, hits: httpHits + tcpHits }
}

/**
 * A filter command typed on the job's stdin (ffmpeg's `c` key): runs through the real proxy with a
 * piped stdin; ffmpeg answers "Command reply" on stderr when it got the command.
 */
async function stdinCommand(): Promise<string> {
  const p = c.spawnProxy("ffmpeg", [
    "-hide_banner",
    "-re",
    "-f",
    "lavfi",
    "-i",
    "sine=d=3",
    "-af",
    "volume",
    "-f",
    "null",
    "-",
  ])
  const sink = p.stdin as import("bun").FileSink
  let err = ""
  let sent = false
  const dec = new TextDecoder()
  const drained = new Response(p.stdout).arrayBuffer()
  for await (const chunk of p.stderr as ReadableStream<Uint8Array>) {
    err += dec.decode(chunk, { stream: true })
    // Once it is transcoding (its filtergraph is up), as a person at a terminal would type it.
    if (!sent && err.includes("size=")) {
      sent = true
      sink.write("call -1 volume 0.1\n")
      await sink.flush()
    }
  }
  await drained
  expect({ code: await p.exited, sent }, err).toEqual({ code: 0, sent: true })
  return err
}

async function restartWorker(extra: Record<string, unknown>) {
  await c.workers[0]?.stop("SIGTERM")
  return c.startWorker("worker1", extra)
}

const nothingLeaked = (r: Awaited<ReturnType<typeof runCase>>) => ({
  stdout: r.stdout.includes(CANARY),
  stderr: r.stderr.includes(CANARY) || (r.outcome.error ?? "").includes(CANARY),
  written: r.written,
  hits: r.hits,
})
const CLEAN = { stdout: false, stderr: false, written: [], hits: 0 }

describe("with the argument policy: every case is refused with one line naming the argument and the rule", () => {
  for (const k of cases) {
    test(k.name, async () => {
      const r = await runCase(k)
      expect(r.outcome.status).toBe("failed")
      const m = /^worker refused the job: argument (\d+) ("(?:[^"\\]|\\.)*"): (.*)$/.exec(r.outcome.error ?? "")
      expect(m, `error: ${r.outcome.error}`).not.toBeNull()
      expect(k.args()[Number(m![1]) - 1].startsWith(JSON.parse(m![2]).replace(/\.\.\.$/, ""))).toBe(true)
      expect(m![3]).toMatch(k.rule)
      expect(nothingLeaked(r)).toEqual(CLEAN)
    })
  }

  test("through the real proxy: ffmpeg -f data -i concat:/etc/passwd ... prints one dffmpeg: line, not the file", async () => {
    const r = await c.run(
      "ffmpeg",
      ["-f", "data", "-i", "concat:/etc/passwd", "-map", "0", "-c", "copy", "-f", "data", "-"],
      passwdClient(),
    )
    expect(r.code).toBe(1)
    expect(r.out).not.toContain("root:")
    expect(r.err.trim().split("\n")).toEqual([
      expect.stringMatching(
        /^dffmpeg: job \w+ failed: worker refused the job: argument 4 "concat:\/etc\/passwd": concat may only read files under a path variable$/,
      ),
    ])
  })
})

describe("with the argument policy: ffprobe's -noX is its option X", () => {
  test("ffprobe -nof lavfi amovie=/abs is refused as the graph it is (ffprobe reads -nof as -f)", async () => {
    const r = await submitRaw(apiFor(c, "client1"), {
      binary: "ffprobe",
      args: ["-v", "error", "-show_streams", "-nof", "lavfi", `amovie=${secretMkv}`],
      paths: ["Media"],
      cwd: "$Media",
    })
    if (!("outcome" in r)) throw new Error(`submission refused: ${JSON.stringify(r)}`)
    expect(r.outcome?.error).toMatch(
      /^worker refused the job: argument 6 "amovie=.*": filter amovie ".*" is outside the job's path variables$/,
    )
    expect([r.stdout, r.stderr].join("")).not.toContain(CANARY)
  })
})

describe("with the argument policy: what a file says is never quoted back, and only what the job could read is read", () => {
  test("a refusal about a file's content names the file and line, not the content", async () => {
    const r = await runCase({
      name: "leak",
      args: () => ff("-f", "HLS", "-i", "leak.txt", "-f", "null", "-"),
      rule: /./,
      proof: "stderr",
    })
    expect(r.outcome.error).toBe(
      'worker refused the job: argument 8 "leak.txt": line 1 of "leak.txt" names a protocol that is not allowed',
    )
    expect(r.stdout + r.stderr).not.toContain(CANARY)
  })

  test("a 0600 root file in the root is not read by the policy (the job's user could not): ffmpeg itself is denied", async () => {
    const r = await runCase({
      name: "rootonly",
      args: () => ff("-f", "hls", "-i", "rootonly.txt", "-f", "null", "-"),
      rule: /./,
      proof: "stderr",
    })
    expect(r.outcome.status).toBe("failed")
    expect(r.outcome.error ?? "").not.toMatch(/refused/)
    expect(r.stderr).toMatch(/Permission denied/)
    expect(nothingLeaked(r)).toEqual(CLEAN)
  })
})

describe("with the argument policy: what stays inside is allowed", () => {
  test('-dump_attachment:t "" writes the media\'s own bare names in the cwd (names read by a sandboxed ffprobe)', async () => {
    const r = await submitRaw(apiFor(c, "client1"), {
      binary: "ffmpeg",
      args: ff("-dump_attachment:t", "", "-i", "att.mkv", "-map", "0:v", "-f", "null", "-"),
      paths: ["Media"],
      cwd: "$Media",
    })
    expect(r.outcome, r.stderr).toMatchObject({ status: "completed", code: 0 })
    expect(await Bun.file(join(c.storage, "att-font.ttf")).text()).toBe("FONTDATA")
  })

  test("an HLS playlist, concat: and a filtergraph source inside the root run", async () => {
    const api = apiFor(c, "client1")
    mkdirSync(join(c.storage, "hls2"))
    const local = Bun.spawnSync([
      "ffmpeg",
      "-v",
      "error",
      "-y",
      "-i",
      join(c.storage, "av.mkv"),
      "-t",
      "1",
      "-c",
      "copy",
      "-f",
      "mpegts",
      join(c.storage, "hls2", "seg.ts"),
    ])
    expect(local.exitCode).toBe(0)
    writeFileSync(
      join(c.storage, "hls2", "ok.m3u8"),
      "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\nseg.ts\n#EXT-X-ENDLIST\n",
    )
    for (const args of [
      ff("-i", "hls2/ok.m3u8", "-f", "null", "-"),
      ff("-f", "mpegts", "-i", "concat:hls2/seg.ts|hls2/seg.ts", "-f", "null", "-"),
      ff("-f", "lavfi", "-i", "movie=av.mkv", "-frames:v", "1", "-f", "null", "-"),
    ]) {
      const r = await submitRaw(api, { binary: "ffmpeg", args, paths: ["Media"], cwd: "$Media" })
      expect({ args, outcome: r.outcome }, r.stderr).toMatchObject({ outcome: { status: "completed", code: 0 } })
    }
  })
})

describe("with the argument policy: filter commands on stdin", () => {
  test("are dropped before ffmpeg reads them as keys (c/C and their line)", async () => {
    expect(await stdinCommand()).not.toContain("Command reply")
  })
})

describe("with argument_policy: false, the sandbox alone holds: nothing read, written or connected", () => {
  beforeAll(async () => {
    const w = await restartWorker({ argument_policy: false })
    expect(w.log()).toMatch(/argument policy is off/)
  }, 30_000)

  for (const k of cases) {
    test(k.name, async () => {
      const r = await runCase(k)
      // ffmpeg itself ran and failed to open what it was given (no refusal by the policy).
      expect(r.outcome.error ?? "").not.toMatch(/refused/)
      const failed =
        r.outcome.code !== 0 ||
        /No such file|Failed to open|Could not open|Invalid data|Connection refused|unreachable|Error opening/i.test(
          r.stderr,
        )
      expect(failed, `exit ${r.outcome.code}, stderr: ${r.stderr}`).toBe(true)
      expect(nothingLeaked(r)).toEqual(CLEAN)
    })
  }

  test("through the real proxy, concat:/etc/passwd fails inside the sandbox", async () => {
    const r = await c.run(
      "ffmpeg",
      ["-v", "error", "-f", "data", "-i", "concat:/etc/passwd", "-map", "0", "-c", "copy", "-f", "data", "-"],
      passwdClient(),
    )
    expect(r.code).not.toBe(0)
    expect(r.out).not.toContain("root:")
  })
})

describe("control: on an unconfined worker (no sandbox, no policy) every case does leak, write or connect", () => {
  beforeAll(async () => {
    await restartWorker({ argument_policy: false, sandbox: "none" })
  }, 30_000)

  for (const k of cases) {
    test(k.name, async () => {
      const r = await runCase(k)
      const shown: Record<Proof, boolean> = {
        stdout: r.stdout.includes(CANARY),
        stderr: r.stderr.includes(CANARY),
        write: r.written.length > 0,
        exit0: r.outcome.code === 0,
        hit: r.hits > 0,
      }
      expect(
        { [k.proof]: shown[k.proof] },
        `exit ${r.outcome.code}, error ${r.outcome.error}, stderr: ${r.stderr}`,
      ).toEqual({ [k.proof]: true })
    })
  }

  test("a filter command on stdin reaches ffmpeg", async () => {
    expect(await stdinCommand()).toContain("Command reply")
  })

  test("through the real proxy, concat:/etc/passwd prints the file", async () => {
    const r = await c.run(
      "ffmpeg",
      ["-v", "error", "-f", "data", "-i", "concat:/etc/passwd", "-map", "0", "-c", "copy", "-f", "data", "-"],
      passwdClient(),
    )
    expect(r.out).toContain("root:")
  })
})
