import { describe, expect, test } from "bun:test"
import { NO_NEEDS, type JobNeeds, type Lane } from "../protocol/capabilities.ts"
import { argv, JELLYFIN_VAAPI_HLS } from "../../../test/helpers/command-lines.ts"
import { deviceType, jobLane, jobNeeds } from "./needs.ts"

interface Case {
  name: string
  binary?: string
  args: string
  lane: Lane
  needs: Partial<JobNeeds>
}

/**
 * Real media-server command lines (Jellyfin 10.9/10.10 EncodingHelper, Emby, Plex, batch jobs; the same
 * corpus as shared/paths/command-lines.test.ts) and what each needs of a worker.
 */
const CASES: Case[] = [
  {
    name: "Jellyfin 10.9 HLS fmp4, VAAPI: device, hwaccel, encoder, scale_vaapi, hls muxer",
    args: JELLYFIN_VAAPI_HLS,
    lane: "transcode",
    needs: {
      encoders: ["aac", "h264_vaapi"],
      hwaccels: ["vaapi"],
      hwDevices: ["vaapi"],
      filters: ["scale_vaapi", "setparams"],
      muxers: ["hls"],
    },
  },
  {
    name: "Jellyfin 10.10 HLS mpegts, software x264",
    args: `-i file:/mnt/media/Show/S01E01.mkv -map 0:v:0 -map 0:a:0 -c:v libx264 -c:a aac -f hls -hls_time 6
      -hls_segment_type mpegts -hls_segment_filename /var/lib/jellyfin/transcodes/abc%d.ts -y /var/lib/jellyfin/transcodes/abc.m3u8`,
    lane: "transcode",
    needs: { encoders: ["aac", "libx264"], muxers: ["hls"] },
  },
  {
    name: "Jellyfin QSV: a VAAPI device, a derived QSV device, -qsv_device, scale_qsv",
    args: `-init_hw_device vaapi=va:/dev/dri/renderD128,driver=iHD -init_hw_device qsv=qs@va -filter_hw_device qs
      -qsv_device /dev/dri/renderD128 -hwaccel qsv -hwaccel_output_format qsv -c:v h264_qsv -i file:/mnt/media/a.mkv
      -codec:v:0 hevc_qsv -vf scale_qsv=w=1280:h=720 -f mp4 /var/lib/jellyfin/transcodes/a.mp4`,
    lane: "transcode",
    needs: {
      encoders: ["hevc_qsv"],
      decoders: ["h264_qsv"],
      hwaccels: ["qsv"],
      hwDevices: ["qsv", "vaapi"],
      filters: ["scale_qsv"],
      muxers: ["mp4"],
    },
  },
  {
    name: "Jellyfin NVENC with HDR tonemapping on CUDA (tonemap_cuda, scale_cuda), cuvid decoder",
    args: `-init_hw_device cuda=cu:0 -filter_hw_device cu -hwaccel cuda -hwaccel_device 0 -hwaccel_output_format cuda
      -autorotate 0 -c:v hevc_cuvid -i file:/mnt/media/a.mkv -codec:v:0 h264_nvenc -preset p1
      -vf setparams=color_primaries=bt2020:color_trc=smpte2084,tonemap_cuda=format=yuv420p:tonemap=bt2390,scale_cuda=w=1920:h=1080
      -codec:a:0 libfdk_aac /var/lib/jellyfin/transcodes/a.mkv`,
    lane: "transcode",
    needs: {
      encoders: ["h264_nvenc", "libfdk_aac"],
      decoders: ["hevc_cuvid"],
      hwaccels: ["cuda"],
      hwDevices: ["cuda"],
      filters: ["scale_cuda", "setparams", "tonemap_cuda"],
    },
  },
  {
    name: "Jellyfin OpenCL tonemapping after VAAPI decode (hwmap, tonemap_opencl) in -filter_complex",
    args: `-init_hw_device vaapi=va:/dev/dri/renderD128 -init_hw_device opencl=ocl@va -filter_hw_device ocl
      -hwaccel vaapi -i file:/mnt/media/hdr.mkv
      -filter_complex [0:0]hwmap=derive_device=opencl,tonemap_opencl=format=nv12:tonemap=bt2390[v];[v]hwmap=derive_device=vaapi:reverse=1[out]
      -map [out] -c:v h264_vaapi -an -f matroska /var/lib/jellyfin/transcodes/hdr.mkv`,
    lane: "transcode",
    needs: {
      encoders: ["h264_vaapi"],
      hwaccels: ["vaapi"],
      hwDevices: ["opencl", "vaapi"],
      filters: ["hwmap", "tonemap_opencl"],
      muxers: ["matroska"],
    },
  },
  {
    name: "-hwaccel auto and codec copy need nothing; an input -f needs its demuxer",
    args: `-hwaccel auto -f matroska -i /mnt/media/a.mkv -c copy -f mpegts /tmp/a.ts`,
    lane: "transcode",
    needs: { demuxers: ["matroska"], muxers: ["mpegts"] },
  },
  {
    name: "subtitle burn-in (subtitles filter) and audio filter graph",
    args: `-i file:/mnt/media/Show/ep.mkv -vf subtitles=f='/mnt/media/Show/ep.mkv':si=0,format=yuv420p
      -af volume=2,aresample=async=1 -c:v libx264 /var/lib/jellyfin/transcodes/ep.mkv`,
    lane: "transcode",
    needs: { encoders: ["libx264"], filters: ["aresample", "format", "subtitles", "volume"] },
  },
  {
    name: "subtitle extraction to .srt and .vtt: -c:s on two outputs",
    args: `-i file:/mnt/media/Show/ep.mkv -copyts -map 0:2 -an -vn -c:s subrip /d/a.srt -map 0:3 -an -vn -scodec webvtt /d/a.vtt`,
    lane: "transcode",
    needs: { encoders: ["subrip", "webvtt"] },
  },
  {
    name: "trickplay: fps/scale graph, mjpeg encoder, image2 muxer",
    args: `-loglevel error -threads 0 -skip_frame nokey -i file:/mnt/media/Film.mkv -an -sn -dn
      -vf fps=1/10,scale=320:-2 -threads 1 -c:v mjpeg -qscale:v 4 -f image2 /var/lib/jellyfin/transcodes/tp/%08d.jpg`,
    lane: "transcode",
    needs: { encoders: ["mjpeg"], filters: ["fps", "scale"], muxers: ["image2"] },
  },
  {
    name: "Emby: segment muxer with an inner mpegts format",
    args: `-i /mnt/media/Film.mkv -map_metadata -1 -c:v copy -f segment -segment_time 3 -segment_format mpegts
      -segment_list_type m3u8 -segment_list /var/lib/emby/abc.m3u8 -y /var/lib/emby/abc_%d.ts`,
    lane: "transcode",
    needs: { muxers: ["mpegts", "segment"] },
  },
  {
    name: "Plex: ssegment; -vcodec/-acodec spellings",
    args: `-i /mnt/media/Film.mkv -vcodec libx264 -acodec ac3 -segment_format mpegts -f ssegment media-%05d.ts`,
    lane: "transcode",
    needs: { encoders: ["ac3", "libx264"], muxers: ["mpegts", "ssegment"] },
  },
  {
    name: "a lavfi input: its demuxer and the filters of its graph",
    args: `-f lavfi -i testsrc=size=160x120:rate=10,format=yuv420p -t 1 -c:v libx264 -f null -`,
    lane: "transcode",
    needs: { encoders: ["libx264"], demuxers: ["lavfi"], filters: ["format", "testsrc"], muxers: ["null"] },
  },
  {
    name: "format names are matched as FFmpeg does: case-insensitive, applehttp is hls",
    args: `-i a.mkv -f APPLEHTTP out.m3u8`,
    lane: "transcode",
    needs: { muxers: ["hls"] },
  },
  {
    name: "ffprobe -print_format json -show_format -show_streams (a probe)",
    binary: "ffprobe",
    args: `-analyzeduration 200M -probesize 1G -i file:/mnt/media/Film.mkv -threads 0 -v warning
      -print_format json -show_streams -show_chapters -show_format`,
    lane: "probe",
    needs: {},
  },
  {
    name: "ffprobe of a forced demuxer",
    binary: "ffprobe",
    args: `-f matroska -show_streams /mnt/media/a.mkv`,
    lane: "probe",
    needs: { demuxers: ["matroska"] },
  },
  {
    name: "keyframe extraction (ffprobe -show_entries packet=...) reads every packet: a long read",
    binary: "ffprobe",
    args: `-loglevel error -skip_frame nokey -select_streams v:0 -show_entries packet=pts_time,flags
      -of csv=print_section=0 file:/mnt/media/Film.mkv`,
    lane: "transcode",
    needs: {},
  },
  {
    name: "ffprobe -count_frames: a long read",
    binary: "ffprobe",
    args: `-count_frames -show_streams a.mkv`,
    lane: "transcode",
    needs: {},
  },
  { name: "-version is an info command", args: "-version", lane: "probe", needs: {} },
  { name: "-hide_banner -hwaccels", args: "-hide_banner -hwaccels", lane: "probe", needs: {} },
  { name: "-h encoder=h264_nvenc", args: "-h encoder=h264_nvenc", lane: "probe", needs: {} },
  { name: "ffprobe -version", binary: "ffprobe", args: "-version", lane: "probe", needs: {} },
  {
    name: "ffmpeg -i X with no output only describes the input: a probe",
    args: "-hide_banner -i /mnt/media/a.mkv",
    lane: "probe",
    needs: {},
  },
]

const full = (n: Partial<JobNeeds>): JobNeeds => ({ ...NO_NEEDS, ...n })

describe("jobNeeds and jobLane over real command lines", () => {
  for (const c of CASES) {
    test(c.name, () => {
      const binary = c.binary ?? "ffmpeg"
      expect(jobNeeds(binary, argv(c.args))).toEqual(full(c.needs))
      expect(jobLane(binary, argv(c.args))).toBe(c.lane)
    })
  }
})

describe("deviceType", () => {
  test.each([
    ["vaapi=va:/dev/dri/renderD128", "vaapi"],
    ["qsv=qs@va", "qsv"],
    ["cuda=cu:0", "cuda"],
    ["cuda", "cuda"],
    ["vaapi:/dev/dri/renderD128,driver=iHD", "vaapi"],
    ["opencl=ocl@va", "opencl"],
  ])("%s is %s", (value, type) => expect(deviceType(value)).toBe(type))
})
