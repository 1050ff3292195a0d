import { expect } from "bun:test"
import { InvalidError } from "../../src/shared/errors.ts"

/** The InvalidError `fn` throws (a refusal a test reads the message of); fails the test if it throws none. */
export function thrown(fn: () => unknown): InvalidError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidError)
    return err as InvalidError
  }
  throw new Error("expected an InvalidError")
}
