/**
 * Real media-server command lines shared by the tests that read them (path mapping, job needs), so the
 * corpus is written once. Words are split on spaces; `~` stands for a space inside one argument.
 */
export const argv = (s: string) =>
  s
    .trim()
    .split(/\s+/)
    .map((w) => w.replaceAll("~", " "))

/** Jellyfin 10.9 HLS fmp4 with VAAPI: init_hw_device with a DRM node, filter_hw_device, a file: input. */
export const JELLYFIN_VAAPI_HLS = `-analyzeduration 200M -probesize 1G -ss 00:00:05.000 -noaccurate_seek
      -init_hw_device vaapi=va:/dev/dri/renderD128 -filter_hw_device va -hwaccel vaapi -hwaccel_output_format vaapi
      -noautorotate -i file:/mnt/media/Movies/Film~(2020)/Film.mkv -map_metadata -1 -map_chapters -1 -threads 0
      -map 0:0 -map 0:1 -map -0:s -codec:v:0 h264_vaapi -rc_mode VBR -b:v 6616000 -sei -a53_cc
      -force_key_frames:0 expr:gte(t,n_forced*3) -vf setparams=color_primaries=bt709,scale_vaapi=format=nv12
      -codec:a:0 aac -ac 2 -ab 384000 -copyts -avoid_negative_ts disabled -max_muxing_queue_size 2048
      -f hls -max_delay 5000000 -hls_time 3 -hls_segment_type fmp4 -hls_fmp4_init_filename 7f1c-1.mp4
      -start_number 0 -hls_segment_filename /var/lib/jellyfin/transcodes/7f1c%d.mp4 -hls_playlist_type vod
      -hls_list_size 0 -y /var/lib/jellyfin/transcodes/7f1c.m3u8`
