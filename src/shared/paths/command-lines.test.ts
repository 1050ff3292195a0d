import { describe, expect, test } from "bun:test"
import type { Tool } from "../ffargs/argv.ts"
import { thrown as refusal } from "../../../test/helpers/errors.ts"
import { argv, JELLYFIN_VAAPI_HLS } from "../../../test/helpers/command-lines.ts"
import { createClientMapper, createWorkerMapper } from "./mapping.ts"

/**
 * Real media-server command lines (Jellyfin 10.9/10.10 EncodingHelper and DynamicHlsController, Emby's
 * segment muxer, Plex's transcoder, batch jobs) through both mappers: the caller's paths (none of which
 * exist here, so no symlink is resolved) become `$Var` in path positions only, and the worker's own roots
 * after that; text and device values are sent byte for byte.
 */
const client = (cwd = "/") =>
  createClientMapper({
    paths: {
      Media: "/mnt/media",
      Transcodes: "/var/lib/jellyfin/transcodes",
      Data: "/var/lib/jellyfin/data",
      Emby: "/var/lib/emby/transcoding-temp",
    },
    cwd,
  })
const worker = createWorkerMapper({
  paths: { Media: "/srv/media", Transcodes: "/srv/jf/transcodes", Data: "/srv/jf/data", Emby: "/srv/emby" },
})

interface Case {
  name: string
  tool?: Tool
  cwd?: string
  caller: string
  sent: string
  run: string
}

const CASES: Case[] = [
  {
    name: "Jellyfin 10.9 HLS fmp4, VAAPI (init_hw_device with a DRM node, filter_hw_device, file: input)",
    caller: JELLYFIN_VAAPI_HLS,
    sent: `-analyzeduration 200M -probesize 1G -ss 00:00:05.000 -noaccurate_seek
      -init_hw_device vaapi=va:/dev/dri/renderD128 -filter_hw_device va -hwaccel vaapi -hwaccel_output_format vaapi
      -noautorotate -i file:$Media/Movies/Film~(2020)/Film.mkv -map_metadata -1 -map_chapters -1 -threads 0
      -map 0:0 -map 0:1 -map -0:s -codec:v:0 h264_vaapi -rc_mode VBR -b:v 6616000 -sei -a53_cc
      -force_key_frames:0 expr:gte(t,n_forced*3) -vf setparams=color_primaries=bt709,scale_vaapi=format=nv12
      -codec:a:0 aac -ac 2 -ab 384000 -copyts -avoid_negative_ts disabled -max_muxing_queue_size 2048
      -f hls -max_delay 5000000 -hls_time 3 -hls_segment_type fmp4 -hls_fmp4_init_filename 7f1c-1.mp4
      -start_number 0 -hls_segment_filename $Transcodes/7f1c%d.mp4 -hls_playlist_type vod
      -hls_list_size 0 -y $Transcodes/7f1c.m3u8`,
    run: `-analyzeduration 200M -probesize 1G -ss 00:00:05.000 -noaccurate_seek
      -init_hw_device vaapi=va:/dev/dri/renderD128 -filter_hw_device va -hwaccel vaapi -hwaccel_output_format vaapi
      -noautorotate -i file:/srv/media/Movies/Film~(2020)/Film.mkv -map_metadata -1 -map_chapters -1 -threads 0
      -map 0:0 -map 0:1 -map -0:s -codec:v:0 h264_vaapi -rc_mode VBR -b:v 6616000 -sei -a53_cc
      -force_key_frames:0 expr:gte(t,n_forced*3) -vf setparams=color_primaries=bt709,scale_vaapi=format=nv12
      -codec:a:0 aac -ac 2 -ab 384000 -copyts -avoid_negative_ts disabled -max_muxing_queue_size 2048
      -f hls -max_delay 5000000 -hls_time 3 -hls_segment_type fmp4 -hls_fmp4_init_filename 7f1c-1.mp4
      -start_number 0 -hls_segment_filename /srv/jf/transcodes/7f1c%d.mp4 -hls_playlist_type vod
      -hls_list_size 0 -y /srv/jf/transcodes/7f1c.m3u8`,
  },
  {
    name: "Jellyfin 10.10 HLS mpegts with -hls_base_url, -master_pl_name and an absolute fmp4 init file",
    caller: `-i file:/mnt/media/Show/S01E01.mkv -map 0:v:0 -map 0:a:0 -c:v libx264 -c:a aac -f hls -hls_time 6
      -hls_segment_type mpegts -hls_base_url /videos/abc/ -master_pl_name master.m3u8
      -hls_fmp4_init_filename /var/lib/jellyfin/transcodes/init.mp4
      -hls_segment_filename /var/lib/jellyfin/transcodes/abc%d.ts -hls_playlist_type event -hls_list_size 0
      -y /var/lib/jellyfin/transcodes/abc.m3u8`,
    sent: `-i file:$Media/Show/S01E01.mkv -map 0:v:0 -map 0:a:0 -c:v libx264 -c:a aac -f hls -hls_time 6
      -hls_segment_type mpegts -hls_base_url /videos/abc/ -master_pl_name master.m3u8
      -hls_fmp4_init_filename $Transcodes/init.mp4
      -hls_segment_filename $Transcodes/abc%d.ts -hls_playlist_type event -hls_list_size 0
      -y $Transcodes/abc.m3u8`,
    run: `-i file:/srv/media/Show/S01E01.mkv -map 0:v:0 -map 0:a:0 -c:v libx264 -c:a aac -f hls -hls_time 6
      -hls_segment_type mpegts -hls_base_url /videos/abc/ -master_pl_name master.m3u8
      -hls_fmp4_init_filename /srv/jf/transcodes/init.mp4
      -hls_segment_filename /srv/jf/transcodes/abc%d.ts -hls_playlist_type event -hls_list_size 0
      -y /srv/jf/transcodes/abc.m3u8`,
  },
  {
    name: "Jellyfin QSV: a VAAPI device with options, a derived QSV device, -qsv_device",
    caller: `-init_hw_device vaapi=va:/dev/dri/renderD128,driver=iHD -init_hw_device qsv=qs@va -filter_hw_device qs
      -qsv_device /dev/dri/renderD128 -hwaccel qsv -hwaccel_output_format qsv -i file:/mnt/media/a.mkv
      -codec:v:0 h264_qsv -vf scale_qsv=w=1280:h=720 -f mp4 /var/lib/jellyfin/transcodes/a.mp4`,
    sent: `-init_hw_device vaapi=va:/dev/dri/renderD128,driver=iHD -init_hw_device qsv=qs@va -filter_hw_device qs
      -qsv_device /dev/dri/renderD128 -hwaccel qsv -hwaccel_output_format qsv -i file:$Media/a.mkv
      -codec:v:0 h264_qsv -vf scale_qsv=w=1280:h=720 -f mp4 $Transcodes/a.mp4`,
    run: `-init_hw_device vaapi=va:/dev/dri/renderD128,driver=iHD -init_hw_device qsv=qs@va -filter_hw_device qs
      -qsv_device /dev/dri/renderD128 -hwaccel qsv -hwaccel_output_format qsv -i file:/srv/media/a.mkv
      -codec:v:0 h264_qsv -vf scale_qsv=w=1280:h=720 -f mp4 /srv/jf/transcodes/a.mp4`,
  },
  {
    name: "Jellyfin NVENC: a CUDA index, -hwaccel_device, -autorotate with a value",
    caller: `-init_hw_device cuda=cu:0 -filter_hw_device cu -hwaccel cuda -hwaccel_device 0 -hwaccel_output_format cuda
      -autorotate 0 -i file:/mnt/media/a.mkv -codec:v:0 h264_nvenc -vaapi_device /dev/dri/renderD128
      /var/lib/jellyfin/transcodes/a.mkv`,
    sent: `-init_hw_device cuda=cu:0 -filter_hw_device cu -hwaccel cuda -hwaccel_device 0 -hwaccel_output_format cuda
      -autorotate 0 -i file:$Media/a.mkv -codec:v:0 h264_nvenc -vaapi_device /dev/dri/renderD128
      $Transcodes/a.mkv`,
    run: `-init_hw_device cuda=cu:0 -filter_hw_device cu -hwaccel cuda -hwaccel_device 0 -hwaccel_output_format cuda
      -autorotate 0 -i file:/srv/media/a.mkv -codec:v:0 h264_nvenc -vaapi_device /dev/dri/renderD128
      /srv/jf/transcodes/a.mkv`,
  },
  {
    name: "subtitle burn-in: subtitles= with fontsdir inside -vf",
    caller: `-i file:/mnt/media/Show/ep.mkv
      -vf subtitles=f='/mnt/media/Show/ep.mkv':si=0:alpha=1:fontsdir='/var/lib/jellyfin/data/attachments/abc'
      -c:v libx264 /var/lib/jellyfin/transcodes/ep.mkv`,
    sent: `-i file:$Media/Show/ep.mkv
      -vf subtitles=f=$Media/Show/ep.mkv:si=0:alpha=1:fontsdir=$Data/attachments/abc
      -c:v libx264 $Transcodes/ep.mkv`,
    run: `-i file:/srv/media/Show/ep.mkv
      -vf subtitles=f=/srv/media/Show/ep.mkv:si=0:alpha=1:fontsdir=/srv/jf/data/attachments/abc
      -c:v libx264 /srv/jf/transcodes/ep.mkv`,
  },
  {
    name: "subtitle extraction to .srt and .vtt (two outputs)",
    caller: `-i file:/mnt/media/Show/ep.mkv -copyts -map 0:2 -an -vn -c:s subrip
      /var/lib/jellyfin/data/subtitles/a1/abc.srt -map 0:3 -an -vn -c:s webvtt /var/lib/jellyfin/data/subtitles/a1/abc.vtt`,
    sent: `-i file:$Media/Show/ep.mkv -copyts -map 0:2 -an -vn -c:s subrip
      $Data/subtitles/a1/abc.srt -map 0:3 -an -vn -c:s webvtt $Data/subtitles/a1/abc.vtt`,
    run: `-i file:/srv/media/Show/ep.mkv -copyts -map 0:2 -an -vn -c:s subrip
      /srv/jf/data/subtitles/a1/abc.srt -map 0:3 -an -vn -c:s webvtt /srv/jf/data/subtitles/a1/abc.vtt`,
  },
  {
    name: 'font extraction: -dump_attachment:t "" in a mapped working directory',
    cwd: "/var/lib/jellyfin/data/attachments/abc",
    caller: `-dump_attachment:t ~ -y -i file:/mnt/media/Show/ep.mkv -t 0 -f null null`,
    sent: `-dump_attachment:t ~ -y -i file:$Media/Show/ep.mkv -t 0 -f null null`,
    run: `-dump_attachment:t ~ -y -i file:/srv/media/Show/ep.mkv -t 0 -f null null`,
  },
  {
    name: "trickplay: fps/scale graph, image2 output pattern",
    caller: `-loglevel error -threads 0 -skip_frame nokey -i file:/mnt/media/Film.mkv -an -sn -dn
      -vf fps=1/10,scale=320:-2 -threads 1 -c:v mjpeg -qscale:v 4 -f image2 /var/lib/jellyfin/transcodes/tp/%08d.jpg`,
    sent: `-loglevel error -threads 0 -skip_frame nokey -i file:$Media/Film.mkv -an -sn -dn
      -vf fps=1/10,scale=320:-2 -threads 1 -c:v mjpeg -qscale:v 4 -f image2 $Transcodes/tp/%08d.jpg`,
    run: `-loglevel error -threads 0 -skip_frame nokey -i file:/srv/media/Film.mkv -an -sn -dn
      -vf fps=1/10,scale=320:-2 -threads 1 -c:v mjpeg -qscale:v 4 -f image2 /srv/jf/transcodes/tp/%08d.jpg`,
  },
  {
    name: "keyframe extraction (ffprobe -show_entries packet=pts_time,flags)",
    tool: "ffprobe",
    caller: `-loglevel error -skip_frame nokey -select_streams v:0 -show_entries packet=pts_time,flags
      -of csv=print_section=0 file:/mnt/media/Film.mkv`,
    sent: `-loglevel error -skip_frame nokey -select_streams v:0 -show_entries packet=pts_time,flags
      -of csv=print_section=0 file:$Media/Film.mkv`,
    run: `-loglevel error -skip_frame nokey -select_streams v:0 -show_entries packet=pts_time,flags
      -of csv=print_section=0 file:/srv/media/Film.mkv`,
  },
  {
    name: "ffprobe -print_format json -show_format -show_streams",
    tool: "ffprobe",
    caller: `-analyzeduration 200M -probesize 1G -i file:/mnt/media/Film.mkv -threads 0 -v warning
      -print_format json -show_streams -show_chapters -show_format`,
    sent: `-analyzeduration 200M -probesize 1G -i file:$Media/Film.mkv -threads 0 -v warning
      -print_format json -show_streams -show_chapters -show_format`,
    run: `-analyzeduration 200M -probesize 1G -i file:/srv/media/Film.mkv -threads 0 -v warning
      -print_format json -show_streams -show_chapters -show_format`,
  },
  { name: "-version", caller: "-version", sent: "-version", run: "-version" },
  {
    name: "-hwaccels",
    caller: "-hide_banner -hwaccels",
    sent: "-hide_banner -hwaccels",
    run: "-hide_banner -hwaccels",
  },
  {
    name: "-encoders",
    caller: "-hide_banner -encoders",
    sent: "-hide_banner -encoders",
    run: "-hide_banner -encoders",
  },
  {
    name: "Emby: segment muxer with -segment_list and a -segment_list_entry_prefix URL path",
    caller: `-i /mnt/media/Film.mkv -map_metadata -1 -c:v copy -f segment -segment_time 3 -segment_format mpegts
      -segment_list_type m3u8 -segment_start_number 0 -segment_list /var/lib/emby/transcoding-temp/abc.m3u8
      -segment_list_entry_prefix /videos/123/hls1/abc/ -y /var/lib/emby/transcoding-temp/abc_%d.ts`,
    sent: `-i $Media/Film.mkv -map_metadata -1 -c:v copy -f segment -segment_time 3 -segment_format mpegts
      -segment_list_type m3u8 -segment_start_number 0 -segment_list $Emby/abc.m3u8
      -segment_list_entry_prefix /videos/123/hls1/abc/ -y $Emby/abc_%d.ts`,
    run: `-i /srv/media/Film.mkv -map_metadata -1 -c:v copy -f segment -segment_time 3 -segment_format mpegts
      -segment_list_type m3u8 -segment_start_number 0 -segment_list /srv/emby/abc.m3u8
      -segment_list_entry_prefix /videos/123/hls1/abc/ -y /srv/emby/abc_%d.ts`,
  },
  {
    name: "Plex: ssegment to HTTP lists and progress, relative header and segments",
    cwd: "/var/lib/jellyfin/transcodes/plex",
    caller: `-i /mnt/media/Film.mkv -segment_format mpegts -f ssegment -individual_header_trailer 0
      -segment_header_filename header -segment_time 1 -segment_start_number 0
      -segment_list http://127.0.0.1:32400/video/:/transcode/session/abc/manifest?X-Plex-Http-Pipeline=infinite
      -segment_list_type csv -progress http://127.0.0.1:32400/video/:/transcode/session/abc/progress
      -metadata title=/not/a/path media-%05d.ts`,
    sent: `-i $Media/Film.mkv -segment_format mpegts -f ssegment -individual_header_trailer 0
      -segment_header_filename header -segment_time 1 -segment_start_number 0
      -segment_list http://127.0.0.1:32400/video/:/transcode/session/abc/manifest?X-Plex-Http-Pipeline=infinite
      -segment_list_type csv -progress http://127.0.0.1:32400/video/:/transcode/session/abc/progress
      -metadata title=/not/a/path media-%05d.ts`,
    run: `-i /srv/media/Film.mkv -segment_format mpegts -f ssegment -individual_header_trailer 0
      -segment_header_filename header -segment_time 1 -segment_start_number 0
      -segment_list http://127.0.0.1:32400/video/:/transcode/session/abc/manifest?X-Plex-Http-Pipeline=infinite
      -segment_list_type csv -progress http://127.0.0.1:32400/video/:/transcode/session/abc/progress
      -metadata title=/not/a/path media-%05d.ts`,
  },
  {
    name: "batch: concat: and subfile inputs, -progress to a file",
    caller: `-progress /mnt/media/p.txt -i concat:/mnt/media/a.ts|/mnt/media/b.ts|rel.ts
      -i subfile,,start,0,end,1000,,:/mnt/media/dvd/VTS_01_1.VOB -i crypto+file:/mnt/media/enc.ts
      -i cache:/mnt/media/c.ts -map 0 -c copy /mnt/media/ab.ts`,
    sent: `-progress $Media/p.txt -i concat:$Media/a.ts|$Media/b.ts|rel.ts
      -i subfile,,start,0,end,1000,,:$Media/dvd/VTS_01_1.VOB -i crypto+file:$Media/enc.ts
      -i cache:$Media/c.ts -map 0 -c copy $Media/ab.ts`,
    run: `-progress /srv/media/p.txt -i concat:/srv/media/a.ts|/srv/media/b.ts|rel.ts
      -i subfile,,start,0,end,1000,,:/srv/media/dvd/VTS_01_1.VOB -i crypto+file:/srv/media/enc.ts
      -i cache:/srv/media/c.ts -map 0 -c copy /srv/media/ab.ts`,
  },
  {
    name: "batch: tee with file slaves (options and escapes kept), a null slave and a network slave",
    caller: `-i /mnt/media/a.mkv -map 0 -c:v libx264 -f tee
      [f=mpegts:onfail=ignore]/mnt/media/out.ts|[f=matroska]/mnt/media/a\\|b.mkv|[f=null]/dev/null|[f=mpegts]udp://10.0.0.1:1234`,
    sent: `-i $Media/a.mkv -map 0 -c:v libx264 -f tee
      [f=mpegts:onfail=ignore]$Media/out.ts|[f=matroska]$Media/a\\|b.mkv|[f=null]/dev/null|[f=mpegts]udp://10.0.0.1:1234`,
    run: `-i /srv/media/a.mkv -map 0 -c:v libx264 -f tee
      [f=mpegts:onfail=ignore]/srv/media/out.ts|[f=matroska]/srv/media/a\\|b.mkv|[f=null]/dev/null|[f=mpegts]udp://10.0.0.1:1234`,
  },
  {
    name: "unknown options: a value under a mapping is translated, one under none is left for the worker's policy",
    caller: `-i /mnt/media/a.mkv -x264-stats /mnt/media/x.log -some_option /opt/elsewhere/x -f null -`,
    sent: `-i $Media/a.mkv -x264-stats $Media/x.log -some_option /opt/elsewhere/x -f null -`,
    run: `-i /srv/media/a.mkv -x264-stats /srv/media/x.log -some_option /opt/elsewhere/x -f null -`,
  },
]

describe("real command lines through the client and the worker mapper", () => {
  for (const c of CASES) {
    test(c.name, () => {
      const sent = client(c.cwd).mapArgs(argv(c.caller), c.tool)
      expect(sent.args).toEqual(argv(c.sent))
      const run = worker.mapArgs(sent.args, sent.paths, sent.cwd, c.tool)
      expect(run.args).toEqual(argv(c.run))
    })
  }
})

describe("refusals name the argument and where the path is", () => {
  const paths = "(client paths: Data, Emby, Media, Transcodes); add a mapping or use a relative path"
  test.each([
    [
      "-i /mnt/media/a.mkv -hls_segment_filename /opt/x/%d.ts /mnt/media/a.m3u8",
      `path /opt/x/%d.ts in -hls_segment_filename of argument 4 is not under any configured path mapping ${paths}`,
    ],
    [
      "-i concat:/mnt/media/a.ts|/opt/b.ts /mnt/media/ab.ts",
      `path /opt/b.ts in the concat URL of argument 2 is not under any configured path mapping ${paths}`,
    ],
    [
      "-i subfile,,start,0,,:/opt/dvd.vob /mnt/media/x.ts",
      `path /opt/dvd.vob in the subfile URL of argument 2 is not under any configured path mapping ${paths}`,
    ],
    [
      "-i /mnt/media/a.mkv -f tee [f=mpegts]/mnt/media/a.ts|[f=mpegts]/opt/b.ts",
      `path /opt/b.ts in a tee output of argument 5 is not under any configured path mapping ${paths}`,
    ],
    [
      "-i /mnt/media/a.mkv -attach /opt/font.ttf /mnt/media/b.mkv",
      `path /opt/font.ttf in -attach of argument 4 is not under any configured path mapping ${paths}`,
    ],
  ])("%s", (line, message) => {
    const err = refusal(() => client().mapArgs(argv(line)))
    expect(err.message).toBe(message)
  })

  test("the worker resolves $Var inside concat:, subfile and tee, with the same confinement", () => {
    const m = createWorkerMapper({ paths: { Media: "/srv/media" } })
    expect(refusal(() => m.mapArgs(["-i", "concat:$Media/a.ts|$Media/../x"], ["Media"], null)).message).toBe(
      'the concat URL in argument 2 escapes $Media; remove the ".." segments that leave the mapped directory',
    )
    expect(refusal(() => m.mapArgs(["-i", "concat:$Media/a.ts|$Other/b.ts"], ["Media"], null)).message).toContain(
      "path variable $Other in the concat URL in argument 2 is not declared by the job",
    )
    expect(refusal(() => m.mapArgs(["-f", "tee", "[f=null]$Other/x"], ["Media"], null)).message).toContain(
      "path variable $Other in a tee output in argument 3 is not declared by the job",
    )
    // Absolute paths inside URLs and tee slaves are left to the policy, which names the rule.
    expect(m.mapArgs(["-i", "concat:/etc/passwd"], [], null).args).toEqual(["-i", "concat:/etc/passwd"])
  })

  test("a literal leading $ in a text, device or URL position survives the round trip", () => {
    const sent = client().mapArgs([
      "-metadata",
      "$5",
      "-vaapi_device",
      "$dev",
      "-i",
      "concat:$a.ts|b.ts",
      "-f",
      "null",
      "-",
    ])
    expect(sent.args).toEqual([
      "-metadata",
      "$$5",
      "-vaapi_device",
      "$$dev",
      "-i",
      "concat:$$a.ts|b.ts",
      "-f",
      "null",
      "-",
    ])
    expect(worker.mapArgs(sent.args, sent.paths, sent.cwd).args).toEqual([
      "-metadata",
      "$5",
      "-vaapi_device",
      "$dev",
      "-i",
      "concat:$a.ts|b.ts",
      "-f",
      "null",
      "-",
    ])
  })
})
