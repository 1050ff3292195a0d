import * as v from "valibot"

/**
 * Text an operator reads (a worker's version, its capability values): printable only, no control, line
 * separator or bidi character (they would drive the terminal of whoever lists workers), at most `max` chars.
 */
export const printable = (max: number) =>
  v.pipe(
    v.string(),
    v.maxLength(max, `must be at most ${max} characters`),
    v.regex(
      /^[^\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$/,
      "must be printable (no control, line separator or bidi characters)",
    ),
  )
