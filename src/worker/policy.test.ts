import { afterAll, describe, expect, test } from "bun:test"
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createWorkerMapper } from "../shared/paths/mapping.ts"
import { createArgumentPolicy, createKeyFilter, PolicyError, type PolicyConfig, type PolicyDeps } from "./policy.ts"
import { readHead } from "./policy-deps.ts"

const dir = mkdtempSync(join(tmpdir(), "dffmpeg-policy-"))
const media = join(dir, "media")
mkdirSync(join(media, "sub", "deep"), { recursive: true })
writeFileSync(join(dir, "secret.txt"), "CANARY")
writeFileSync(join(media, "in.mkv"), "not really")
symlinkSync(join(dir, "secret.txt"), join(media, "link.txt"))
// A link to the root itself, deeper in: "sub/deep/up/../secret.txt" is the root's parent's file for the kernel.
symlinkSync(media, join(media, "sub", "deep", "up"))
writeFileSync(join(media, "ok.m3u8"), "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nin.mkv\n#EXT-X-ENDLIST\n")
writeFileSync(join(media, "sub", "bad.m3u8"), "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n../../secret.txt\n")
writeFileSync(join(media, "key.m3u8"), '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="/etc/passwd"\n#EXTINF:1,\nin.mkv\n')
writeFileSync(join(media, "nested.m3u8"), "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nsub/bad.m3u8\n")
writeFileSync(join(media, "graph.txt"), "movie=/etc/passwd[out]")
writeFileSync(join(media, "fine.txt"), "scale=320:-1")
writeFileSync(join(media, "nul-graph.txt"), "amovie=link.txt\0x")
writeFileSync(join(media, "m3u-list.txt"), "#EXTM3U\nfile link.txt\n")
// ff_make_absolute_url cuts a base at '?' or '#': entries of "q?x/list.m3u8" are read from the root, not q?x.
mkdirSync(join(media, "q?x"))
writeFileSync(join(media, "q?x", "list.m3u8"), "#EXTM3U\n#EXTINF:1,\nin.mkv\n")
writeFileSync(join(media, "q?x", "list.txt"), "ffconcat version 1.0\nfile in.mkv\n")
// An entry "?x.ts" is the playlist's own name with that query for ff_make_absolute_url: "qentry.m3u8?x.ts".
writeFileSync(join(media, "qentry.m3u8"), "#EXTM3U\n#EXTINF:1,\n?x.ts\n")
symlinkSync(join(dir, "secret.txt"), join(media, "qentry.m3u8?x.ts"))
// hls.c keeps a "file:" entry as it is (an absolute URL): ffmpeg opens it from its working directory.
writeFileSync(join(media, "sub", "deep", "fileurl.m3u8"), "#EXTM3U\n#EXTINF:1,\nfile:../secret.txt\n")
writeFileSync(join(media, "keyinfo.txt"), "https://example/key\n/etc/passwd\n")
writeFileSync(join(media, "drefs.txt"), "ffconcat version 1.0\nfile in.mkv\noption enable_drefs 1\n")
writeFileSync(join(media, "linked.txt"), "ffconcat version 1.0\nfile 'link.txt'\n")
writeFileSync(
  join(media, "fine-list.txt"),
  "ffconcat version 1.0\n# a comment\nfile in.mkv\nfile 'sub/../in.mkv'\nduration 1\n",
)
writeFileSync(join(media, "cmds.txt"), "0.5 drawtext reinit 'textfile=/etc/passwd';\n")
writeFileSync(join(media, "big.m3u8"), "#EXTM3U\n" + "#EXT-X-DISCONTINUITY\n".repeat(450_000))
writeFileSync(join(media, "inner.m3u8"), "#EXTM3U\n#EXTINF:1,\n../secret.txt\n")
writeFileSync(join(media, "hls-list.txt"), "ffconcat version 1.0\nfile inner.m3u8\n")
writeFileSync(join(media, "map.m3u8"), "#EXTM3U\n#EXT-X-MAP:URI=../secret.txt\n#EXTINF:1,\nin.mkv\n")
writeFileSync(
  join(media, "media.m3u8"),
  "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=a, URI=sub/bad.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\nok.m3u8\n",
)
writeFileSync(join(media, "rootonly.txt"), "root:SECRETHASH:0:0:root:/root:/bin/bash\n")
writeFileSync(join(media, "cmds-escaped.txt"), "0.5 drawtext reinit textfile=\\/etc/passwd;\n")
writeFileSync(join(media, "many.m3u8"), "#EXTM3U\n" + "#EXTINF:1,\nin.mkv\n".repeat(20_001))
writeFileSync(join(media, "long-graph.txt"), "null,".repeat(6000) + "null")
writeFileSync(join(media, "long.m3u8"), "#EXTM3U\n" + "#EXTINF:1,\nin.mkv\n".repeat(15_000))
for (const n of ["a", "b", "c"])
  writeFileSync(join(media, `fat-${n}.m3u8`), "#EXTM3U\n" + "#EXT-X-DISCONTINUITY\n".repeat(300_000))
writeFileSync(join(media, "manifest.mpd"), '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">')
// ffmpeg's probes look through the first MiB, up to a NUL, case-insensitively for DASH, any line for SDP.
const MPD = '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011">'
writeFileSync(join(media, "lower.mpd"), `<?xml version="1.0"?>\n${MPD.replace("<MPD", "<mpd")}`)
writeFileSync(join(media, "padded.xml"), `<?xml version="1.0"?>\n<!--${" ".repeat(6000)}-->\n${MPD}`)
writeFileSync(join(media, "nul.xml"), `<?xml version="1.0"?>\n<!--\0${" ".repeat(6000)}-->\n${MPD}`)
writeFileSync(join(media, "late.sdp"), "o=- 0 0 IN IP4 10.0.0.5\nm=video 5004 RTP/AVP 96\nc=IN IP4 10.0.0.5\n")
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const mapper = createWorkerMapper({ paths: { Media: media } })

function check(
  args: string[],
  o: { cwd?: string | null; cfg?: Partial<PolicyConfig>; binary?: string; names?: string[] } = {},
) {
  const deps: PolicyDeps = { read: readHead, attachmentNames: o.names ? async () => o.names! : undefined }
  const policy = createArgumentPolicy({ allowNetwork: false, allowedHosts: [], ...o.cfg }, deps)
  const mapped = mapper.mapArgs(args, ["Media"], o.cwd === undefined ? "$Media" : o.cwd)
  return policy.check({
    binary: o.binary ?? "ffmpeg",
    original: args,
    args: mapped.args,
    cwd: mapped.cwd,
    roots: mapper.roots(["Media"]),
    isPassthrough: mapper.isPassthrough,
  })
}

async function refusal(args: string[], o: Parameters<typeof check>[1] = {}): Promise<string> {
  try {
    await check(args, o)
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError)
    return (err as Error).message
  }
  throw new Error(`not refused: ${args.join(" ")}`)
}

describe("argument policy: refusals", () => {
  const cases: [string, string[], RegExp, Parameters<typeof check>[1]?][] = [
    [
      "relative input escaping a $Var cwd",
      ["-i", "../../../../etc/passwd", "-f", "null", "-"],
      /^argument 2 "\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd": relative path .* leaves the job's directories$/,
    ],
    [
      "relative input escaping the scratch cwd",
      ["-i", "../x", "-f", "null", "-"],
      /argument 2 "\.\.\/x": relative path/,
      { cwd: null },
    ],
    ["file:../x", ["-i", "file:../x", "-f", "null", "-"], /argument 2 "file:\.\.\/x"/],
    ["output ../x.mkv", ["-i", "in.mkv", "../x.mkv"], /argument 3 "\.\.\/x\.mkv": relative path/],
    ["image2 pattern output", ["-i", "in.mkv", "-f", "image2", "../x%d.png"], /argument 5 "\.\.\/x%d\.png"/],
    [
      "concat:/etc/passwd",
      ["-f", "data", "-i", "concat:/etc/passwd", "-map", "0", "-c", "copy", "-f", "data", "-"],
      /^argument 4 "concat:\/etc\/passwd": concat may only read files under a path variable$/,
    ],
    [
      "subfile",
      ["-i", "subfile,,start,0,end,0,,:/etc/passwd", "-f", "null", "-"],
      /subfile may only read files under a path variable/,
    ],
    ["cache:", ["-i", "cache:/etc/passwd", "-f", "null", "-"], /cache may only read files/],
    ["crypto+ nested scheme", ["-i", "crypto+file:/etc/passwd", "-f", "null", "-"], /crypto may only read files/],
    [
      "lavfi movie=",
      ["-f", "lavfi", "-i", "movie=/etc/passwd", "-f", "null", "-"],
      /argument 4 "movie=\/etc\/passwd": filter movie "\/etc\/passwd" is outside/,
    ],
    ["lavfi amovie= escaped", ["-f", "lavfi", "-i", "amovie=\\/etc\\/passwd", "-f", "null", "-"], /filter amovie/],
    [
      "movie inside -vf",
      ["-i", "in.mkv", "-vf", "[in]movie='../../secret.txt'[m];[in][m]overlay", "-f", "null", "-"],
      /argument 4 .*filter movie relative path/,
    ],
    [
      "movie with a network URL",
      ["-i", "in.mkv", "-vf", "movie='http\\://127.0.0.1\\:9/x'", "-f", "null", "-"],
      /network protocol http is not allowed/,
    ],
    [
      "movie with format lavfi nests a graph",
      ["-f", "lavfi", "-i", "movie=filename='amovie=/etc/passwd':f=lavfi", "-f", "null", "-"],
      /filter amovie/,
    ],
    [
      "subtitles filename",
      ["-i", "in.mkv", "-vf", "subtitles=filename=../../secret.txt", "-f", "null", "-"],
      /filter subtitles/,
    ],
    [
      "drawtext fontfile escaping the font folders",
      ["-i", "in.mkv", "-vf", "drawtext=fontfile=/usr/share/fonts/../../../etc/passwd:text=x", "-f", "null", "-"],
      /filter drawtext "\/usr\/share\/fonts\/\.\.\/\.\.\/\.\.\/etc\/passwd" is outside/,
    ],
    [
      "drawtext textfile",
      ["-i", "in.mkv", "-vf", "drawtext=textfile=/etc/passwd", "-f", "null", "-"],
      /filter drawtext/,
    ],
    ["-attach ../x", ["-i", "in.mkv", "-attach", "../x", "out.mkv"], /argument 4 "\.\.\/x": -attach relative path/],
    [
      "-filter_script ../x",
      ["-i", "in.mkv", "-filter_script:v", "../x", "-f", "null", "-"],
      /-filter_script relative path/,
    ],
    [
      "-filter_script content",
      ["-i", "in.mkv", "-filter_script:v", "graph.txt", "-f", "null", "-"],
      /^argument 4 "graph\.txt": "graph\.txt" \(the -filter_script file\) names a file outside the job's directories$/,
    ],
    [
      "HLS segment escaping the root",
      ["-i", "sub/bad.m3u8", "-f", "null", "-"],
      /^argument 2 "sub\/bad\.m3u8": line 4 of "sub\/bad\.m3u8" names a file outside the job's directories$/,
    ],
    ["HLS key URI", ["-i", "key.m3u8", "-f", "null", "-"], /line 2 of "key\.m3u8" names a file outside/],
    [
      "HLS variant playlist",
      ["-i", "nested.m3u8", "-f", "null", "-"],
      /^argument 2 "nested\.m3u8": line 4 of "sub\/bad\.m3u8" names a file outside/,
    ],
    // R1: format names match case-insensitively in ffmpeg (av_match_name).
    [
      "-f LAVFI ladspa by path",
      ["-f", "LAVFI", "-i", "anullsrc,ladspa=file=./evil.so", "-f", "null", "-"],
      /filter ladspa may only load plugins by name/,
    ],
    [
      "-f LAVFI movie=",
      ["-f", "LAVFI", "-i", "movie=/etc/passwd", "-f", "null", "-"],
      /^argument 4 "movie=\/etc\/passwd": filter movie "\/etc\/passwd" is outside/,
    ],
    [
      "movie f=LAVFI nests a graph",
      ["-f", "lavfi", "-i", "movie=filename='amovie=/etc/passwd':f=LAVFI", "-f", "null", "-"],
      /filter amovie/,
    ],
    [
      "movie format_name=V4L2",
      ["-f", "lavfi", "-i", "movie=/dev/video0:format_name=V4L2", "-f", "null", "-"],
      /may not open device v4l2/,
    ],
    [
      "-f TEE slave outside",
      ["-i", "in.mkv", "-f", "TEE", "-map", "0", "[f=matroska]/tmp/x.mkv"],
      /tee output "\/tmp\/x\.mkv" is outside/,
    ],
    [
      "tee slave f=ALSA (escaped)",
      ["-i", "in.mkv", "-f", "tee", "-map", "0", "[f=AL\\SA]default"],
      /tee output format alsa is a device/,
    ],
    [
      "-f HLS on a file without the header",
      ["-f", "HLS", "-i", "rootonly.txt", "-f", "null", "-"],
      /line 1 of "rootonly\.txt" names a protocol that is not allowed/,
    ],
    ["-f AppleHTTP is hls", ["-f", "AppleHTTP", "-i", "rootonly.txt", "-f", "null", "-"], /line 1 of "rootonly\.txt"/],
    ["-f DASH", ["-f", "DASH", "-i", "in.mkv", "-f", "null", "-"], /input format dash lists other files/],
    ["-f SDP", ["-f", "SDP", "-i", "in.mkv", "-f", "null", "-"], /network protocol sdp is not allowed/],
    ["-f V4L2", ["-f", "V4L2", "-i", "video0", "-f", "null", "-"], /format v4l2 is a capture or playback device/],
    ["-f Video4Linux2", ["-f", "Video4Linux2", "-i", "in.mkv", "-f", "null", "-"], /format v4l2 is a capture/],
    [
      "-graph of the lavfi demuxer",
      ["-f", "lavfi", "-graph", "movie=/etc/passwd", "-i", "x", "-f", "null", "-"],
      /filter movie "\/etc\/passwd"/,
    ],
    // R2.1: glob patterns expand braces.
    [
      "glob braces",
      ["-f", "image2", "-pattern_type", "glob", "-i", "{/etc/passwd,}", "-f", "null", "-"],
      /^argument 6 "\{\/etc\/passwd,\}": -pattern_type glob patterns may not contain braces/,
    ],
    [
      "glob braces, numeric type",
      ["-pattern_type", "1", "-i", "a{,/../../x}.png", "-f", "null", "-"],
      /may not contain braces/,
    ],
    [
      "glob_sequence (the default) %{ braces",
      ["-f", "image2", "-i", "%{/etc/passwd,%}", "-f", "null", "-"],
      /-pattern_type glob_sequence patterns may not contain braces/,
    ],
    [
      "glob directory outside",
      ["-pattern_type", "glob", "-i", "../*", "-f", "null", "-"],
      /glob pattern directory relative path "\.\." leaves/,
    ],
    [
      "glob matching a symlink out of the root",
      ["-pattern_type", "glob", "-i", "lin*.txt", "-f", "null", "-"],
      /^argument 4 "lin\*\.txt": glob pattern matches a file outside the job's directories/,
    ],
    [
      "glob .. after a wildcard",
      ["-pattern_type", "glob", "-i", "*/../../x", "-f", "null", "-"],
      /may not contain "\.\." after a wildcard/,
    ],
    // R2.2: values unescaped as av_get_token does.
    [
      "-x264-params with a backslash",
      ["-i", "in.mkv", "-x264-params", "stats=\\/tmp/x.log", "out.mkv"],
      /argument 4 .*"\/tmp\/x\.log" is outside/,
    ],
    [
      "-x264-params quoted",
      ["-i", "in.mkv", "-x264-params", "stats='/tmp/x.log'", "out.mkv"],
      /"\/tmp\/x\.log" is outside/,
    ],
    [
      "sendcmd file with an escaped path",
      ["-i", "in.mkv", "-vf", "sendcmd=f=cmds-escaped.txt,drawtext=text=x", "-f", "null", "-"],
      /line 1 of "cmds-escaped\.txt" names a file outside/,
    ],
    // R2.3, R2.4: what a concat entry is, unquoted HLS attributes.
    [
      "a concat entry that is an HLS playlist escaping",
      ["-f", "concat", "-i", "hls-list.txt", "-f", "null", "-"],
      /^argument 4 "hls-list\.txt": line 3 of "inner\.m3u8" names a file outside/,
    ],
    ["unquoted EXT-X-MAP URI", ["-i", "map.m3u8", "-f", "null", "-"], /line 2 of "map\.m3u8" names a file outside/],
    [
      "unquoted EXT-X-MEDIA URI naming a bad playlist",
      ["-i", "media.m3u8", "-f", "null", "-"],
      /line 4 of "sub\/bad\.m3u8"/,
    ],
    // R4: per-job caps.
    [
      "more than 20000 playlist entries",
      ["-i", "many.m3u8", "-f", "null", "-"],
      /^argument 2 "many\.m3u8": the job's playlists and lists have more than 20000 entries; too many to check$/,
    ],
    [
      "more than 16 MiB of playlists read",
      ["-i", "fat-a.m3u8", "-i", "fat-b.m3u8", "-i", "fat-c.m3u8", "-f", "null", "-"],
      /^argument 6 "fat-c\.m3u8": the job's playlists, lists and scripts add up to more than 16 MiB/,
    ],
    [
      "HLS playlist too large to check whole",
      ["-i", "big.m3u8", "-f", "null", "-"],
      /HLS playlist is larger than 8 MiB; too large to check/,
    ],
    ["DASH manifest", ["-i", "manifest.mpd", "-f", "null", "-"], /DASH or IMF manifest/],
    [
      "an HLS playlist whose path holds '?'",
      ["-i", "q?x/list.m3u8", "-f", "null", "-"],
      /HLS playlist .* holds '\?' or '#'/,
    ],
    [
      "an HLS entry that is only a query (the playlist's own name with it)",
      ["-i", "qentry.m3u8", "-f", "null", "-"],
      /line 3 of "qentry\.m3u8" names a file outside the job's directories/,
    ],
    [
      "a concat list whose path holds '?'",
      ["-f", "concat", "-i", "q?x/list.txt", "-f", "null", "-"],
      /holds '\?' or '#'/,
    ],
    [
      "HLS entry file:../x, which ffmpeg opens from its working directory",
      ["-i", "sub/deep/fileurl.m3u8", "-f", "null", "-"],
      /line 3 of "sub\/deep\/fileurl\.m3u8" names a file outside the job's directories/,
    ],
    // movie opens its file as an input does: a playlist's entries, a list's, a manifest are read by it.
    [
      "movie= of an HLS playlist naming ../../secret",
      ["-f", "lavfi", "-i", "movie=sub/bad.m3u8", "-f", "null", "-"],
      /line 4 of "sub\/bad\.m3u8" names a file outside/,
    ],
    [
      "amovie= of a concat list whose entry is a symlink out",
      ["-i", "in.mkv", "-af", "amovie=linked.txt:f=concat", "-f", "null", "-"],
      /line 2 of "linked\.txt" names a file outside/,
    ],
    ["movie= of a DASH manifest", ["-vf", "movie=manifest.mpd", "-i", "in.mkv", "-f", "null", "-"], /DASH or IMF/],
    ["DASH manifest in lower case", ["-i", "lower.mpd", "-f", "null", "-"], /DASH or IMF manifest/],
    ["DASH manifest after 6000 bytes", ["-i", "padded.xml", "-f", "null", "-"], /DASH or IMF manifest/],
    ["SDP whose c= line is not first", ["-i", "late.sdp", "-f", "null", "-"], /input is an SDP description/],
    [
      "SDP on a worker with allowed_hosts",
      ["-i", "late.sdp", "-f", "null", "-"],
      /sdp URL has no host to check against allowed_hosts/,
      { cfg: { allowNetwork: true, allowedHosts: ["127.0.0.1"] } },
    ],
    ["-formatprobesize over 1 MiB", ["-formatprobesize", "2M", "-i", "in.mkv", "-f", "null", "-"], /-formatprobesize/],
    [
      "-f concat -safe 0",
      ["-f", "concat", "-safe", "0", "-i", "list.txt", "-f", "null", "-"],
      /argument 4 "0": -safe 0 lets the input name files outside/,
    ],
    [
      "option enable_drefs in a concat list",
      ["-i", "drefs.txt", "-f", "null", "-"],
      /^argument 2 "drefs\.txt": line 3 of "drefs\.txt" sets an option that is not allowed$/,
    ],
    [
      "a concat list entry that is a symlink out of the root",
      ["-f", "concat", "-i", "linked.txt", "-f", "null", "-"],
      /line 2 of "linked\.txt" names a file outside/,
    ],
    ["-enable_drefs", ["-enable_drefs", "1", "-i", "in.mkv", "-f", "null", "-"], /-enable_drefs 1/],
    [
      "tee slave absolute path",
      ["-i", "in.mkv", "-f", "tee", "-map", "0", "[f=matroska]/tmp/x.mkv|[f=null]-"],
      /argument 7 .*tee output "\/tmp\/x\.mkv" is outside/,
    ],
    [
      "tee slave relative escape",
      ["-i", "in.mkv", "-f", "tee", "[f=matroska]a.mkv|../b.mkv"],
      /tee output relative path "\.\.\/b\.mkv"/,
    ],
    [
      "-dump_attachment:t:0 ../x",
      ["-dump_attachment:t:0", "../x", "-i", "in.mkv"],
      /argument 2 "\.\.\/x": -dump_attachment may not contain/,
    ],
    [
      "-dump_attachment:t '' with a hostile tag",
      ["-dump_attachment:t", "", "-i", "in.mkv"],
      /argument 2 "": -dump_attachment without a name would write "\.\.\/\.\.\/evil"/,
      { names: ["font.ttf", "../../evil"] },
    ],
    ["-dump_attachment:t '' without ffprobe", ["-dump_attachment:t", "", "-i", "in.mkv"], /no ffprobe/],
    ["symlink inside the root pointing out", ["-i", "link.txt", "-f", "null", "-"], /argument 2 "link\.txt"/],
    [
      "http input",
      ["-i", "http://127.0.0.1:8080/x", "-f", "null", "-"],
      /^argument 2 "http:\/\/127\.0\.0\.1:8080\/x": network protocol http is not allowed on this worker \(allow_network is off\)$/,
    ],
    ["tcp input", ["-i", "tcp://127.0.0.1:9", "-f", "null", "-"], /network protocol tcp/],
    ["network output", ["-i", "in.mkv", "-f", "mpegts", "udp://10.0.0.1:1234"], /network protocol udp/],
    [
      "host not allowed",
      ["-i", "http://10.1.2.3/x", "-f", "null", "-"],
      /host 10\.1\.2\.3 is not in this worker's allowed_hosts/,
      { cfg: { allowNetwork: true, allowedHosts: ["192.168.0.0/16", "cdn.example:443"] } },
    ],
    [
      "port not allowed",
      ["-i", "https://cdn.example:8443/x", "-f", "null", "-"],
      /host cdn\.example:8443/,
      { cfg: { allowNetwork: true, allowedHosts: ["cdn.example:443"] } },
    ],
    ["a protocol outside the list", ["-i", "concatf:list.txt", "-f", "null", "-"], /protocol concatf is not allowed/],
    ["an unknown protocol", ["-i", "weird:x", "-f", "null", "-"], /unknown protocol "weird:"/],
    ["pipe to another fd", ["-i", "pipe:5", "-f", "null", "-"], /pipe may only use/],
    [
      "capture device",
      ["-f", "x11grab", "-i", ":0.0", "-f", "null", "-"],
      /format x11grab is a capture or playback device/,
    ],
    [
      "preset with a path",
      ["-i", "in.mkv", "-vpre", "../../../etc/passwd", "out.mkv"],
      /preset names may not contain a path/,
    ],
    ["-progress outside", ["-progress", "../../p.txt", "-i", "in.mkv", "-f", "null", "-"], /-progress may not contain/],
    [
      "an AVOption value naming a file",
      ["-i", "in.mkv", "-x264-params", "stats=/tmp/x.log", "out.mkv"],
      /argument 4 "stats=\/tmp\/x\.log": "\/tmp\/x\.log" is outside the job's path variables/,
    ],
    [
      "hls_key_info_file naming a key outside",
      ["-i", "in.mkv", "-hls_key_info_file", "keyinfo.txt", "out.m3u8"],
      /line 2 of "keyinfo\.txt" names a file outside/,
    ],
    [
      "master_pl_name with a directory",
      ["-i", "in.mkv", "-master_pl_name", "x/../../m.m3u8", "out.m3u8"],
      /-master_pl_name/,
    ],
    [
      "ladspa plugin by path",
      ["-i", "in.mkv", "-af", "ladspa=file=/tmp/evil.so", "-f", "null", "-"],
      /filter ladspa may only load plugins by name/,
    ],
    [
      "sendcmd commands from a file",
      ["-i", "in.mkv", "-vf", "sendcmd=f=cmds.txt,drawtext=text=x", "-f", "null", "-"],
      /line 1 of "cmds\.txt" names a file outside/,
    ],
    // ffmpeg reads the script up to the NUL and opens link.txt, a symlink out of the root.
    [
      "a filter script naming a file up to a NUL byte",
      ["-filter_complex_script", "nul-graph.txt", "-f", "null", "-"],
      /names a file outside the job's directories/,
    ],
    // -f concat reads it as a list ("#EXTM3U" a comment) and opens link.txt, a symlink out of the root.
    [
      "a -f concat list that starts like an HLS playlist",
      ["-f", "concat", "-i", "m3u-list.txt", "-f", "null", "-"],
      /line 2 of "m3u-list\.txt" names a file outside the job's directories/,
    ],
    // The kernel follows the link before "..": ffmpeg opened the secret above the root.
    [
      "a relative path whose '..' follows a link to the root",
      ["-i", "sub/deep/up/../secret.txt", "-f", "null", "-"],
      /relative path "sub\/deep\/up\/\.\.\/secret\.txt" leaves the job's directories/,
    ],
    [
      "a concat: part whose '..' follows a link to the root",
      ["-i", "concat:sub/deep/up/../secret.txt", "-f", "null", "-"],
      /concat may only read files under a path variable/,
    ],
    ["subfile without options", ["-i", "subfile:/etc/passwd", "-f", "null", "-"], /subfile may only read files/],
    // The character after `subfile,` is the option separator: with `:` and no options, ffmpeg opens "/etc/passwd".
    [
      "subfile with ':' as its option separator",
      ["-i", "subfile,:::/etc/passwd", "-f", "null", "-"],
      /subfile may only read files/,
    ],
    [
      "-hls_enc_key_url writes the key there",
      ["-i", "in.mkv", "-f", "hls", "-hls_enc", "1", "-hls_enc_key_url", "../../../etc/cron.d/x", "out.m3u8"],
      /argument 8 "\.\.\/\.\.\/\.\.\/etc\/cron\.d\/x": -hls_enc_key_url may not contain/,
    ],
    [
      "unix socket outside",
      ["-i", "unix:/run/docker.sock", "-f", "null", "-"],
      /unix socket "\/run\/docker\.sock" is outside/,
      { cfg: { allowNetwork: true } },
    ],
    ["unix socket without network", ["-i", "unix:sock", "-f", "null", "-"], /network protocol unix is not allowed/],
    ["zmq socket", ["-i", "in.mkv", "-vf", "zmq", "-f", "null", "-"], /filter zmq opens a network socket/],
    ["ffprobe -o outside", ["-o", "../../x.json", "in.mkv"], /argument 2 "\.\.\/\.\.\/x\.json"/, { binary: "ffprobe" }],
    // ffprobe reads -noX as -X for its own options: a lavfi graph, and an input whose playlist is checked.
    [
      "ffprobe -nof lavfi",
      ["-nof", "lavfi", "amovie=/etc/passwd"],
      /filter amovie "\/etc\/passwd" is outside the job's path variables/,
      { binary: "ffprobe" },
    ],
    [
      "ffprobe -noi playlist",
      ["-noi", "sub/bad.m3u8"],
      /line 4 of "sub\/bad\.m3u8" names a file outside/,
      { binary: "ffprobe" },
    ],
    [
      "ffprobe concat input",
      ["-show_format", "concat:/etc/passwd"],
      /argument 2 "concat:\/etc\/passwd": concat/,
      { binary: "ffprobe" },
    ],
  ]
  for (const [name, args, re, o] of cases) {
    test(name, async () => {
      expect(await refusal(args, o)).toMatch(re)
    })
  }

  test("a refusal about a file's content never quotes the content (R3)", async () => {
    for (const f of ["hls", "concat"]) {
      const msg = await refusal(["-f", f, "-i", "rootonly.txt", "-f", "null", "-"]).catch((e) => String(e))
      expect(msg).not.toMatch(/SECRETHASH|root:/)
    }
    expect(await refusal(["-f", "hls", "-i", "rootonly.txt", "-f", "null", "-"])).toBe(
      'argument 4 "rootonly.txt": line 1 of "rootonly.txt" names a protocol that is not allowed',
    )
  })

  test("a file outside the job's working directory is named by its base name, never by its worker path", async () => {
    const msg = await refusal(["-i", "../../key.m3u8", "-f", "null", "-"], { cwd: "$Media/sub/deep" })
    expect(msg).toBe('argument 2 "../../key.m3u8": line 2 of "key.m3u8" names a file outside the job\'s directories')
  })

  test("a file the job's user could not read is not read (treated as missing, so not quoted)", async () => {
    const deps: PolicyDeps = { read: (p, max) => readHead(p, max, { uid: 4242, gid: 4242 }) }
    chmodSync(join(media, "rootonly.txt"), 0o600)
    try {
      const policy = createArgumentPolicy({ allowNetwork: false, allowedHosts: [] }, deps)
      const args = ["-f", "hls", "-i", "rootonly.txt", "-f", "null", "-"]
      const mapped = mapper.mapArgs(args, ["Media"], "$Media")
      await policy.check({
        binary: "ffmpeg",
        original: args,
        args: mapped.args,
        cwd: mapped.cwd,
        roots: mapper.roots(["Media"]),
        isPassthrough: mapper.isPassthrough,
      })
    } finally {
      chmodSync(join(media, "rootonly.txt"), 0o644)
    }
  })

  test("long values are truncated in the message", async () => {
    const msg = await refusal(["-i", `../${"a".repeat(200)}`, "-f", "null", "-"])
    expect(msg.length).toBeLessThan(250)
    expect(msg).toContain('..."')
  })
})

describe("argument policy: allowed jobs", () => {
  test("a plain job gets -protocol_whitelist before every input and output", async () => {
    const { args } = await check(["-y", "-i", "in.mkv", "-c", "copy", "sub/out.mkv", "-f", "null", "-"])
    expect(args).toEqual([
      "-y",
      "-protocol_whitelist",
      "file,pipe",
      "-i",
      "in.mkv",
      "-c",
      "copy",
      "-protocol_whitelist",
      "file,pipe",
      "sub/out.mkv",
      "-f",
      "null",
      "-protocol_whitelist",
      "file,pipe",
      "-",
    ])
  })

  test("$Var paths, ../ that stays inside the root, confined wrappers and HLS", async () => {
    const { args } = await check(
      ["-i", "concat:in.mkv|sub/../in.mkv", "-i", "ok.m3u8", "-i", "$Media/in.mkv", "-f", "null", "/dev/null"],
      { cwd: "$Media/sub" },
    )
    expect(args.filter((a, i) => args[i - 1] === "-protocol_whitelist")).toEqual([
      "file,pipe,concat",
      "file,pipe,concat",
      "file,pipe,concat",
      "file,pipe,concat",
    ])
    expect(args).toContain(join(media, "in.mkv"))
  })

  test("filtergraphs with ordinary values and confined files", async () => {
    await check([
      "-i",
      "in.mkv",
      "-vf",
      "scale=iw/2:-1,drawtext=text='a/b':fontsize=20",
      "-filter_script:a",
      "fine.txt",
      "-f",
      "null",
      "-",
    ])
    await check(["-f", "lavfi", "-i", "movie=in.mkv,scale=320:-1", "-f", "null", "-"])
    await check(["-f", "lavfi", "-i", "testsrc=d=1", "-vf", "subtitles=sub.srt", "out.mkv"])
    // System fonts, and expressions whose parentheses precede a division.
    await check([
      "-i",
      "in.mkv",
      "-vf",
      "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:text=x",
      "-f",
      "null",
      "-",
    ])
    await check([
      "-i",
      "in.mkv",
      "-vf",
      "scale=trunc(min(max(iw\\,ih*a)\\,1920)/2)*2:trunc(ow/a/2)*2",
      "-f",
      "null",
      "-",
    ])
  })

  test("-dump_attachment with a plain name or media names that stay in the cwd", async () => {
    await check(["-dump_attachment:t:0", "font.ttf", "-i", "in.mkv"])
    await check(["-f", "concat", "-i", "fine-list.txt", "-f", "null", "-"])
    await check(["-dump_attachment:t", "", "-i", "in.mkv"], { names: ["a.ttf", "b.otf"] })
  })

  test("network with allow_network and an allowed host; the whitelist then lists network protocols", async () => {
    const { args } = await check(["-i", "https://cdn.example/x.m3u8", "-f", "null", "-"], {
      cfg: { allowNetwork: true, allowedHosts: ["cdn.example"] },
    })
    expect(args[1].split(",")).toEqual(expect.arrayContaining(["file", "pipe", "https", "tls", "tcp"]))
    await check(["-i", "rtmp://192.168.1.5:1935/live", "-f", "null", "-"], {
      cfg: { allowNetwork: true, allowedHosts: ["192.168.0.0/16"] },
    })
  })

  test("a job's own -protocol_whitelist is narrowed, never widened", async () => {
    const { args } = await check(["-protocol_whitelist", "file,http,tcp", "-i", "in.mkv", "-f", "null", "-"])
    expect(args.slice(0, 4)).toEqual(["-protocol_whitelist", "file,http,tcp", "-protocol_whitelist", "file"])
  })

  test("glob and sequence patterns inside the job's directories", async () => {
    await check(["-f", "image2", "-pattern_type", "glob", "-i", "sub/*.png", "-f", "null", "-"])
    await check(["-pattern_type", "glob", "-i", "i*.mkv", "-f", "null", "-"])
    await check(["-f", "image2", "-i", "img%03d.png", "-f", "null", "-"])
    await check(["-f", "image2", "-pattern_type", "sequence", "-i", "{a}%d.png", "-f", "null", "-"])
  })

  test("long checks yield to the event loop (heartbeats keep flowing)", async () => {
    /** How many turns the event loop took while `args` were checked. */
    const turnsDuring = async (args: string[]) => {
      let turns = 0
      let done = false
      const spin = () => {
        turns++
        if (!done) setImmediate(spin)
      }
      setImmediate(spin)
      await check(args)
      done = true
      return turns
    }
    // 15000 entries, or 6000 filters, a yield every 256: the loop ran other work during the check.
    expect(await turnsDuring(["-i", "long.m3u8", "-f", "null", "-"])).toBeGreaterThan(20)
    expect(
      await turnsDuring(["-i", "in.mkv", "-filter_script:v", "long-graph.txt", "-f", "null", "-"]),
    ).toBeGreaterThan(10)
  })

  test("what ffmpeg's probe cannot see is not refused: a manifest after a NUL byte", async () => {
    await check(["-i", "nul.xml", "-f", "null", "-"])
    await check(["-formatprobesize", "1048576", "-i", "in.mkv", "-f", "null", "-"])
  })

  test("stdin and stdout pipes", async () => {
    await check(["-i", "pipe:0", "-f", "matroska", "pipe:1"], { cwd: null })
    await check(["-i", "-", "-f", "matroska", "-"], { cwd: null })
  })

  test("'-- --' protects the next output like one '--', and the whitelist goes before both", async () => {
    // ffmpeg wrote ../../evil.mkv here while the check took it for -metadata's text.
    expect(await refusal(["-i", "in.mkv", "-f", "matroska", "--", "--", "-metadata", "../../evil.mkv"])).toMatch(
      /^argument 8 "\.\.\/\.\.\/evil\.mkv": relative path "\.\.\/\.\.\/evil\.mkv" leaves the job's directories$/,
    )
    const { args } = await check(["-i", "in.mkv", "-f", "matroska", "--", "--", "-odd.mkv"])
    expect(args.slice(-5)).toEqual(["-protocol_whitelist", "file,pipe", "--", "--", "-odd.mkv"])
  })

  test("ffprobe gets the whitelist first", async () => {
    const { args } = await check(["-show_streams", "-of", "json", "in.mkv"], { binary: "ffprobe" })
    expect(args).toEqual(["-protocol_whitelist", "file,pipe", "-show_streams", "-of", "json", "in.mkv"])
  })

  test("ffprobe's own -protocol_whitelist is narrowed where it stands (ffprobe's last one wins)", async () => {
    const { args } = await check(["-protocol_whitelist", "file,fd,concatf", "in.mkv"], { binary: "ffprobe" })
    expect(args).toEqual(["-protocol_whitelist", "file", "-protocol_whitelist", "file", "in.mkv"])
  })
})

describe("argument policy: tee slaves are read as the tee muxer reads them", () => {
  test("quotes and escapes are removed before the target is checked; options that do not parse are refused", async () => {
    const tee = (url: string) => ["-i", "in.mkv", "-map", "0", "-f", "tee", url]
    // tee.c unquotes each slave (av_get_token): this is the file /etc/x, not a relative name.
    expect(await refusal(tee("[f=null]ok.mkv|'[f=matroska]/etc/x'"))).toMatch(
      /^argument 7 .*: tee output "\/etc\/x" is outside the job's path variables$/,
    )
    expect(await refusal(tee("[f=matroska]\\/etc/x"))).toMatch(/tee output "\/etc\/x" is outside/)
    expect(await refusal(tee("[f=matroska]a.mkv|[bad]b.mkv"))).toMatch(/a tee output's \[options\] do not parse$/)
    await check(tee("[f=matroska:onfail=ignore]'a b.mkv'|[f=null]-"))
  })

  test("a tee inside a muxer is refused: its '|' slaves would be outputs no check splits", async () => {
    // Each of these ran ffmpeg's tee on "x.mkv|/etc/evil.mkv" (a relative name to the check) and wrote /etc/evil.mkv.
    const tee = (url: string) => ["-i", "in.mkv", "-map", "0", "-f", "tee", url]
    const nested = /names the tee muxer inside another muxer/
    expect(await refusal(tee("[f=tee]x.mkv\\|/etc/evil.mkv"))).toMatch(nested)
    expect(await refusal(tee("[f=fifo:fifo_format=TEE]x.mkv\\|/etc/evil.mkv"))).toMatch(nested)
    expect(await refusal(tee("[use_fifo=1:fifo_options=fifo_format\\\\=tee]x.mkv\\|/etc/evil.mkv"))).toMatch(nested)
    expect(await refusal(["-i", "in.mkv", "-f", "fifo", "-fifo_format", "tee", "x.mkv|/etc/evil.mkv"])).toMatch(nested)
    expect(
      await refusal([
        "-i",
        "in.mkv",
        "-f",
        "fifo",
        "-fifo_format",
        "fifo",
        "-format_opts",
        "fifo_format=t\\ee",
        "x.mkv|/etc/evil.mkv",
      ]),
    ).toMatch(nested)
    await check(tee("[f=fifo:fifo_format=matroska]x.mkv|[f=null]-"))
    // A filter's text is no muxer's name.
    await check(["-i", "in.mkv", "-vf", "drawtext=text=tee", "-f", "null", "-"])
  })

  test("a slave's file options are checked as the same options of an output are", async () => {
    const tee = (url: string) => ["-i", "in.mkv", "-map", "0", "-f", "tee", url]
    // hlsenc reads line 2 of the key info file as the key: /etc/passwd here.
    expect(await refusal(tee("[f=hls:hls_key_info_file=keyinfo.txt]o.m3u8"))).toMatch(
      /line 2 of "keyinfo\.txt" names a file outside the job's directories$/,
    )
    expect(await refusal(tee("[f=hls:master_pl_name=sub/m.m3u8]o.m3u8"))).toMatch(/-master_pl_name must be a file name/)
    await check(tee("[f=hls:hls_segment_filename=seg%d.ts:master_pl_name=m.m3u8]o.m3u8"))
  })

  test("a value escaped deeper than the scan reads is refused", async () => {
    // Five fifos nested through format_opts unescape five times; four levels are read, a fifth is refused.
    const deep = (n: number) => "hls_segment_filename=" + "\\".repeat(2 ** n - 1) + "/etc/x%d.ts"
    expect(await refusal(["-i", "in.mkv", "-f", "fifo", "-format_opts", deep(4), "o.m3u8"])).toMatch(
      /"\/etc\/x%d\.ts" is outside the job's path variables$/,
    )
    expect(await refusal(["-i", "in.mkv", "-f", "fifo", "-format_opts", deep(5), "o.m3u8"])).toMatch(
      /nests escapes more than 4 levels deep; too deep to check$/,
    )
  })
})

describe("argument policy: hardware devices", () => {
  const dri = join(dir, "dev", "dri")
  mkdirSync(join(dri, "by-path"), { recursive: true })
  writeFileSync(join(dri, "renderD128"), "")
  symlinkSync("../renderD128", join(dri, "by-path", "pci-render"))
  symlinkSync(join(dir, "secret.txt"), join(dri, "out"))
  const devices = { cfg: { devices: [dri] } }

  test("a device node inside the worker's devices is allowed, for every device option", async () => {
    const node = join(dri, "renderD128")
    const jobs = [
      ["-init_hw_device", `vaapi=va:${node}`, "-filter_hw_device", "va"],
      ["-init_hw_device", `vaapi=va:${node},driver=iHD`, "-init_hw_device", "qsv=qs@va"],
      ["-init_hw_device", `qsv=hw:hw_any,child_device=${node}`],
      ["-vaapi_device", node],
      ["-qsv_device", join(dri, "by-path", "pci-render")],
      ["-hwaccel", "vaapi", "-hwaccel_device", node],
    ]
    for (const job of jobs) await check([...job, "-i", "in.mkv", "-f", "null", "-"], devices)
  })

  test("index and name forms name no device node and need no devices entry", async () => {
    const jobs = [
      ["-init_hw_device", "cuda=cu:0", "-filter_hw_device", "cu", "-hwaccel", "cuda", "-hwaccel_device", "0"],
      ["-init_hw_device", "qsv=hw"],
      ["-init_hw_device", "vaapi=va:,kernel_driver=i915,driver=iHD"],
      ["-init_hw_device", "opencl=ocl:0.0"],
      ["-vaapi_device", ":0"],
    ]
    for (const job of jobs) await check([...job, "-i", "in.mkv", "-f", "null", "-"])
  })

  test("a device path outside the worker's devices is refused, naming the argument and the key", async () => {
    const cases: [string[], RegExp, Parameters<typeof check>[1]?][] = [
      [
        ["-vaapi_device", "/etc/passwd"],
        /^argument 2 "\/etc\/passwd": -vaapi_device names device "\/etc\/passwd", which is not in this worker's devices; add it \(or its folder\) to devices in the worker's config$/,
      ],
      [["-vaapi_device", "/dev/dri/renderD128"], /argument 2 .*not in this worker's devices/],
      [
        ["-init_hw_device", "vaapi=va:/dev/dri/renderD128"],
        /argument 2 .*-init_hw_device names device "\/dev\/dri\/renderD128"/,
      ],
      [["-init_hw_device", `qsv=hw:,child_device=${join(media, "in.mkv")}`], /-init_hw_device names device/, devices],
      [["-qsv_device", join(dri, "out")], /-qsv_device names device/, devices],
      [["-vaapi_device", join(dri, "..", "x")], /-vaapi_device names device/, devices],
      [["-hwaccel_device", "sub/renderD128"], /-hwaccel_device names device "sub\/renderD128"/, devices],
      [["-vaapi_device", "/dev/null"], /-vaapi_device names device "\/dev\/null"/],
      [["-vaapi_device", "evil.example:0"], /network protocol x11 is not allowed on this worker/],
      // Xlib takes everything before the last ':' as the host: an IPv6 address connects too.
      [
        ["-vaapi_device", "::ffff:10.0.0.5:7"],
        /host ::ffff:10\.0\.0\.5:6007 is not in this worker's allowed_hosts/,
        { cfg: { allowNetwork: true, allowedHosts: ["127.0.0.1"] } },
      ],
      // ffmpeg makes these "qsv=...,child_device=<value>" and "vaapi:<value>": a ',' adds options, the last one wins.
      [
        ["-qsv_device", `${join(dri, "renderD128")},child_device=${join(dir, "secret.txt")}`],
        /-qsv_device names device "\/.*secret\.txt"/,
        devices,
      ],
      [
        ["-vaapi_device", `${join(dri, "renderD128")},kernel_driver=${join(dir, "secret.txt")}`],
        /-vaapi_device names device "\/.*secret\.txt"/,
        devices,
      ],
    ]
    for (const [job, message, o] of cases)
      expect(await refusal([...job, "-i", "in.mkv", "-f", "null", "-"], o)).toMatch(message)
  })
})

describe("createKeyFilter", () => {
  const enc = new TextEncoder()
  const dec = new TextDecoder()
  test("drops filter commands (c/C and their line), across chunks, and keeps other keys", () => {
    const f = createKeyFilter()
    const out = ["+c drawtext -1 rein", "it textfile=/etc/passwd\n", "?C all -1 x\rq"].map((s) =>
      dec.decode(f(enc.encode(s))),
    )
    expect(out).toEqual(["+", "", "?q"])
  })
})
