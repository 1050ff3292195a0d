import { describe, expect, test } from "bun:test"
import { formatName } from "./argv.ts"
import { checkSubmittedArgs } from "./submission.ts"

describe("checkSubmittedArgs", () => {
  test("a protocol no worker allows is refused, naming the argument", () => {
    expect(() => checkSubmittedArgs("ffmpeg", ["-i", "md5:x", "-f", "null", "-"])).toThrow(
      /^argument 2 "md5:x": protocol md5 is not allowed on any worker/,
    )
  })

  test("a lavfi input is a filtergraph, whatever the case of -f (av_match_name)", () => {
    for (const f of ["lavfi", "LAVFI", "LaVfI"])
      expect(() => checkSubmittedArgs("ffmpeg", ["-f", f, "-i", "tee:x", "-f", "null", "-"])).not.toThrow()
  })

  test("format names compare lowercased, with their aliases", () => {
    expect(formatName("HLS")).toBe("hls")
    expect(formatName("AppleHTTP")).toBe("hls")
    expect(formatName("Video4Linux2")).toBe("v4l2")
    expect(formatName(undefined)).toBeUndefined()
  })
})
